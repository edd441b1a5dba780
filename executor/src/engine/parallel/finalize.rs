//! Finalization: the block's results and state diff from the last
//! incarnation of every transaction, in order.
//!
//! The block gas-limit rule and the invalid-transaction policy are applied
//! here, in order, exactly as the sequential engine does; the writes of the
//! transactions the block leaves out are removed from the multi-version
//! memory, which then holds exactly the included transactions' last
//! writes. The diff is built from it: per location the last write, balance
//! credits summed on top (an overflowing credit sends the block to the
//! sequential engine), before values from the snapshot. Accounts are
//! independent in a diff, so the work is split over the pool's threads in
//! two rounds: first the memory's map shards are read for the changed
//! slots and the accounts' final fields (the slots of one hot contract
//! spread over every thread), then the accounts are built by address range
//! (quantiles of the changed addresses, so ranges stay even whatever the
//! addresses look like). Ranges in order are addresses in order: their
//! sorted outputs concatenate, and the diff's map is built from that
//! sequence in one pass.
//!
//! An account whose storage was wiped or that left the state (creation,
//! self-destruct, EIP-161 removal) or whose code changed is rebuilt instead
//! by replaying revm's write sets into a [`BlockState`], the sequential
//! engine's own overlay: after a wipe that overlay also records the slots a
//! later transaction only read, and the diff must match it exactly.

use super::{
    execute::{Changes, Outcome, TxOutput, computed, touched},
    memory::{AccountCore, FinalBalance, FinalFields, FinalSlot, MvMemory},
};
use crate::{
    InvalidTxPolicy,
    engine::{BlockGas, EngineError, EngineOutput, ExecutionEnv, TxResult, sequential::skip},
    state::{AccountDiff, BasicAccount, BlockState, SlotChange, StateDiff},
    tx::RecoveredTx,
};
use alloy_primitives::{Address, B256, Bytes, U256, map::HashSet};
use alloy_trie::KECCAK_EMPTY;
use rayon::{ThreadPool, prelude::*};
use revm::{Database, DatabaseRef, state::Account};
use std::{
    cmp::Reverse,
    collections::{BTreeMap, BinaryHeap},
};

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

/// Builds the engine output from each transaction's final output and the
/// multi-version memory (which then holds exactly the last incarnations'
/// writes), using `pool`'s threads: the memory's changed slots and
/// accounts are gathered per map shard, then the diff is built per address
/// range.
pub(crate) fn finalize<DB: DatabaseRef + Sync>(
    env: &ExecutionEnv,
    base: &DB,
    transactions: &[RecoveredTx],
    outputs: Vec<TxOutput>,
    memory: &MvMemory,
    policy: InvalidTxPolicy,
    pool: &ThreadPool,
) -> Result<EngineOutput, Fallback<DB::Error>> {
    let mut gas = BlockGas::new(env.block.gas_limit);
    let mut results = Vec::with_capacity(outputs.len());
    let mut included: Vec<Box<Changes>> = Vec::with_capacity(outputs.len());
    // What no longer serves is freed on the pool, in the background.
    let mut spent = Vec::with_capacity(outputs.len());
    for (index, (tx, output)) in transactions.iter().zip(outputs).enumerate() {
        let TxOutput { reads, writes, outcome, .. } = output;
        if !gas.admits(tx) {
            // Left out: its writes leave the memory (an invalid
            // transaction has none).
            memory.record(index, &[], &writes, &[]);
            results.push(skip(policy, index, BlockGas::deferred())?);
        } else {
            match outcome {
                Outcome::Invalid(reason) => results.push(skip(policy, index, reason)?),
                Outcome::Executed(executed, changes) => {
                    gas.charge(executed.gas_used);
                    results.push(TxResult::Executed(executed));
                    included.push(changes);
                }
            }
        }
        spent.push((reads, writes));
    }
    pool.spawn(move || drop(spent));

    // Two rounds on the pool. First, the memory's shards are read for the
    // changed slots and the accounts' final fields: lists sorted by
    // address. Then each thread builds the diffs of one range of
    // addresses: the ranges are in address order, so their outputs
    // concatenate into a sorted sequence, which the map is built from in
    // one pass.
    let (slots, fields) =
        pool.install(|| rayon::join(|| changed_slots(base, memory), || final_fields(memory)));
    let (slots, fields) = (slots?, fields?);
    let ranges = Ranges::new(&fields, &slots, pool.current_num_threads());
    let parts: Result<Vec<Part>, _> = pool.install(|| {
        ranges
            .heaviest_first()
            .into_par_iter()
            .with_max_len(1)
            .map(|range| range_diff(env, base, &included, &slots, &fields, &ranges, range))
            .collect()
    });
    pool.spawn(move || drop((included, slots, fields)));
    let mut parts = parts?;
    parts.sort_unstable_by_key(|part| part.range);
    let mut accounts = Vec::with_capacity(parts.iter().map(|part| part.accounts.len()).sum());
    let mut code = BTreeMap::new();
    for mut part in parts {
        code.append(&mut part.code);
        accounts.append(&mut part.accounts);
    }
    // Already sorted: `from_iter`'s stable sort only checks it, then the map
    // is bulk-built.
    let accounts = BTreeMap::from_iter(accounts);
    Ok(EngineOutput { results, diff: StateDiff { accounts, code } })
}

/// Address ranges of about equal work, [`Ranges::PER_THREAD`] per thread:
/// ranges in order are addresses in order, so the ranges' sorted outputs
/// concatenate into one sorted sequence. The bounds are weighted quantiles
/// of a sample of the changed accounts (addresses need not be uniform:
/// vanity and precompile-like addresses cluster; and one hot contract's
/// thousands of changed slots weigh like thousands of accounts).
struct Ranges {
    /// The first address of each range but the first.
    bounds: Vec<Address>,
    /// Each range's estimated work.
    weights: Vec<usize>,
}

impl Ranges {
    /// Sample points per list of changed accounts or slots.
    const SAMPLE: usize = 256;
    /// Ranges per thread: more, smaller ranges let a thread that is done
    /// take another while one works through a hot contract's slots.
    const PER_THREAD: usize = 4;
    /// Relative cost of an account's diff (a snapshot lookup and the
    /// diff) and of one changed slot (merged, then put in the account's
    /// storage map), as measured on ERC-20 blocks.
    const ACCOUNT_WEIGHT: usize = 3;
    const SLOT_WEIGHT: usize = 1;

    fn new(fields: &[Vec<(Address, FinalFields)>], slots: &[ChangedSlots], threads: usize) -> Self {
        let ranges = threads.max(1) * Self::PER_THREAD;
        let chunk = |len: usize| (len / Self::SAMPLE).max(1);
        // (first address of a run of accounts, weight of the run), sorted.
        let mut sample: Vec<(Address, usize)> = fields
            .iter()
            .flat_map(|list| list.chunks(chunk(list.len())))
            .map(|run| (run[0].0, run.len() * Self::ACCOUNT_WEIGHT))
            .chain(slots.iter().flat_map(|list| list.chunks(chunk(list.len()))).map(|run| {
                (run[0].0, run.iter().map(|(_, s)| s.len()).sum::<usize>() * Self::SLOT_WEIGHT)
            }))
            .collect();
        sample.sort_unstable_by_key(|(address, _)| *address);
        // One point per address (an account's slots may be in several
        // lists).
        sample.dedup_by(|next, kept| {
            let same = next.0 == kept.0;
            if same {
                kept.1 += next.1;
            }
            same
        });
        let total: usize = sample.iter().map(|(_, weight)| weight).sum();
        let mut bounds = Vec::with_capacity(ranges - 1);
        let mut weights = vec![0; ranges];
        let mut before = 0;
        for (address, weight) in sample {
            // A range starts at the first run whose middle is past its
            // share: a heavy run (a hot contract) starts a range of its
            // own, and several ranges may start at once (those between are
            // empty).
            let middle = before * 2 + weight;
            while bounds.len() + 1 < ranges && middle * ranges >= total * 2 * (bounds.len() + 1) {
                bounds.push(address);
            }
            weights[bounds.len()] += weight;
            before += weight;
        }
        Self { bounds, weights }
    }

    /// The ranges, heaviest first: started first, the heaviest no longer
    /// finishes alone after the others are done.
    fn heaviest_first(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.sort_by_key(|range| std::cmp::Reverse(self.weights.get(*range).copied()));
        order
    }

    /// The range `address` belongs to.
    fn of(&self, address: &Address) -> usize {
        self.bounds.partition_point(|bound| bound <= address)
    }

    /// Number of ranges.
    fn len(&self) -> usize {
        self.bounds.len() + 1
    }

    /// The part of `list` (sorted by address) in range `range`.
    fn slice<'a, T>(&self, list: &'a [(Address, T)], range: usize) -> &'a [(Address, T)] {
        let start = list.partition_point(|(a, _)| self.of(a) < range);
        let end = list.partition_point(|(a, _)| self.of(a) <= range);
        &list[start..end]
    }
}

/// An account's changed slots, sorted by slot.
type AccountSlots = (Address, Vec<(U256, SlotChange)>);

/// Changed slots per account, accounts sorted by address (one list of
/// [`changed_slots`]; an account's slots may be spread over several).
type ChangedSlots = Vec<AccountSlots>;

/// The slots the block changed: each slot's last write against the
/// snapshot's value, gathered per shard of the memory into lists sorted by
/// address and slot. Slots of accounts that [`range_diff`] replays are
/// included too; it ignores them.
fn changed_slots<DB: DatabaseRef + Sync>(
    base: &DB,
    memory: &MvMemory,
) -> Result<Vec<ChangedSlots>, Fallback<DB::Error>> {
    memory
        .final_slots()
        .try_fold(
            list(memory.slot_count()),
            |mut changed, FinalSlot { address, slot, value, base: before }| {
                let after = value.ok_or(Fallback::<DB::Error>::Sequential)?;
                let before = match before {
                    Some(before) => before,
                    None => base
                        .storage_ref(address, slot)
                        .map_err(|e| Fallback::Error(EngineError::Database(e)))?,
                };
                if before != after {
                    changed.push((address, slot, SlotChange { before, after }));
                }
                Ok::<_, Fallback<DB::Error>>(changed)
            },
        )
        .map(|changed| {
            let mut changed = changed?;
            changed.sort_unstable_by_key(|(address, slot, _)| (*address, *slot));
            let accounts = changed
                .chunk_by(|a, b| a.0 == b.0)
                .map(|run| (run[0].0, run.iter().map(|(_, slot, c)| (*slot, *c)).collect()))
                .collect();
            Ok(accounts)
        })
        .collect()
}

/// An empty list for one part of a parallel gathering of `total` items
/// (rayon splits the work into a few parts per thread): sized so that it
/// rarely grows, since growing copies it.
fn list<T>(total: usize) -> impl Fn() -> Vec<T> + Sync + Send {
    let parts = rayon::current_num_threads().max(1) * 2;
    move || Vec::with_capacity(total / parts + 16)
}

/// The written accounts' own fields as the block leaves them, gathered per
/// shard of the memory into lists sorted by address.
fn final_fields<E: Send>(
    memory: &MvMemory,
) -> Result<Vec<Vec<(Address, FinalFields)>>, Fallback<E>> {
    memory
        .final_accounts()
        .try_fold(list(memory.account_count()), |mut accounts, (address, fields)| {
            let fields = fields.ok_or(Fallback::<E>::Sequential)?;
            if fields != FinalFields::default() {
                accounts.push((address, fields));
            }
            Ok::<_, Fallback<E>>(accounts)
        })
        .map(|accounts| {
            let mut accounts = accounts?;
            accounts.sort_unstable_by_key(|(address, _)| *address);
            Ok(accounts)
        })
        .collect()
}

/// One address range's share of the diff.
struct Part {
    /// The range's index.
    range: usize,
    /// The changed accounts' diffs, sorted by address.
    accounts: Vec<(Address, AccountDiff)>,
    code: BTreeMap<B256, Bytes>,
}

/// The changed slots of the accounts in address range `range`, per
/// account in address order, each account's slots from every list merged
/// in slot order.
fn slots_in_range<'a>(
    lists: &'a [ChangedSlots],
    ranges: &Ranges,
    range: usize,
) -> impl Iterator<Item = AccountSlots> + 'a {
    let mut parts: Vec<&'a [AccountSlots]> = lists
        .iter()
        .map(|list| ranges.slice(list, range))
        .filter(|part| !part.is_empty())
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
        Some((address, Merged::new(heads, |(slot, _)| *slot).copied().collect()))
    })
}

/// The elements of lists sorted by `key`, in order: a k-way merge that
/// moves nothing (each list is a slice; a heap holds each list's next
/// key).
struct Merged<'a, T, K, F> {
    lists: Vec<&'a [T]>,
    next: BinaryHeap<Reverse<(K, usize)>>,
    key: F,
    remaining: usize,
}

impl<'a, T, K: Ord, F: Fn(&T) -> K> Merged<'a, T, K, F> {
    fn new(lists: Vec<&'a [T]>, key: F) -> Self {
        let next = lists
            .iter()
            .enumerate()
            .filter_map(|(i, list)| list.first().map(|first| Reverse((key(first), i))))
            .collect();
        let remaining = lists.iter().map(|list| list.len()).sum();
        Self { lists, next, key, remaining }
    }
}

impl<'a, T, K: Ord, F: Fn(&T) -> K> Iterator for Merged<'a, T, K, F> {
    type Item = &'a T;

    fn next(&mut self) -> Option<&'a T> {
        let Reverse((_, i)) = self.next.pop()?;
        let (item, rest) = self.lists[i].split_first()?;
        self.lists[i] = rest;
        if let Some(first) = rest.first() {
            self.next.push(Reverse(((self.key)(first), i)));
        }
        self.remaining -= 1;
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl<'a, T, K: Ord, F: Fn(&T) -> K> ExactSizeIterator for Merged<'a, T, K, F> {}

/// The diff of the addresses of range `range`, from the accounts' final
/// fields and the changed slots: balance credits summed on top of the
/// snapshot's balance or the last absolute value. An account whose storage
/// was wiped or that left the state (creation, self-destruct, EIP-161) or
/// whose code changed is rebuilt instead by [`replay`], which reproduces
/// the sequential overlay's bookkeeping of wiped storage.
fn range_diff<DB: DatabaseRef>(
    env: &ExecutionEnv,
    base: &DB,
    included: &[Box<Changes>],
    slots: &[ChangedSlots],
    fields: &[Vec<(Address, FinalFields)>],
    ranges: &Ranges,
    range: usize,
) -> Result<Part, Fallback<DB::Error>> {
    let parts = fields.iter().map(|list| ranges.slice(list, range)).collect();
    let mut written = Merged::new(parts, |(address, _)| *address).peekable();
    let mut slots = slots_in_range(slots, ranges, range).peekable();
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
            Some((_, account)) => *account,
            None => FinalFields::default(),
        };
        let storage = slots.next_if(|(a, _)| *a == address).map(|(_, s)| s).unwrap_or_default();
        if account.cleared || account.core == Some(None) {
            replayed.push(address);
            continue;
        }
        let before = match account.base {
            Some(before) => before,
            None => base.basic_ref(address).map_err(db)?.map(|i| BasicAccount::from_info(&i)),
        };
        let before_balance = before.map(|b| b.balance).unwrap_or_default();
        let balance = match account.balance {
            FinalBalance::Untouched => before_balance,
            FinalBalance::Credited(sum) => {
                before_balance.checked_add(sum).ok_or(Fallback::Sequential)?
            }
            FinalBalance::Set(v) => v,
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
    Ok(Part { range, accounts, code })
}

/// The diff of the addresses `mine` selects: every included transaction's
/// changes to them, committed in order into a [`BlockState`], the sequential
/// engine's own overlay.
fn replay<DB: DatabaseRef>(
    env: &ExecutionEnv,
    base: &DB,
    included: &[Box<Changes>],
    mine: impl Fn(&Address) -> bool,
) -> Result<StateDiff, Fallback<DB::Error>> {
    let beneficiary = env.block.beneficiary;
    let mut overlay = BlockState::new(base);
    for changes in included {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn address(i: u16) -> Address {
        let mut bytes = [0u8; 20];
        bytes[..2].copy_from_slice(&i.to_be_bytes());
        Address::from(bytes)
    }

    #[test]
    fn ranges_weigh_a_hot_contract_and_start_it_first() {
        let accounts: Vec<(Address, FinalFields)> =
            (0..4_000).map(|i| (address(i * 2), FinalFields::default())).collect();
        let (first, second) = accounts.split_at(1_500);
        let fields = [first.to_vec(), second.to_vec()];
        // A contract with 12,000 changed slots, in two lists.
        let hot = address(1_001);
        let change = SlotChange { before: U256::ZERO, after: U256::from(1) };
        let slots: Vec<ChangedSlots> = (0..2)
            .map(|list| {
                let slots = (0..6_000).map(|i| (U256::from(i * 2 + list), change)).collect();
                vec![(hot, slots)]
            })
            .collect();
        let ranges = Ranges::new(&fields, &slots, 2);
        assert_eq!(ranges.len(), 2 * Ranges::PER_THREAD);
        assert!(ranges.bounds.is_sorted());
        // The hot contract's range weighs most, and is started first.
        assert_eq!(ranges.heaviest_first()[0], ranges.of(&hot));
        // Its slots weigh half the work: it has a range nearly to itself
        // (by count alone, it would share one with 500 accounts).
        let beside_hot = ranges.slice(&accounts, ranges.of(&hot)).len();
        assert!(beside_hot < 50, "{beside_hot} accounts beside the hot contract");
        // Every account lands in exactly one range, in order.
        let sliced: Vec<Address> = (0..ranges.len())
            .flat_map(|r| ranges.slice(&accounts, r).iter().map(|(a, _)| *a))
            .collect();
        assert_eq!(sliced, accounts.iter().map(|(a, _)| *a).collect::<Vec<_>>());
        // An account's slots from several lists merge in slot order.
        let (merged_address, merged) = slots_in_range(&slots, &ranges, ranges.of(&hot))
            .find(|(a, _)| *a == hot)
            .expect("the hot contract's slots");
        assert_eq!(merged_address, hot);
        assert_eq!(merged.len(), 12_000);
        assert!(merged.windows(2).all(|pair| pair[0].0 < pair[1].0));
    }
}
