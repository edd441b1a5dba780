//! Finalization: the block's results and state diff from the last
//! incarnation of every transaction, in order.
//!
//! The block gas-limit rule and the invalid-transaction policy are applied
//! here, in order, exactly as the sequential engine does. The diff is then
//! built straight from the included transactions' last writes (what the
//! multi-version memory holds): per location the last write, balance
//! credits summed on top (an overflowing credit sends the block to the
//! sequential engine), before values from the snapshot. Accounts are
//! independent in a diff, so the work is split over the pool's threads in
//! two rounds: first the changed slots, by a hash of the slot (the slots of
//! one hot contract spread over every thread), then the accounts, by
//! address range (quantiles of the written addresses, so ranges stay even
//! whatever the addresses look like). Ranges in order are addresses in
//! order: their sorted outputs concatenate, and the diff's map is built
//! from that sequence in one pass.
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
/// `pool`'s threads: changed slots are found per slot shard, then the diff
/// is built per address range, each thread handling, in block order, the
/// writes to its own addresses.
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
    // Two rounds on the pool. First, each shard finds the changed slots its
    // hash selects (the slots of one hot contract spread over every
    // thread). Then each shard builds the diffs of one range of addresses,
    // with those slots merged in: the ranges are in address order, so the
    // shards' outputs concatenate into a sorted sequence, which the map is
    // built from in one pass.
    let slots: Vec<Result<ChangedSlots, Fallback<DB::Error>>> = pool.install(|| {
        (0..shards)
            .into_par_iter()
            .map(|shard| changed_slots(base, &included, shard, shards))
            .collect()
    });
    let slots = slots.into_iter().collect::<Result<Vec<_>, _>>()?;
    let ranges = Ranges::new(&included, shards);
    let parts: Vec<Result<Part, Fallback<DB::Error>>> = pool.install(|| {
        (0..ranges.len())
            .into_par_iter()
            .map(|range| range_diff(env, base, &included, &slots, &ranges, range))
            .collect()
    });
    // The write sets are dropped on the pool, in the background: nothing
    // waits for it.
    pool.spawn(move || drop((included, slots)));
    let mut accounts = Vec::new();
    let mut code = BTreeMap::new();
    for part in parts {
        let mut part = part?;
        code.append(&mut part.code);
        if accounts.is_empty() {
            accounts = part.accounts;
        } else {
            accounts.append(&mut part.accounts);
        }
    }
    // Already sorted: `from_iter`'s stable sort only checks it, then the map
    // is bulk-built.
    let accounts = BTreeMap::from_iter(accounts);
    Ok(EngineOutput { results, diff: StateDiff { accounts, code } })
}

/// Address ranges of about equal numbers of written accounts, one per
/// shard: ranges in order are addresses in order, so the shards' sorted
/// outputs concatenate into one sorted sequence. The bounds are quantiles
/// of a sample of the written addresses (addresses need not be uniform:
/// vanity and precompile-like addresses cluster).
struct Ranges {
    /// The first address of each range but the first.
    bounds: Vec<Address>,
}

impl Ranges {
    /// Addresses sampled to place the bounds.
    const SAMPLE: usize = 1024;

    fn new(included: &[Included], shards: usize) -> Self {
        let step = (included.len() / Self::SAMPLE).max(1);
        let mut sample: Vec<Address> = included
            .iter()
            .step_by(step)
            .flat_map(|(writes, _)| writes.iter().map(|(location, _)| location.address()))
            .collect();
        sample.sort_unstable();
        sample.dedup();
        let bounds =
            (1..shards).filter_map(|i| sample.get(i * sample.len() / shards).copied()).collect();
        Self { bounds }
    }

    /// The range `address` belongs to.
    fn of(&self, address: &Address) -> usize {
        self.bounds.partition_point(|bound| bound <= address)
    }

    /// Number of ranges.
    fn len(&self) -> usize {
        self.bounds.len() + 1
    }
}

/// The shard that handles a slot: spread by the slot's low bits, so the
/// slots of one contract go to every shard (mapping slots are hashes;
/// small sequential slots alternate).
fn slot_shard(address: &Address, slot: &U256, shards: usize) -> usize {
    (slot.as_limbs()[0] as usize ^ address.0[19] as usize) % shards
}

/// An account's changed slots, sorted by slot.
type AccountSlots = (Address, Vec<(U256, SlotChange)>);

/// The slots one shard found changed, per account: accounts sorted by
/// address.
type ChangedSlots = Vec<AccountSlots>;

/// The slots of shard `shard` that the included transactions changed:
/// each slot's last write against the snapshot's value. Slots of accounts
/// that [`range_diff`] replays are included too; it ignores them.
fn changed_slots<DB: DatabaseRef>(
    base: &DB,
    included: &[Included],
    shard: usize,
    shards: usize,
) -> Result<ChangedSlots, Fallback<DB::Error>> {
    let mut last: HashMap<Address, HashMap<U256, U256>> = HashMap::default();
    for (writes, _) in included {
        for (location, write) in writes.iter() {
            let (Location::Storage(address, slot), Write::Storage(value)) = (location, write)
            else {
                continue;
            };
            if slot_shard(address, slot, shards) != shard {
                continue;
            }
            last.entry(*address).or_default().insert(*slot, *value);
        }
    }
    let mut changed = Vec::with_capacity(last.len());
    for (address, slots) in last {
        let mut account = Vec::with_capacity(slots.len());
        for (slot, after) in slots {
            let before = base
                .storage_ref(address, slot)
                .map_err(|e| Fallback::Error(EngineError::Database(e)))?;
            if before != after {
                account.push((slot, SlotChange { before, after }));
            }
        }
        if !account.is_empty() {
            account.sort_unstable_by_key(|(slot, _)| *slot);
            changed.push((address, account));
        }
    }
    changed.sort_unstable_by_key(|(address, _)| *address);
    Ok(changed)
}

/// One address range's share of the diff.
struct Part {
    /// The changed accounts' diffs, sorted by address.
    accounts: Vec<(Address, AccountDiff)>,
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

/// The block's last writes to one account's own fields.
#[derive(Debug, Default, Clone, Copy)]
struct Written {
    core: Option<Option<AccountCore>>,
    balance: Balance,
    /// Its storage was wiped, or it left the state: the diff is rebuilt by
    /// replaying revm's write sets (see [`replay`]).
    replay: bool,
}

/// The last writes to the fields of the accounts in address range `range`,
/// sorted by address: per location the last write, credits summed on top.
fn written_fields<E>(
    included: &[Included],
    ranges: &Ranges,
    range: usize,
) -> Result<Vec<(Address, Written)>, Fallback<E>> {
    let mut written: HashMap<Address, Written> = HashMap::with_capacity_and_hasher(
        included.len() * 2 / ranges.len() + 16,
        Default::default(),
    );
    for (writes, _) in included {
        for (location, write) in writes.iter() {
            if matches!(location, Location::Storage(..)) {
                continue;
            }
            let address = location.address();
            if ranges.of(&address) != range {
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
                (Location::Clear(_), Write::Clear) => account.replay = true,
                _ => unreachable!("a location holds its own kind of write"),
            }
        }
    }
    let mut written: Vec<(Address, Written)> = written.into_iter().collect();
    written.sort_unstable_by_key(|(address, _)| *address);
    Ok(written)
}

/// The changed slots of the accounts in address range `range`, per
/// account in address order, each account's slots from every shard merged
/// in slot order.
fn slots_in_range<'a>(
    shards: &'a [ChangedSlots],
    ranges: &Ranges,
    range: usize,
) -> impl Iterator<Item = AccountSlots> + 'a {
    let mut parts: Vec<&'a [AccountSlots]> = shards
        .iter()
        .map(|list| {
            let start = list.partition_point(|(a, _)| ranges.of(a) < range);
            let end = list.partition_point(|(a, _)| ranges.of(a) <= range);
            &list[start..end]
        })
        .filter(|list| !list.is_empty())
        .collect();
    std::iter::from_fn(move || {
        let address = parts.iter().map(|part| part[0].0).min()?;
        let mut heads: Vec<&'a [(U256, SlotChange)]> = Vec::new();
        for part in &mut parts {
            if part[0].0 == address {
                heads.push(&part[0].1);
                *part = &part[1..];
            }
        }
        parts.retain(|part| !part.is_empty());
        Some((address, merge_sorted(heads)))
    })
}

/// Merges lists sorted by slot into one sorted list.
fn merge_sorted(mut heads: Vec<&[(U256, SlotChange)]>) -> Vec<(U256, SlotChange)> {
    if heads.len() == 1 {
        return heads[0].to_vec();
    }
    let mut merged = Vec::with_capacity(heads.iter().map(|h| h.len()).sum());
    while !heads.is_empty() {
        let smallest = (0..heads.len()).min_by_key(|&i| heads[i][0].0).unwrap_or_default();
        merged.push(heads[smallest][0]);
        heads[smallest] = &heads[smallest][1..];
        if heads[smallest].is_empty() {
            heads.swap_remove(smallest);
        }
    }
    merged
}

/// The diff of the addresses of range `range`, straight from the included
/// transactions' last writes (the values the multi-version memory holds)
/// and the changed slots: for each location its last write, credits
/// summed on top. An account whose storage was wiped or that left the
/// state (creation, self-destruct, EIP-161) or whose code changed is
/// rebuilt instead by [`replay`], which reproduces the sequential overlay's
/// bookkeeping of wiped storage.
fn range_diff<DB: DatabaseRef>(
    env: &ExecutionEnv,
    base: &DB,
    included: &[Included],
    slots: &[ChangedSlots],
    ranges: &Ranges,
    range: usize,
) -> Result<Part, Fallback<DB::Error>> {
    let written = written_fields(included, ranges, range)?;
    let mut slots = slots_in_range(slots, ranges, range).peekable();
    let mut written = written.into_iter().peekable();
    let mut accounts = Vec::with_capacity(written.len());
    let mut replayed = Vec::new();
    let db = |e| Fallback::Error(EngineError::Database(e));
    loop {
        // The next address in order, from the fields or the slots.
        let address = match (written.peek(), slots.peek()) {
            (None, None) => break,
            (Some((a, _)), None) => *a,
            (None, Some((a, _))) => *a,
            (Some((a, _)), Some((b, _))) => (*a).min(*b),
        };
        let account = match written.next_if(|(a, _)| *a == address) {
            Some((_, account)) => account,
            None => Written::default(),
        };
        let storage = slots.next_if(|(a, _)| *a == address).map(|(_, s)| s).unwrap_or_default();
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
        let after = Some(after);
        if before != after || !storage.is_empty() {
            // Sorted: the map is bulk-built.
            let storage = BTreeMap::from_iter(storage);
            accounts
                .push((address, AccountDiff { before, after, storage_cleared: false, storage }));
        }
    }
    let mut code = BTreeMap::new();
    if !replayed.is_empty() {
        let replayed: HashSet<Address> = replayed.into_iter().collect();
        let diff = replay(env, base, included, |address| replayed.contains(address))?;
        accounts.extend(diff.accounts);
        accounts.sort_unstable_by_key(|(address, _)| *address);
        code = diff.code;
    }
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
