//! The in-memory index of the mempool that admission checks against: per
//! sender, the pooled transactions by nonce with their fees and cost. It
//! enforces replacement by fee bump, per-sender and pool-wide caps, the
//! balance of a sender's whole queue, and expiry, without a database round
//! trip per transaction. Postgres stays the durable record; this index is
//! rebuilt from it at start-up and pruned as blocks commit.
//!
//! Each API process keeps its own index: with several replicas, the
//! per-sender cap, the balance check and replacement are enforced per
//! replica, and two replicas may accept different transactions for one
//! nonce; the block producer includes the first to arrive and drops the
//! other (`nonce too low`). The pool-wide cap holds across replicas: every
//! second each one counts the pending transactions in the database (a
//! census, [`TxPool::census`]), and those beyond its own count toward its
//! cap until the next one. Between two censuses the replicas together may
//! overshoot by what the others admitted in that second.

use crate::admission::AdmissionError;
use alloy_consensus::Transaction;
use alloy_primitives::{Address, B256, U256};
use rollup_executor::{RecoveredTx, StateDiff};
use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

/// Limits of the pool.
#[derive(Debug, Clone, Copy)]
pub struct PoolLimits {
    /// Most pooled transactions per sender (pending and queued).
    pub max_per_sender: usize,
    /// Most pooled transactions in all.
    pub max_total: usize,
    /// How long a transaction may wait before it is dropped as expired.
    pub lifetime: Duration,
    /// Fee bump a replacement needs on both fee fields, in percent.
    pub price_bump_percent: u128,
}

impl Default for PoolLimits {
    fn default() -> Self {
        Self {
            max_per_sender: 64,
            max_total: 200_000,
            lifetime: Duration::from_secs(3 * 3600),
            price_bump_percent: 10,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Pooled {
    hash: B256,
    max_fee: u128,
    tip: u128,
    cost: U256,
    received: Instant,
}

/// What admission decided for a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admitted {
    /// New: store it.
    New,
    /// Already pooled with identical bytes: answer with its hash, store nothing.
    Duplicate,
    /// Replaces the pooled transaction with this hash (same sender and nonce).
    Replaces(B256),
}

/// The pool index; see the module docs.
#[derive(Debug, Default)]
pub struct TxPool {
    limits: PoolLimits,
    inner: Mutex<Inner>,
    /// Pending transactions other processes pooled, as of the last census.
    elsewhere: AtomicUsize,
}

#[derive(Debug, Default)]
struct Inner {
    senders: HashMap<Address, BTreeMap<u64, Pooled>>,
    total: usize,
}

impl TxPool {
    /// An empty pool with `limits`.
    pub fn new(limits: PoolLimits) -> Self {
        Self { limits, inner: Mutex::default(), elsewhere: AtomicUsize::new(0) }
    }

    /// Number of pooled transactions.
    pub fn len(&self) -> usize {
        self.lock().total
    }

    /// Whether the pool is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Checks `tx` against the pool given the sender's state nonce and
    /// balance, and records it if admitted.
    pub fn admit(
        &self,
        tx: &RecoveredTx,
        state_nonce: u64,
        balance: U256,
    ) -> Result<Admitted, AdmissionError> {
        let inner_tx = tx.inner();
        let nonce = inner_tx.nonce();
        let entry = Pooled {
            hash: *inner_tx.tx_hash(),
            max_fee: inner_tx.max_fee_per_gas(),
            tip: inner_tx.max_priority_fee_per_gas().unwrap_or(inner_tx.max_fee_per_gas()),
            cost: U256::from(inner_tx.gas_limit())
                .saturating_mul(U256::from(inner_tx.max_fee_per_gas()))
                .saturating_add(inner_tx.value()),
            received: Instant::now(),
        };
        let mut inner = self.lock();
        let total = inner.total;
        let queue = inner.senders.entry(tx.signer()).or_default();
        // Transactions the sender's state has already passed are stale here.
        queue.retain(|n, _| *n >= state_nonce);
        let replaced = match queue.get(&nonce) {
            Some(existing) if existing.hash == entry.hash => return Ok(Admitted::Duplicate),
            Some(existing) => {
                let bump = 100 + self.limits.price_bump_percent;
                if entry.max_fee * 100 < existing.max_fee * bump
                    || entry.tip * 100 < existing.tip * bump
                {
                    return Err(AdmissionError::ReplacementUnderpriced);
                }
                Some(existing.hash)
            }
            None => {
                if queue.len() >= self.limits.max_per_sender {
                    return Err(AdmissionError::AccountLimit);
                }
                if total + self.elsewhere.load(Ordering::Relaxed) >= self.limits.max_total {
                    return Err(AdmissionError::PoolFull);
                }
                None
            }
        };
        // The sender must afford this transaction and every one before it.
        let ahead: U256 =
            queue.range(..nonce).map(|(_, p)| p.cost).fold(U256::ZERO, U256::saturating_add);
        if balance < ahead.saturating_add(entry.cost) {
            return Err(AdmissionError::InsufficientFunds);
        }
        queue.insert(nonce, entry);
        if replaced.is_none() {
            inner.total += 1;
        }
        Ok(replaced.map_or(Admitted::New, Admitted::Replaces))
    }

    /// Takes a census: `pending_in_database` transactions are pending in the
    /// database, every process's; those beyond this pool's own (`own_before_count`
    /// as read before the count, or now, the larger) count toward its
    /// pool-wide cap until the next census. Returns that number.
    ///
    /// Own transactions admitted but not yet committed, and own ones the
    /// database already let go (included, not yet pruned here), make the
    /// difference an underestimate: the census never refuses more than
    /// the cap would.
    pub fn census(&self, pending_in_database: usize, own_before_count: usize) -> usize {
        // A block pruned here while the database counted shrinks our own
        // count: the larger of the two readings keeps the estimate low.
        let own = own_before_count.max(self.len());
        let elsewhere = pending_in_database.saturating_sub(own);
        self.elsewhere.store(elsewhere, Ordering::Relaxed);
        elsewhere
    }

    /// Forgets a transaction admission recorded but could not store.
    pub fn forget(&self, sender: Address, nonce: u64, hash: B256) {
        let mut inner = self.lock();
        let removed = inner
            .senders
            .get_mut(&sender)
            .and_then(|queue| {
                queue.get(&nonce).is_some_and(|p| p.hash == hash).then(|| queue.remove(&nonce))
            })
            .flatten()
            .is_some();
        if removed {
            inner.total -= 1;
        }
    }

    /// Prunes what a committed block made stale: transactions whose nonce the
    /// sender's new state nonce has passed.
    pub fn on_block(&self, diff: &StateDiff) {
        let mut inner = self.lock();
        let mut removed = 0;
        for (address, change) in &diff.accounts {
            let state_nonce = change.after.map_or(0, |a| a.nonce);
            if let Some(queue) = inner.senders.get_mut(address) {
                let before = queue.len();
                queue.retain(|n, _| *n >= state_nonce);
                removed += before - queue.len();
                if queue.is_empty() {
                    inner.senders.remove(address);
                }
            }
        }
        inner.total -= removed;
    }

    /// Removes transactions older than the lifetime; returns their hashes.
    pub fn expire(&self) -> Vec<B256> {
        let lifetime = self.limits.lifetime;
        let mut inner = self.lock();
        let mut expired = Vec::new();
        inner.senders.retain(|_, queue| {
            queue.retain(|_, p| {
                let keep = p.received.elapsed() < lifetime;
                if !keep {
                    expired.push(p.hash);
                }
                keep
            });
            !queue.is_empty()
        });
        inner.total -= expired.len();
        expired
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use alloy_consensus::{SignableTransaction, TxEip1559};
    use alloy_primitives::TxKind;
    use alloy_signer::SignerSync;
    use alloy_signer_local::PrivateKeySigner;

    /// A signed EIP-1559 transfer on chain 1.
    pub(crate) fn tx(
        signer: &PrivateKeySigner,
        nonce: u64,
        max_fee: u128,
        tip: u128,
        value: u64,
    ) -> RecoveredTx {
        let tx = TxEip1559 {
            chain_id: 1,
            nonce,
            gas_limit: 21_000,
            max_fee_per_gas: max_fee,
            max_priority_fee_per_gas: tip,
            to: TxKind::Call(Address::repeat_byte(1)),
            value: U256::from(value),
            ..Default::default()
        };
        let sig = signer.sign_hash_sync(&tx.signature_hash()).unwrap();
        RecoveredTx::new_unchecked(tx.into_signed(sig).into(), signer.address())
    }

    const RICH: U256 = U256::from_limbs([u64::MAX, u64::MAX, 0, 0]);

    #[test]
    fn duplicates_are_idempotent_and_replacements_need_a_bump_on_both_fees() {
        let pool = TxPool::new(PoolLimits::default());
        let signer = PrivateKeySigner::random();
        let first = tx(&signer, 0, 100, 10, 1);
        assert_eq!(pool.admit(&first, 0, RICH), Ok(Admitted::New));
        assert_eq!(pool.admit(&first, 0, RICH), Ok(Admitted::Duplicate));
        // +9% on both: refused; +10% on one only: refused; +10% on both: replaces.
        assert_eq!(
            pool.admit(&tx(&signer, 0, 109, 10, 2), 0, RICH),
            Err(AdmissionError::ReplacementUnderpriced)
        );
        assert_eq!(
            pool.admit(&tx(&signer, 0, 110, 10, 2), 0, RICH),
            Err(AdmissionError::ReplacementUnderpriced)
        );
        let bumped = tx(&signer, 0, 110, 11, 2);
        assert_eq!(pool.admit(&bumped, 0, RICH), Ok(Admitted::Replaces(*first.inner().tx_hash())));
        assert_eq!(pool.len(), 1);
    }

    #[test]
    fn caps_per_sender_and_pool_wide() {
        let pool =
            TxPool::new(PoolLimits { max_per_sender: 2, max_total: 3, ..PoolLimits::default() });
        let (a, b) = (PrivateKeySigner::random(), PrivateKeySigner::random());
        assert!(pool.admit(&tx(&a, 0, 100, 1, 0), 0, RICH).is_ok());
        assert!(pool.admit(&tx(&a, 1, 100, 1, 0), 0, RICH).is_ok());
        assert_eq!(pool.admit(&tx(&a, 2, 100, 1, 0), 0, RICH), Err(AdmissionError::AccountLimit));
        assert!(pool.admit(&tx(&b, 0, 100, 1, 0), 0, RICH).is_ok());
        assert_eq!(pool.admit(&tx(&b, 1, 100, 1, 0), 0, RICH), Err(AdmissionError::PoolFull));
    }

    #[test]
    fn the_pool_wide_cap_counts_what_other_processes_pooled() {
        let pool = TxPool::new(PoolLimits { max_total: 4, ..PoolLimits::default() });
        let (a, b) = (PrivateKeySigner::random(), PrivateKeySigner::random());
        assert!(pool.admit(&tx(&a, 0, 100, 1, 0), 0, RICH).is_ok());
        // The database holds this one and two from another process.
        assert_eq!(pool.census(3, 1), 2);
        assert!(pool.admit(&tx(&a, 1, 100, 1, 0), 0, RICH).is_ok());
        assert_eq!(pool.admit(&tx(&b, 0, 100, 1, 0), 0, RICH), Err(AdmissionError::PoolFull));
        // A replacement adds nothing: still allowed when full.
        assert!(pool.admit(&tx(&a, 1, 110, 2, 0), 0, RICH).is_ok());
        // The others' were included: room again.
        assert_eq!(pool.census(2, 2), 0);
        assert!(pool.admit(&tx(&b, 0, 100, 1, 0), 0, RICH).is_ok());
        // Fewer in the database than here (own ones not yet committed).
        assert_eq!(pool.census(1, 3), 0);
        // Pruned while the database counted: the larger reading counts.
        assert_eq!(pool.census(5, 4), 1);
    }

    #[test]
    fn balance_covers_the_whole_queue_and_blocks_prune_it() {
        let pool = TxPool::new(PoolLimits::default());
        let signer = PrivateKeySigner::random();
        let cost = 21_000 * 100 + 5;
        let balance = U256::from(2 * cost);
        assert!(pool.admit(&tx(&signer, 0, 100, 1, 5), 0, balance).is_ok());
        assert!(pool.admit(&tx(&signer, 1, 100, 1, 5), 0, balance).is_ok());
        assert_eq!(
            pool.admit(&tx(&signer, 2, 100, 1, 5), 0, balance),
            Err(AdmissionError::InsufficientFunds)
        );

        let mut diff = StateDiff::default();
        diff.accounts.insert(
            signer.address(),
            rollup_executor::state::AccountDiff {
                after: Some(rollup_executor::state::BasicAccount {
                    nonce: 2,
                    ..rollup_executor::state::BasicAccount::with_balance(U256::ZERO)
                }),
                ..Default::default()
            },
        );
        pool.on_block(&diff);
        assert!(pool.is_empty());
    }

    #[test]
    fn old_transactions_expire() {
        let pool = TxPool::new(PoolLimits { lifetime: Duration::ZERO, ..PoolLimits::default() });
        let signer = PrivateKeySigner::random();
        let queued = tx(&signer, 5, 100, 1, 0);
        assert!(pool.admit(&queued, 0, RICH).is_ok());
        assert_eq!(pool.expire(), vec![*queued.inner().tx_hash()]);
        assert!(pool.is_empty());
    }
}
