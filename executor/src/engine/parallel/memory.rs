//! Multi-version memory: every location's writes by transaction index.
//!
//! A location is one independently versioned piece of state. An account is
//! split in three so that commutative balance credits do not conflict with
//! nonce or code changes:
//!
//! - [`Location::Basic`]: existence, nonce and code hash;
//! - [`Location::Balance`]: the balance, written either as an absolute value
//!   or as a lazy credit ([`Write::AddBalance`]) that readers sum in order;
//! - [`Location::Storage`]: one storage slot;
//! - [`Location::Clear`]: a marker that the account's storage was wiped
//!   (creation or destruction); slots written before it read as zero.
//!
//! Entries are kept per location in a `BTreeMap` keyed by transaction index,
//! inside a sharded concurrent map ([`DashMap`]): writers of different
//! locations never contend, and there is no global lock. An aborted
//! incarnation's entries become [`Entry::Estimate`] so later readers wait for
//! the re-execution instead of reading a value that is about to change.
//! Validation is by value: a transaction's read is still valid if reading the
//! same location again yields the same value.

use super::TxIdx;
use alloy_primitives::map::HashSet;
use alloy_primitives::{Address, B256, U256, map::DefaultHashBuilder};
use dashmap::DashMap;
use smallvec::SmallVec;
use std::sync::atomic::{AtomicBool, Ordering};

/// One independently versioned piece of state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Location {
    /// Existence, nonce and code hash of an account.
    Basic(Address),
    /// Balance of an account.
    Balance(Address),
    /// One storage slot.
    Storage(Address, U256),
    /// The account's storage was wiped.
    Clear(Address),
}

impl Location {
    /// The account the location belongs to.
    pub(crate) const fn address(&self) -> Address {
        match self {
            Self::Basic(a) | Self::Balance(a) | Self::Storage(a, _) | Self::Clear(a) => *a,
        }
    }
}

/// The non-balance fields of an existing account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AccountCore {
    /// Nonce.
    pub(crate) nonce: u64,
    /// Code hash.
    pub(crate) code_hash: B256,
}

/// What a transaction wrote to one location.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Write {
    /// New [`Location::Basic`] value (`None`: the account no longer exists).
    Basic(Option<AccountCore>),
    /// New absolute balance.
    SetBalance(U256),
    /// Balance credit, added in order to whatever the balance is.
    AddBalance(U256),
    /// New slot value.
    Storage(U256),
    /// Storage wipe marker.
    Clear,
}

/// One version of a location.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Entry {
    /// Written by an aborted incarnation: its re-execution will write again.
    Estimate,
    /// Written value.
    Value(Write),
}

/// The result of reading a location below a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Read<T> {
    /// No lower transaction wrote it: read the snapshot.
    Base,
    /// The value written by a lower transaction (the writer of the latest
    /// write it comes from).
    Value(T, TxIdx),
    /// A lower transaction's write is an estimate: wait for it.
    Blocked(TxIdx),
}

/// Adds a balance credit the way revm does (`incr_balance`): an overflowing
/// credit leaves the balance unchanged.
pub(crate) fn credit(balance: U256, amount: U256) -> U256 {
    balance.checked_add(amount).unwrap_or(balance)
}

/// The versions of one location, sorted by transaction index (usually one,
/// and mostly appended in order: an inline small vector beats a tree here).
#[derive(Debug, Default)]
pub(crate) struct Versions(SmallVec<[(TxIdx, Entry); 1]>);

impl Versions {
    fn insert(&mut self, tx: TxIdx, entry: Entry) {
        match self.0.last() {
            Some((last, _)) if *last < tx => self.0.push((tx, entry)),
            None => self.0.push((tx, entry)),
            _ => match self.0.binary_search_by_key(&tx, |(i, _)| *i) {
                Ok(i) => self.0[i].1 = entry,
                Err(i) => self.0.insert(i, (tx, entry)),
            },
        }
    }

    fn remove(&mut self, tx: TxIdx) {
        if let Ok(i) = self.0.binary_search_by_key(&tx, |(i, _)| *i) {
            self.0.remove(i);
        }
    }

    fn get_mut(&mut self, tx: TxIdx) -> Option<&mut Entry> {
        let i = self.0.binary_search_by_key(&tx, |(i, _)| *i).ok()?;
        Some(&mut self.0[i].1)
    }

    /// Versions below `tx`, highest first.
    fn below(&self, tx: TxIdx) -> impl Iterator<Item = &(TxIdx, Entry)> {
        let end = self.0.partition_point(|(i, _)| *i < tx);
        self.0[..end].iter().rev()
    }
}

/// The multi-version memory of one block.
#[derive(Debug)]
pub(crate) struct MvMemory {
    data: DashMap<Location, Versions, DefaultHashBuilder>,
    /// Whether any storage wipe was ever recorded in this block (most blocks
    /// have none; then slot reads skip the wipe lookup). Set before the wipe
    /// is inserted, so a validation that runs after the wiping incarnation
    /// finished always sees it.
    any_clear: AtomicBool,
}

impl MvMemory {
    /// Memory for a block of `len` transactions.
    pub(crate) fn new(len: usize, workers: usize) -> Self {
        let shards = (workers.max(1) * 16).next_power_of_two().max(4);
        Self {
            data: DashMap::with_capacity_and_hasher_and_shard_amount(
                len * 4,
                DefaultHashBuilder::default(),
                shards,
            ),
            any_clear: AtomicBool::new(false),
        }
    }

    /// Records an incarnation's write set, replacing `previous`, the
    /// previous incarnation's. Returns whether it wrote a location the
    /// previous one did not (then every higher transaction must be
    /// validated again).
    pub(crate) fn record(
        &self,
        tx: TxIdx,
        writes: &[(Location, Write)],
        previous: &[(Location, Write)],
    ) -> bool {
        for (location, write) in writes {
            if matches!(location, Location::Clear(_)) {
                self.any_clear.store(true, Ordering::SeqCst);
            }
            self.data.entry(*location).or_default().insert(tx, Entry::Value(*write));
        }
        if previous.is_empty() {
            return !writes.is_empty();
        }
        // Write sets are usually a handful of locations: linear scans then.
        let contains =
            |set: &[(Location, Write)], location: &Location| set.iter().any(|(l, _)| l == location);
        let (wrote_new, stale): (bool, Vec<Location>) = if writes.len() * previous.len() <= 1024 {
            (
                writes.iter().any(|(l, _)| !contains(previous, l)),
                previous.iter().map(|(l, _)| *l).filter(|l| !contains(writes, l)).collect(),
            )
        } else {
            let now: HashSet<Location> = writes.iter().map(|(l, _)| *l).collect();
            let before: HashSet<Location> = previous.iter().map(|(l, _)| *l).collect();
            (
                now.iter().any(|l| !before.contains(l)),
                before.into_iter().filter(|l| !now.contains(l)).collect(),
            )
        };
        for location in stale {
            if let Some(mut entries) = self.data.get_mut(&location) {
                entries.remove(tx);
            }
        }
        wrote_new
    }

    /// Turns an aborted incarnation's writes into estimates.
    pub(crate) fn mark_estimates(&self, tx: TxIdx, writes: &[(Location, Write)]) {
        for (location, _) in writes {
            if let Some(mut entries) = self.data.get_mut(location)
                && let Some(entry) = entries.get_mut(tx)
            {
                *entry = Entry::Estimate;
            }
        }
    }

    /// The latest write to `location` below `tx`, with its writer.
    fn latest(&self, location: &Location, tx: TxIdx) -> Option<(TxIdx, Entry)> {
        let entries = self.data.get(location)?;
        entries.below(tx).next().map(|(i, e)| (*i, *e))
    }

    /// Reads an account's existence, nonce and code hash.
    pub(crate) fn read_basic(&self, address: Address, tx: TxIdx) -> Read<Option<AccountCore>> {
        match self.latest(&Location::Basic(address), tx) {
            None => Read::Base,
            Some((i, Entry::Estimate)) => Read::Blocked(i),
            Some((i, Entry::Value(Write::Basic(core)))) => Read::Value(core, i),
            Some((_, Entry::Value(_))) => unreachable!("basic location holds basic writes"),
        }
    }

    /// Reads a balance: the latest absolute value (or `base()`) plus every
    /// later credit, in order.
    pub(crate) fn read_balance<E>(
        &self,
        address: Address,
        tx: TxIdx,
        base: impl FnOnce() -> Result<U256, E>,
    ) -> Result<Read<U256>, E> {
        let Some(entries) = self.data.get(&Location::Balance(address)) else {
            return Ok(Read::Base);
        };
        let mut sum = Some(U256::ZERO);
        let mut start = None;
        let mut latest = None;
        for (i, entry) in entries.below(tx) {
            latest.get_or_insert(*i);
            match entry {
                Entry::Estimate => return Ok(Read::Blocked(*i)),
                Entry::Value(Write::SetBalance(v)) => {
                    start = Some(*v);
                    break;
                }
                Entry::Value(Write::AddBalance(d)) => sum = sum.and_then(|s| s.checked_add(*d)),
                Entry::Value(_) => unreachable!("balance location holds balance writes"),
            }
        }
        drop(entries);
        let Some(latest) = latest else { return Ok(Read::Base) };
        let start = match start {
            Some(v) => v,
            None => base()?,
        };
        // Without an overflow, credits in any order add up to what revm's
        // in-order credits give. An overflowing credit sends the whole block
        // to the sequential engine at finalization, so this value is never
        // used then: any deterministic one will do.
        let balance = sum.and_then(|s| start.checked_add(s)).unwrap_or(U256::MAX);
        Ok(Read::Value(balance, latest))
    }

    /// Reads a storage slot, honouring storage wipes.
    pub(crate) fn read_storage(&self, address: Address, slot: U256, tx: TxIdx) -> Read<U256> {
        let written = self.latest(&Location::Storage(address, slot), tx);
        let cleared = if self.any_clear.load(Ordering::SeqCst) {
            self.latest(&Location::Clear(address), tx)
        } else {
            None
        };
        match (written, cleared) {
            (Some((i, _)), Some((c, entry))) if c > i => clear_read(c, entry),
            (None, Some((c, entry))) => clear_read(c, entry),
            (Some((i, Entry::Estimate)), _) => Read::Blocked(i),
            (Some((i, Entry::Value(Write::Storage(v)))), _) => Read::Value(v, i),
            (Some((_, Entry::Value(_))), _) => unreachable!("slot location holds slot writes"),
            (None, None) => Read::Base,
        }
    }
}

fn clear_read(writer: TxIdx, entry: Entry) -> Read<U256> {
    match entry {
        Entry::Estimate => Read::Blocked(writer),
        Entry::Value(_) => Read::Value(U256::ZERO, writer),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    const A: Address = Address::repeat_byte(0xaa);

    fn balance(mv: &MvMemory, tx: TxIdx) -> Read<U256> {
        mv.read_balance(A, tx, || Ok::<_, Infallible>(U256::from(100))).unwrap()
    }

    #[test]
    fn balance_credits_sum_in_order_on_the_latest_absolute_value() {
        let mv = MvMemory::new(5, 1);
        mv.record(1, &[(Location::Balance(A), Write::AddBalance(U256::from(5)))], &[]);
        mv.record(2, &[(Location::Balance(A), Write::SetBalance(U256::from(10)))], &[]);
        let third = [(Location::Balance(A), Write::AddBalance(U256::from(1)))];
        mv.record(3, &third, &[]);
        assert_eq!(balance(&mv, 0), Read::Base);
        assert_eq!(balance(&mv, 2), Read::Value(U256::from(105), 1));
        assert_eq!(balance(&mv, 4), Read::Value(U256::from(11), 3));
        mv.mark_estimates(3, &third);
        assert_eq!(balance(&mv, 4), Read::Blocked(3));
        assert_eq!(balance(&mv, 3), Read::Value(U256::from(10), 2));
    }

    #[test]
    fn a_wipe_hides_earlier_slot_writes_and_rewrites_drop_stale_locations() {
        let mv = MvMemory::new(4, 1);
        let slot = U256::from(7);
        assert!(mv.record(0, &[(Location::Storage(A, slot), Write::Storage(U256::from(3)))], &[]));
        let wipe = [(Location::Clear(A), Write::Clear)];
        assert!(mv.record(1, &wipe, &[]));
        assert_eq!(mv.read_storage(A, slot, 1), Read::Value(U256::from(3), 0));
        assert_eq!(mv.read_storage(A, slot, 2), Read::Value(U256::ZERO, 1));
        assert_eq!(mv.read_storage(A, U256::from(8), 3), Read::Value(U256::ZERO, 1));
        // A new incarnation of tx 1 that does not wipe removes the marker.
        assert!(!mv.record(1, &[], &wipe));
        assert_eq!(mv.read_storage(A, slot, 2), Read::Value(U256::from(3), 0));
        assert_eq!(mv.read_storage(A, U256::from(8), 3), Read::Base);
    }
}
