//! The API's view of the chain head: the head header and the in-memory head
//! state, so reads and admission checks never wait on SQL.
//!
//! In an all-in-one process the block producer pushes each committed block
//! into the view; an API-only process follows the database instead
//! ([`follow`]), applying each new block's stored state diff.

use crate::pool::{PoolLimits, TxPool};
use alloy_consensus::Header;
use alloy_eips::Decodable2718;
use alloy_primitives::{Address, B256, U256};
use rollup_executor::{
    MemoryState, StateDiff,
    history::{HistoricalState, HistoryError},
    state::AccountProof,
    state::BLOCK_HASH_WINDOW,
};
use rollup_store::Store;
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Duration;

/// Head header, its hash and the head state.
#[derive(Debug)]
pub struct Head {
    /// The head block's header.
    pub header: Header,
    /// The head block's hash.
    pub hash: B256,
    /// The state after the head block.
    pub state: MemoryState,
    /// Diffs of the most recent blocks, oldest first, ending at the head:
    /// what historical reads undo.
    pub history: Vec<(u64, Arc<StateDiff>)>,
}

/// Attempts of [`ChainView::proof`] under the read lock.
const PROOF_ROUNDS: usize = 3;

/// Blocks of state history a view keeps by default.
pub const DEFAULT_HISTORY_BLOCKS: usize = 1_024;

impl Head {
    /// The head block's number.
    pub const fn number(&self) -> u64 {
        self.header.number
    }

    /// The state after block `number`, if it is the head or within the
    /// history window.
    pub fn state_at(&self, number: u64) -> Option<HistoricalState<'_>> {
        let head = self.header.number;
        if number > head {
            return None;
        }
        let undo = (head - number) as usize;
        let later = self.history.len().checked_sub(undo).map(|start| &self.history[start..])?;
        Some(HistoricalState::new(&self.state, later))
    }

    /// The oldest block whose state [`Head::state_at`] can serve.
    pub fn oldest_state(&self) -> u64 {
        self.header.number - self.history.len() as u64
    }

    /// Why [`Head::state_at`] cannot serve block `number`.
    pub fn state_unavailable(&self, number: u64) -> String {
        format!(
            "historical state is not available for block {number}; this node serves blocks {} to {}",
            self.oldest_state(),
            self.number()
        )
    }
}

/// Shared, read-mostly view of the head.
#[derive(Debug, Clone)]
pub struct ChainView {
    inner: Arc<RwLock<Head>>,
    history_blocks: usize,
    updates: Arc<tokio::sync::watch::Sender<u64>>,
    pool: Arc<TxPool>,
}

impl ChainView {
    /// A view starting at `head`, with an empty pool index.
    pub fn new(head: Head, limits: PoolLimits) -> Self {
        let number = head.header.number;
        Self {
            inner: Arc::new(RwLock::new(head)),
            history_blocks: DEFAULT_HISTORY_BLOCKS,
            updates: Arc::new(tokio::sync::watch::channel(number).0),
            pool: Arc::new(TxPool::new(limits)),
        }
    }

    /// Loads the head from the store, the diffs of up to `history_blocks`
    /// recent blocks, and indexes the pending transactions.
    pub async fn load(
        store: &Store,
        limits: PoolLimits,
        history_blocks: usize,
    ) -> rollup_store::Result<Self> {
        let (mut state, header, hash) = store.load_head_state().await?;
        let head_number = header.number;
        // BLOCKHASH in a call at the oldest block served sees 256 blocks
        // before it (`load_head_state` gives the last 256).
        let window = history_blocks as u64 + BLOCK_HASH_WINDOW;
        state.keep_block_hashes(window);
        let oldest = (head_number + 1).saturating_sub(window);
        let older =
            store.block_hashes(oldest, head_number.saturating_sub(BLOCK_HASH_WINDOW)).await?;
        for (number, hash) in (oldest..).zip(older) {
            state.insert_block_hash(number, hash);
        }
        let mut history = Vec::new();
        for number in (head_number + 1).saturating_sub(history_blocks as u64).max(1)..=head_number {
            match store.state_diff(number).await? {
                Some(diff) => history.push((number, Arc::new(diff))),
                // Pruned: the window starts after it.
                None => history.clear(),
            }
        }
        let mut view = Self::new(Head { header, hash, state, history }, limits);
        view.history_blocks = history_blocks;
        let pending = store.pending_transactions(0, limits.max_total as i64).await?;
        for pending in pending {
            let Ok(tx) = alloy_consensus::TxEnvelope::decode_2718_exact(&pending.raw) else {
                continue;
            };
            let tx = rollup_executor::RecoveredTx::new_unchecked(tx, pending.sender);
            let nonce = view.read().state.account(&pending.sender).map_or(0, |a| a.nonce);
            // Already admitted once: index it whatever it costs.
            let _ = view.pool.admit(&tx, nonce, alloy_primitives::U256::MAX);
        }
        Ok(view)
    }

    /// The mempool index admission checks against.
    pub fn pool(&self) -> &TxPool {
        &self.pool
    }

    /// Read access to the head. Do not hold it across an `.await`.
    pub fn read(&self) -> RwLockReadGuard<'_, Head> {
        self.inner.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The head block number.
    pub fn number(&self) -> u64 {
        self.read().header.number
    }

    /// Moves the view to a newly committed block.
    pub fn advance(&self, header: Header, hash: B256, diff: Arc<StateDiff>) {
        let number = header.number;
        {
            let mut head = self.inner.write().unwrap_or_else(|poisoned| poisoned.into_inner());
            if number != head.header.number + 1 {
                return;
            }
            head.state.apply(&diff);
            head.state.insert_block_hash(number, hash);
            if self.history_blocks > 0 {
                head.history.push((number, diff.clone()));
                let excess = head.history.len().saturating_sub(self.history_blocks);
                head.history.drain(..excess);
            }
            head.header = header;
            head.hash = hash;
        }
        self.pool.on_block(&diff);
        self.updates.send_replace(number);
    }

    /// EIP-1186 proofs of `address` and `slots` after block `number` (the
    /// head or within the history window; `None` outside it). The tries'
    /// hashes must be current: the blocks applied since the last proof
    /// (`advance` does not hash; the producer hashes its own copy) are
    /// hashed first under the write lock. The proof itself is built under
    /// the read lock: readers and admission go on meanwhile, but the next
    /// `advance` (a write) waits for it, and the readers after that wait
    /// behind the write. A past block's proof copies and rehashes the tries
    /// along everything the later blocks changed (see
    /// `HistoricalState::proof`), so the history window bounds that stall.
    pub fn proof(
        &self,
        number: u64,
        address: Address,
        slots: &[U256],
    ) -> Option<Result<AccountProof, HistoryError>> {
        // A block applied between the two locks makes the hashes stale
        // again; after a few rounds, the whole proof under the write lock.
        for _ in 0..PROOF_ROUNDS {
            {
                let head = self.read();
                if head.state.hashes_current() {
                    return Self::proof_at(&head, number, address, slots);
                }
            }
            let mut head = self.inner.write().unwrap_or_else(|poisoned| poisoned.into_inner());
            head.state.state_root();
        }
        let mut head = self.inner.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        head.state.state_root();
        Self::proof_at(&head, number, address, slots)
    }

    fn proof_at(
        head: &Head,
        number: u64,
        address: Address,
        slots: &[U256],
    ) -> Option<Result<AccountProof, HistoryError>> {
        if number == head.number() {
            return head.state.current_proof(address, slots).map(Ok);
        }
        Some(head.state_at(number)?.proof(address, slots))
    }

    /// Subscribes to head changes (the new head number).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.updates.subscribe()
    }
}

/// Keeps `view` at the database's head by applying stored diffs (API-only
/// processes). Returns when `shutdown` fires.
pub async fn follow(
    view: ChainView,
    store: Store,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        if let Err(error) = catch_up(&view, &store).await {
            tracing::warn!(%error, "chain follower failed to catch up");
        }
        if !crate::node::sleep_unless_stopped(Duration::from_millis(100), &mut shutdown).await {
            return;
        }
    }
}

/// Brings `view` to the database's head by applying the stored diffs of the
/// blocks it lacks.
pub(crate) async fn catch_up(view: &ChainView, store: &Store) -> rollup_store::Result<()> {
    let head = store.head_number().await?;
    let mut next = view.number() + 1;
    while next <= head {
        let block = store.block_by_number(next).await?;
        let diff = store.state_diff(next).await?;
        let (Some(block), Some(diff)) = (block, diff) else { break };
        view.advance(block.header, block.hash, Arc::new(diff));
        next += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rollup_executor::state::{AccountDiff, BasicAccount, SlotChange};
    use std::collections::BTreeMap;

    fn account(nonce: u64) -> BasicAccount {
        BasicAccount { nonce, ..BasicAccount::with_balance(U256::from(1_000 + nonce)) }
    }

    /// Proofs served under the read lock equal the state's own, at the head
    /// and at the block before, whether or not the hashes were current.
    #[test]
    fn proofs_at_the_head_and_before_match_the_states_own() {
        let contract = Address::repeat_byte(0xc0);
        let slot = U256::from(7);
        let mut genesis = MemoryState::new();
        for i in 1..=50u8 {
            genesis.insert_account(Address::repeat_byte(i), account(0));
        }
        genesis.insert_account(contract, account(1));
        genesis.insert_storage(contract, slot, U256::from(5));
        let mut before = genesis.clone();
        let view = ChainView::new(
            Head {
                header: Header::default(),
                hash: B256::ZERO,
                state: genesis,
                history: Vec::new(),
            },
            PoolLimits::default(),
        );

        let mut storage = BTreeMap::new();
        storage.insert(slot, SlotChange { before: U256::from(5), after: U256::from(6) });
        let mut accounts = BTreeMap::new();
        accounts.insert(
            contract,
            AccountDiff {
                before: Some(account(1)),
                after: Some(account(2)),
                storage_cleared: false,
                storage,
            },
        );
        let diff = StateDiff { accounts, code: BTreeMap::new() };
        let mut after = before.clone();
        after.apply(&diff);
        view.advance(Header { number: 1, ..Header::default() }, B256::repeat_byte(1), diff.into());
        assert!(!view.read().state.hashes_current(), "applying a block leaves the hashes stale");

        let slots = [slot, U256::from(8)];
        for (number, expected) in
            [(1, after.proof(contract, &slots)), (0, before.proof(contract, &slots))]
        {
            let proof =
                view.proof(number, contract, &slots).expect("in the window").expect("served");
            assert_eq!(proof, expected, "block {number}");
        }
        assert!(view.read().state.hashes_current());
        assert!(view.proof(2, contract, &slots).is_none(), "beyond the head");
    }
}
