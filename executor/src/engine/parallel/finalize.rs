//! Finalization: the block's results and state diff from the last
//! incarnation of every transaction, in order.
//!
//! The block gas-limit rule and the invalid-transaction policy are applied
//! here, in order, exactly as the sequential engine does. The diff is then
//! built straight from the included transactions' last writes (what the
//! multi-version memory holds): per location the last write, balance
//! credits summed on top (an overflowing credit sends the block to the
//! sequential engine), before values from the snapshot. Accounts are
//! independent in a diff, so the addresses are split into shards, one
//! thread each, each building its own map; the maps are joined pairwise.
//!
//! An account whose storage was wiped or that left the state (creation,
//! self-destruct, EIP-161 removal) or whose code changed is rebuilt instead
//! by replaying revm's write sets into a [`BlockState`], the sequential
//! engine's own overlay: after a wipe that overlay also records the slots a
//! later transaction only read, and the diff must match it exactly.

use super::{
    execute::{Changes, Outcome, TxOutput, computed, touched},
    memory::{AccountCore, Location, Write},
};
use crate::{
    InvalidTxPolicy,
    engine::{BlockGas, EngineError, EngineOutput, ExecutionEnv, TxResult, sequential::skip},
    state::{AccountDiff, BasicAccount, BlockState, SlotChange, StateDiff},
    tx::RecoveredTx,
};
use alloy_primitives::{
    Address, B256, Bytes, U256,
    map::{HashMap, HashSet},
};
use alloy_trie::KECCAK_EMPTY;
use rayon::{ThreadPool, prelude::*};
use revm::{Database, DatabaseRef, state::Account};
use std::collections::BTreeMap;

/// Why finalization could not complete in parallel mode.
#[derive(Debug)]
pub(crate) enum Fallback<E> {
    /// A fast-path assumption failed (a credit overflowed): the block must
    /// be executed sequentially.
    Sequential,
    /// The engine's error.
    Error(EngineError<E>),
}

impl<E> From<EngineError<E>> for Fallback<E> {
    fn from(e: EngineError<E>) -> Self {
        Self::Error(e)
    }
}

/// An included transaction's final writes and changes.
type Included = (Box<[(Location, Write)]>, Box<Changes>);

/// Builds the engine output from each transaction's final output, using
/// `pool`'s threads: the diff is built per address, so each thread handles,
/// in block order, the writes to the addresses of its shard.
pub(crate) fn finalize<DB: DatabaseRef + Sync>(
    env: &ExecutionEnv,
    base: &DB,
    transactions: &[RecoveredTx],
    outputs: Vec<TxOutput>,
    policy: InvalidTxPolicy,
    pool: &ThreadPool,
) -> Result<EngineOutput, Fallback<DB::Error>> {
    let mut gas = BlockGas::new(env.block.gas_limit);
    let mut results = Vec::with_capacity(outputs.len());
    let mut included: Vec<Included> = Vec::with_capacity(outputs.len());
    for (index, (tx, output)) in transactions.iter().zip(outputs).enumerate() {
        if !gas.admits(tx) {
            results.push(skip(policy, index, BlockGas::deferred())?);
            continue;
        }
        match output.outcome {
            Outcome::Invalid(reason) => results.push(skip(policy, index, reason)?),
            Outcome::Executed(executed, changes) => {
                gas.charge(executed.gas_used);
                results.push(TxResult::Executed(executed));
                included.push((output.writes, changes));
            }
        }
    }

    let shards = pool.current_num_threads().max(1);
    let parts: Vec<Result<Part, Fallback<DB::Error>>> = pool.install(|| {
        (0..shards)
            .into_par_iter()
            .map(|shard| shard_diff(env, base, &included, shard, shards))
            .collect()
    });
    let mut maps = Vec::with_capacity(parts.len());
    let mut code = BTreeMap::new();
    for part in parts {
        let mut part = part?;
        code.append(&mut part.code);
        maps.push(part.accounts);
    }
    // The write sets are dropped on the pool, in the background: nothing
    // waits for it.
    pool.spawn(move || drop(included));
    // Each shard built its own map: join them pairwise on the pool (each
    // join moves both maps' entries once; only the last is alone).
    let accounts = pool.install(|| {
        maps.into_par_iter().reduce(BTreeMap::new, |mut a, mut b| {
            a.append(&mut b);
            a
        })
    });
    Ok(EngineOutput { results, diff: StateDiff { accounts, code } })
}

fn shard_of(address: &Address, shards: usize) -> usize {
    let b = address.0;
    (b[19] as usize ^ (b[18] as usize) << 3 ^ (b[0] as usize) << 5) % shards
}

/// One shard's share of the diff.
struct Part {
    /// The changed accounts' diffs.
    accounts: BTreeMap<Address, AccountDiff>,
    code: BTreeMap<B256, Bytes>,
}

/// An account's balance as the block's writes leave it.
#[derive(Debug, Clone, Copy, Default)]
enum Balance {
    /// Not written.
    #[default]
    Untouched,
    /// The snapshot's balance plus this sum of credits.
    Credited(U256),
    /// This absolute value (later credits included).
    Set(U256),
}

/// The block's last writes to one account.
#[derive(Debug, Default)]
struct Written {
    core: Option<Option<AccountCore>>,
    balance: Balance,
    storage: HashMap<U256, U256>,
    /// Its storage was wiped, or it left the state: the diff is rebuilt by
    /// replaying revm's write sets (see [`replay`]).
    replay: bool,
}

/// The diff of the addresses of one shard, straight from the included
/// transactions' last writes (the values the multi-version memory holds):
/// for each location its last write, credits summed on top. An account
/// whose storage was wiped or that left the state (creation, self-destruct,
/// EIP-161) or whose code changed is rebuilt instead by [`replay`], which
/// reproduces the sequential overlay's bookkeeping of wiped storage.
fn shard_diff<DB: DatabaseRef>(
    env: &ExecutionEnv,
    base: &DB,
    included: &[Included],
    shard: usize,
    shards: usize,
) -> Result<Part, Fallback<DB::Error>> {
    let mut written: HashMap<Address, Written> =
        HashMap::with_capacity_and_hasher(included.len() * 2 / shards + 16, Default::default());
    for (writes, _) in included {
        for (location, write) in writes.iter() {
            let address = location.address();
            if shard_of(&address, shards) != shard {
                continue;
            }
            let account = written.entry(address).or_default();
            match (location, write) {
                (Location::Basic(_), Write::Basic(core)) => {
                    account.replay |= core.is_none();
                    account.core = Some(*core);
                }
                (Location::Balance(_), Write::SetBalance(v)) => account.balance = Balance::Set(*v),
                (Location::Balance(_), Write::AddBalance(d)) => {
                    account.balance = match account.balance {
                        Balance::Untouched => Balance::Credited(*d),
                        Balance::Credited(sum) => {
                            Balance::Credited(sum.checked_add(*d).ok_or(Fallback::Sequential)?)
                        }
                        Balance::Set(v) => {
                            Balance::Set(v.checked_add(*d).ok_or(Fallback::Sequential)?)
                        }
                    };
                }
                (Location::Storage(_, slot), Write::Storage(v)) => {
                    account.storage.insert(*slot, *v);
                }
                (Location::Clear(_), Write::Clear) => account.replay = true,
                _ => unreachable!("a location holds its own kind of write"),
            }
        }
    }

    let mut accounts = Vec::with_capacity(written.len());
    let mut order = Vec::with_capacity(written.len());
    let mut replayed = Vec::new();
    let db = |e| Fallback::Error(EngineError::Database(e));
    // In the table's order (no random access); sorted by address after.
    for (address, account) in written.drain() {
        if account.replay {
            replayed.push(address);
            continue;
        }
        let before = base.basic_ref(address).map_err(db)?.map(|i| BasicAccount::from_info(&i));
        let before_balance = before.map(|b| b.balance).unwrap_or_default();
        let balance = match account.balance {
            Balance::Untouched => before_balance,
            Balance::Credited(sum) => {
                before_balance.checked_add(sum).ok_or(Fallback::Sequential)?
            }
            Balance::Set(v) => v,
        };
        let core = account.core.unwrap_or_else(|| {
            before.map(|b| AccountCore { nonce: b.nonce, code_hash: b.code_hash })
        });
        let after = match core {
            Some(core) => BasicAccount { nonce: core.nonce, balance, code_hash: core.code_hash },
            None => BasicAccount::with_balance(balance),
        };
        // Code is only deployed by creations (replayed) and EIP-7702
        // delegations: replay those too, as does an account left empty.
        if after.is_empty() || before.map_or(KECCAK_EMPTY, |b| b.code_hash) != after.code_hash {
            replayed.push(address);
            continue;
        }
        let mut storage = Vec::with_capacity(account.storage.len());
        for (slot, after) in account.storage {
            let before = base.storage_ref(address, slot).map_err(db)?;
            if before != after {
                storage.push((slot, SlotChange { before, after }));
            }
        }
        storage.sort_unstable_by_key(|(slot, _)| *slot);
        let after = Some(after);
        if before != after || !storage.is_empty() {
            order.push((address, accounts.len() as u32));
            let storage = BTreeMap::from_iter(storage);
            accounts.push(AccountDiff { before, after, storage_cleared: false, storage });
        }
    }
    let mut code = BTreeMap::new();
    if !replayed.is_empty() {
        let replayed: HashSet<Address> = replayed.into_iter().collect();
        let diff = replay(env, base, included, |address| replayed.contains(address))?;
        for (address, account) in diff.accounts {
            order.push((address, accounts.len() as u32));
            accounts.push(account);
        }
        code = diff.code;
    }
    // Sorting the (address, index) pairs, not the diffs, then building the
    // map in one pass from the sorted sequence (no search per entry).
    order.sort_unstable();
    let accounts = order
        .into_iter()
        .map(|(address, index)| (address, std::mem::take(&mut accounts[index as usize])))
        .collect();
    Ok(Part { accounts, code })
}

/// The diff of the addresses `mine` selects: every included transaction's
/// changes to them, committed in order into a [`BlockState`], the sequential
/// engine's own overlay.
fn replay<DB: DatabaseRef>(
    env: &ExecutionEnv,
    base: &DB,
    included: &[Included],
    mine: impl Fn(&Address) -> bool,
) -> Result<StateDiff, Fallback<DB::Error>> {
    let beneficiary = env.block.beneficiary;
    let mut overlay = BlockState::new(base);
    for (_, changes) in included {
        match &**changes {
            Changes::Evm { state, owed_reward } => {
                for change in state {
                    if mine(&change.address) {
                        overlay.commit_change(change);
                    }
                }
                if let Some(reward) = owed_reward
                    && mine(&beneficiary)
                {
                    let current = overlay.basic(beneficiary).map_err(EngineError::Database)?;
                    overlay.commit_account(beneficiary, &reward_account(current, *reward));
                }
            }
            Changes::Transfer(plain) => {
                if mine(&plain.sender) {
                    overlay.commit_account(plain.sender, &computed(plain.sender_after));
                }
                if mine(&plain.to) {
                    let current = overlay.basic(plain.to).map_err(EngineError::Database)?;
                    let Some(recipient) = touched(current, plain.value) else {
                        return Err(Fallback::Sequential);
                    };
                    overlay.commit_account(plain.to, &recipient);
                }
                if plain.sender != beneficiary && mine(&beneficiary) {
                    let current = overlay.basic(beneficiary).map_err(EngineError::Database)?;
                    overlay.commit_account(beneficiary, &reward_account(current, plain.reward));
                }
            }
        }
    }
    overlay.into_diff().map_err(|e| Fallback::Error(EngineError::Database(e)))
}

/// The beneficiary after a fee credit (revm's `incr_balance`: an overflow
/// leaves the balance unchanged, the account is touched either way).
fn reward_account(current: Option<revm::state::AccountInfo>, reward: U256) -> Account {
    let mut info = current.unwrap_or_default();
    info.balance = super::memory::credit(info.balance, reward);
    let mut account = Account::from(info);
    account.mark_touch();
    account
}
