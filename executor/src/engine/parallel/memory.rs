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
//! Entries are kept per location in a small vector sorted by transaction
//! index, inside sharded concurrent maps ([`DashMap`]): one keyed by address
//! for an account's own locations (its fields are usually read and written
//! together: one lookup), one keyed by slot. Writers of different keys never
//! contend, and there is no global lock. An aborted
//! incarnation's entries become [`Entry::Estimate`] so later readers wait for
//! the re-execution instead of reading a value that is about to change.
//! Validation is by value: a transaction's read is still valid if reading the
//! same location again yields the same value.
//!
//! The block's beneficiary is credited a fee by nearly every transaction:
//! kept in its one version list, those credits would make every
//! transaction take the same lock and move the same cache lines between
//! cores. Its credits are kept instead in [`FEE_STRIPES`] lists chosen by
//! transaction index, each on its own cache line (consecutive transactions,
//! which run at the same time, use different ones); its absolute writes
//! stay in its own list. A reader of its balance (rare: a transaction that
//! pays it, or checks it) sums the credits of every stripe above the latest
//! absolute write.
//!
//! Once every transaction is executed, the memory holds each location's
//! final writes: finalization reads the block's diff from it
//! ([`MvMemory::final_slots`], [`MvMemory::final_accounts`]) rather than
//! from every transaction's write set. A written location's snapshot value
//! is kept with its versions when the writing transaction read it there,
//! so the diff's before values need no second snapshot lookup.

use super::{
    TxIdx,
    view::{self, ReadRecord},
};
use crate::state::BasicAccount;
use alloy_primitives::map::HashSet;
use alloy_primitives::{Address, B256, U256, map::DefaultHashBuilder};
use dashmap::DashMap;
use rayon::prelude::*;
use smallvec::SmallVec;
use std::sync::{
    Mutex, MutexGuard,
    atomic::{AtomicBool, Ordering},
};

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
        match self.search(tx) {
            Ok(i) => self.0[i].1 = entry,
            Err(i) if i == self.0.len() => self.0.push((tx, entry)),
            Err(i) => self.0.insert(i, (tx, entry)),
        }
    }

    fn remove(&mut self, tx: TxIdx) {
        if let Ok(i) = self.search(tx) {
            self.0.remove(i);
        }
    }

    fn get_mut(&mut self, tx: TxIdx) -> Option<&mut Entry> {
        let i = self.search(tx).ok()?;
        Some(&mut self.0[i].1)
    }

    /// Versions below `tx`, highest first.
    fn below(&self, tx: TxIdx) -> impl Iterator<Item = &(TxIdx, Entry)> {
        self.0[..self.count_below(tx)].iter().rev()
    }

    /// `Ok` with `tx`'s position, or `Err` with where it would go.
    fn search(&self, tx: TxIdx) -> Result<usize, usize> {
        let i = self.count_below(tx);
        match self.0.get(i) {
            Some((at, _)) if *at == tx => Ok(i),
            _ => Err(i),
        }
    }

    /// How many versions are below `tx`.
    ///
    /// Transactions run roughly in index order, so the one asking is nearly
    /// always just above the latest writers: the search gallops back from
    /// the end (steps 1, 2, 4, ..) and then bisects the last step. On a hot
    /// location's long list that touches a cache line or two, where a
    /// bisection from the middle touches one cold line per halving (a
    /// pool's reserves in the AMM benchmark: a hundred versions, 5 kB).
    fn count_below(&self, tx: TxIdx) -> usize {
        let versions = &self.0;
        // Every version from `above` on is at or above `tx`.
        let mut above = versions.len();
        let mut step = 1;
        while above > 0 {
            let probe = above.saturating_sub(step);
            if versions[probe].0 < tx {
                let rest = &versions[probe + 1..above];
                return probe + 1 + rest.partition_point(|(i, _)| *i < tx);
            }
            above = probe;
            step *= 2;
        }
        0
    }
}

/// The version lists of an account's own locations, under one key: reading
/// or writing an account's fields together (a sender's nonce and balance)
/// is one map operation.
#[derive(Debug, Default)]
struct AccountVersions {
    basic: Versions,
    balance: Versions,
    /// Storage wipes: rare (creations and destructions), so boxed, to keep
    /// every account's entry in the map smaller (272 bytes to 216).
    clear: Option<Box<Versions>>,
    /// The account in the snapshot, once a transaction that writes it read
    /// it there (finalization then needs no snapshot lookup for it).
    base: Option<Option<BasicAccount>>,
}

/// The versions of one slot, and its value in the snapshot once a
/// transaction that writes it read it there.
#[derive(Debug, Default)]
struct SlotVersions {
    versions: Versions,
    base: Option<U256>,
}

impl AccountVersions {
    /// The versions of `location`, one of this account's own locations.
    fn of(&mut self, location: &Location) -> &mut Versions {
        match location {
            Location::Basic(_) => &mut self.basic,
            Location::Balance(_) => &mut self.balance,
            Location::Clear(_) => self.clear.get_or_insert_default(),
            Location::Storage(..) => unreachable!("slots have their own map"),
        }
    }
}

/// A balance read as far as the version lists go (one or more: the
/// beneficiary's own and its fee stripes): the snapshot's balance may still
/// be needed, read after the lists' locks are released.
struct BalanceSum {
    /// The latest absolute value below the reader, and its writer.
    set: Option<(TxIdx, U256)>,
    /// The credits above it (`None`: they overflow).
    credits: Option<U256>,
    /// The latest writer seen.
    latest: Option<TxIdx>,
    /// An estimate above the latest absolute value.
    blocked: Option<TxIdx>,
}

impl BalanceSum {
    /// Nothing read yet (what an account no transaction wrote reads).
    const fn new() -> Self {
        Self { set: None, credits: Some(U256::ZERO), latest: None, blocked: None }
    }

    /// The account's own versions below `tx`.
    fn of(versions: &Versions, tx: TxIdx) -> Self {
        let mut sum = Self::new();
        sum.own(versions, tx);
        sum
    }

    /// The account's own versions below `tx`, down to the latest absolute
    /// value.
    fn own(&mut self, versions: &Versions, tx: TxIdx) {
        for (i, entry) in versions.below(tx) {
            self.latest = self.latest.max(Some(*i));
            match entry {
                Entry::Estimate => {
                    self.blocked = Some(*i);
                    return;
                }
                Entry::Value(Write::SetBalance(v)) => {
                    self.set = Some((*i, *v));
                    return;
                }
                Entry::Value(Write::AddBalance(d)) => self.add(*d),
                Entry::Value(_) => unreachable!("balance location holds balance writes"),
            }
        }
    }

    /// A list of credits only (a fee stripe): those below `tx` and above
    /// the latest absolute value.
    fn credits(&mut self, versions: &Versions, tx: TxIdx) {
        let floor = self.set.map(|(i, _)| i);
        for (i, entry) in versions.below(tx) {
            if floor.is_some_and(|floor| *i <= floor) {
                return;
            }
            self.latest = self.latest.max(Some(*i));
            match entry {
                Entry::Estimate => self.blocked = self.blocked.max(Some(*i)),
                Entry::Value(Write::AddBalance(d)) => self.add(*d),
                Entry::Value(_) => unreachable!("fee stripes hold credits"),
            }
        }
    }

    fn add(&mut self, amount: U256) {
        self.credits = self.credits.and_then(|sum| sum.checked_add(amount));
    }

    /// The balance the block leaves, when summed above every transaction
    /// (`None`: an estimate is left, which a finished run never has, or
    /// the credits overflow).
    fn into_final(self) -> Option<FinalBalance> {
        if self.blocked.is_some() {
            return None;
        }
        let credits = self.credits?;
        Some(match (self.set, self.latest) {
            (Some((_, v)), _) => FinalBalance::Set(v.checked_add(credits)?),
            (None, Some(_)) => FinalBalance::Credited(credits),
            (None, None) => FinalBalance::Untouched,
        })
    }

    /// The balance read: the latest absolute value (or `base()`) plus the
    /// credits above it.
    fn finish<E>(self, base: impl FnOnce() -> Result<U256, E>) -> Result<Read<U256>, E> {
        if let Some(i) = self.blocked {
            return Ok(Read::Blocked(i));
        }
        let Some(latest) = self.latest else { return Ok(Read::Base) };
        let start = match self.set {
            Some((_, v)) => v,
            None => base()?,
        };
        // Without an overflow, credits in any order add up to what revm's
        // in-order credits give. An overflowing credit sends the whole block
        // to the sequential engine at finalization, so this value is never
        // used then: any deterministic one will do.
        let balance = self.credits.and_then(|s| start.checked_add(s)).unwrap_or(U256::MAX);
        Ok(Read::Value(balance, latest))
    }
}

/// An account's own fields as the block leaves them: what finalization
/// reads of the memory once every transaction is executed (and the writes
/// of transactions the block leaves out are removed).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FinalFields {
    /// The last existence, nonce and code hash written (`None`: never).
    pub(crate) core: Option<Option<AccountCore>>,
    /// The balance.
    pub(crate) balance: FinalBalance,
    /// Whether its storage was wiped at some point.
    pub(crate) cleared: bool,
    /// The account in the snapshot, if a transaction that wrote it read it
    /// there (`None`: look it up).
    pub(crate) base: Option<Option<BasicAccount>>,
}

/// A written slot's last value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FinalSlot {
    /// The account.
    pub(crate) address: Address,
    /// The slot.
    pub(crate) slot: U256,
    /// Its last value (`None`: an estimate is left, which a finished run
    /// never has).
    pub(crate) value: Option<U256>,
    /// Its value in the snapshot, if a transaction that wrote it read it
    /// there (`None`: look it up).
    pub(crate) base: Option<U256>,
}

/// Read sets longer than this are not scanned for snapshot values.
const MAX_BASE_SCAN: usize = 256;

/// An account's balance as the block leaves it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FinalBalance {
    /// Not written.
    #[default]
    Untouched,
    /// The snapshot's balance plus this sum of credits.
    Credited(U256),
    /// This absolute value (later credits included).
    Set(U256),
}

/// The locations an incarnation wrote that its previous one did not.
pub(crate) type NewLocations = SmallVec<[Location; 8]>;

/// Number of lists the beneficiary's fee credits are spread over.
pub(crate) const FEE_STRIPES: usize = 16;

/// One list of fee credits, alone on its cache line(s).
#[derive(Debug, Default)]
#[repr(align(128))]
struct FeeStripe(Mutex<Versions>);

/// The multi-version memory of one block.
#[derive(Debug)]
pub(crate) struct MvMemory {
    /// The block's beneficiary (its credits are in `fees`).
    beneficiary: Address,
    /// The beneficiary's balance credits, by transaction index modulo
    /// [`FEE_STRIPES`].
    fees: Box<[FeeStripe]>,
    /// Each account's `Basic`, `Balance` and `Clear` versions.
    accounts: DashMap<Address, AccountVersions, DefaultHashBuilder>,
    /// Each slot's versions.
    slots: DashMap<(Address, U256), SlotVersions, DefaultHashBuilder>,
    /// Whether any storage wipe was ever recorded in this block (most blocks
    /// have none; then slot reads skip the wipe lookup). Set before the wipe
    /// is inserted, so a validation that runs after the wiping incarnation
    /// finished always sees it.
    any_clear: AtomicBool,
}

impl MvMemory {
    /// Memory for a block of `len` transactions paying `beneficiary`.
    pub(crate) fn new(len: usize, workers: usize, beneficiary: Address) -> Self {
        let shards = (workers.max(1) * 16).next_power_of_two().max(4);
        Self {
            beneficiary,
            fees: (0..FEE_STRIPES).map(|_| FeeStripe::default()).collect(),
            accounts: DashMap::with_capacity_and_hasher_and_shard_amount(
                len * 2,
                DefaultHashBuilder::default(),
                shards,
            ),
            slots: DashMap::with_capacity_and_hasher_and_shard_amount(
                len * 2,
                DefaultHashBuilder::default(),
                shards,
            ),
            any_clear: AtomicBool::new(false),
        }
    }

    /// The fee stripe of transaction `tx`.
    fn fees(&self, tx: TxIdx) -> MutexGuard<'_, Versions> {
        self.fees[tx % FEE_STRIPES].0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies `f` to the versions of `location` if it has any (for the
    /// beneficiary's balance, to its own list and to `tx`'s fee stripe).
    fn update(&self, location: &Location, tx: TxIdx, f: impl Fn(&mut Versions)) {
        if *location == Location::Balance(self.beneficiary) {
            f(&mut self.fees(tx));
        }
        match location {
            Location::Storage(address, slot) => {
                if let Some(mut slot) = self.slots.get_mut(&(*address, *slot)) {
                    f(&mut slot.versions);
                }
            }
            _ => {
                if let Some(mut account) = self.accounts.get_mut(&location.address()) {
                    f(account.of(location));
                }
            }
        }
    }

    /// Records an incarnation's write set, replacing `previous`, the
    /// previous incarnation's. Returns the locations it wrote that the
    /// previous one did not (a higher transaction validated meanwhile may
    /// have read them below it). Snapshot values in `reads`, its read set,
    /// are kept for the locations written, so that finalization need not
    /// look them up again.
    pub(crate) fn record(
        &self,
        tx: TxIdx,
        writes: &[(Location, Write)],
        previous: &[(Location, Write)],
        reads: &[ReadRecord],
    ) -> NewLocations {
        // Finding a location's read is a scan of the read set: skipped for
        // a huge read set (finalization then looks the value up).
        let reads = if reads.len() <= MAX_BASE_SCAN { reads } else { &[] };
        // Consecutive writes to one account's fields share one entry (and
        // one lock); no two entries are ever held at once.
        let mut account = None;
        for (location, write) in writes {
            let entry = Entry::Value(*write);
            if *location == Location::Balance(self.beneficiary) {
                account = None;
                self.record_beneficiary_balance(tx, *write, previous);
                continue;
            }
            if let Location::Storage(address, slot) = location {
                account = None;
                let mut versions = self.slots.entry((*address, *slot)).or_default();
                versions.versions.insert(tx, entry);
                if versions.base.is_none() {
                    versions.base = view::base_slot(reads, *address, *slot);
                }
                continue;
            }
            if matches!(location, Location::Clear(_)) {
                self.any_clear.store(true, Ordering::SeqCst);
            }
            let address = location.address();
            let versions = match &mut account {
                Some((held, versions)) if *held == address => versions,
                _ => {
                    account = None;
                    let mut versions = self.accounts.entry(address).or_default();
                    if versions.base.is_none() {
                        versions.base = view::base_account(reads, address);
                    }
                    &mut account.insert((address, versions)).1
                }
            };
            versions.of(location).insert(tx, entry);
        }
        drop(account);
        if previous.is_empty() {
            return writes.iter().map(|(l, _)| *l).collect();
        }
        // Write sets are usually a handful of locations: linear scans then.
        let contains =
            |set: &[(Location, Write)], location: &Location| set.iter().any(|(l, _)| l == location);
        let (new, stale): (NewLocations, Vec<Location>) = if writes.len() * previous.len() <= 1024 {
            (
                writes.iter().map(|(l, _)| *l).filter(|l| !contains(previous, l)).collect(),
                previous.iter().map(|(l, _)| *l).filter(|l| !contains(writes, l)).collect(),
            )
        } else {
            let now: HashSet<Location> = writes.iter().map(|(l, _)| *l).collect();
            let before: HashSet<Location> = previous.iter().map(|(l, _)| *l).collect();
            (
                writes.iter().map(|(l, _)| *l).filter(|l| !before.contains(l)).collect(),
                before.into_iter().filter(|l| !now.contains(l)).collect(),
            )
        };
        for location in stale {
            self.update(&location, tx, |versions| versions.remove(tx));
        }
        new
    }

    /// Records a write to the beneficiary's balance: a credit in `tx`'s fee
    /// stripe, an absolute value in its own list; a previous incarnation's
    /// write of the other kind is removed.
    fn record_beneficiary_balance(&self, tx: TxIdx, write: Write, previous: &[(Location, Write)]) {
        let location = Location::Balance(self.beneficiary);
        let before = previous.iter().find(|(l, _)| *l == location).map(|(_, w)| w);
        if let Write::AddBalance(_) = write {
            self.fees(tx).insert(tx, Entry::Value(write));
            if let Some(Write::SetBalance(_)) = before
                && let Some(mut account) = self.accounts.get_mut(&self.beneficiary)
            {
                account.balance.remove(tx);
            }
        } else {
            self.accounts
                .entry(self.beneficiary)
                .or_default()
                .balance
                .insert(tx, Entry::Value(write));
            if let Some(Write::AddBalance(_)) = before {
                self.fees(tx).remove(tx);
            }
        }
    }

    /// Adds the beneficiary's fee credits below `tx` to `sum` (its own
    /// list, already in `sum`, must no longer be locked).
    fn add_fees(&self, sum: &mut BalanceSum, tx: TxIdx) {
        if sum.blocked.is_none() {
            for stripe in self.fees.iter() {
                sum.credits(&stripe.0.lock().unwrap_or_else(|e| e.into_inner()), tx);
            }
        }
    }

    /// Number of slots written (or once written) in the block.
    pub(crate) fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// Number of accounts whose own fields were written (or once written)
    /// in the block.
    pub(crate) fn account_count(&self) -> usize {
        self.accounts.len() + 1
    }

    /// Every written slot's last value, in no order (`None`: an estimate is
    /// left, which a finished run never has).
    pub(crate) fn final_slots(&self) -> impl ParallelIterator<Item = FinalSlot> + '_ {
        self.slots.par_iter().filter_map(|entry| {
            let (address, slot) = *entry.key();
            let last = match entry.value().versions.0.last()? {
                (_, Entry::Value(Write::Storage(value))) => Some(*value),
                (_, Entry::Estimate) => None,
                (_, Entry::Value(_)) => unreachable!("slot location holds slot writes"),
            };
            Some(FinalSlot { address, slot, value: last, base: entry.value().base })
        })
    }

    /// Every written account's own fields as the block leaves them, in no
    /// order (`None`: an estimate is left, which a finished run never has,
    /// or its credits overflow).
    pub(crate) fn final_accounts(
        &self,
    ) -> impl ParallelIterator<Item = (Address, Option<FinalFields>)> + '_ {
        let beneficiary = self.final_beneficiary().map(|fields| (self.beneficiary, fields));
        self.accounts
            .par_iter()
            .filter(|entry| *entry.key() != self.beneficiary)
            .map(|entry| {
                let account = entry.value();
                let balance = BalanceSum::of(&account.balance, TxIdx::MAX);
                let fields = final_fields(final_core_and_clear(account), balance, account.base);
                (*entry.key(), fields)
            })
            .chain(beneficiary)
    }

    /// The beneficiary's fields, its fee stripes' credits added above its
    /// latest absolute balance (`None` if nothing wrote it).
    fn final_beneficiary(&self) -> Option<Option<FinalFields>> {
        let own = self.accounts.get(&self.beneficiary);
        let (core_and_clear, mut balance, base) = match &own {
            Some(account) => (
                final_core_and_clear(account),
                BalanceSum::of(&account.balance, TxIdx::MAX),
                account.base,
            ),
            None => (Some((None, false)), BalanceSum::new(), None),
        };
        drop(own);
        self.add_fees(&mut balance, TxIdx::MAX);
        match final_fields(core_and_clear, balance, base) {
            Some(fields) if fields == FinalFields::default() => None,
            fields => Some(fields),
        }
    }

    /// Turns an aborted incarnation's writes into estimates.
    pub(crate) fn mark_estimates(&self, tx: TxIdx, writes: &[(Location, Write)]) {
        for (location, _) in writes {
            self.update(location, tx, |versions| {
                if let Some(entry) = versions.get_mut(tx) {
                    *entry = Entry::Estimate;
                }
            });
        }
    }

    /// Reads an account's existence, nonce and code hash.
    pub(crate) fn read_basic(&self, address: Address, tx: TxIdx) -> Read<Option<AccountCore>> {
        match self.accounts.get(&address) {
            Some(account) => basic_read(&account.basic, tx),
            None => Read::Base,
        }
    }

    /// Reads a balance: the latest absolute value (or `base()`) plus every
    /// later credit.
    pub(crate) fn read_balance<E>(
        &self,
        address: Address,
        tx: TxIdx,
        base: impl FnOnce() -> Result<U256, E>,
    ) -> Result<Read<U256>, E> {
        let mut sum = match self.accounts.get(&address) {
            Some(account) => BalanceSum::of(&account.balance, tx),
            None => BalanceSum::new(),
        };
        if address == self.beneficiary {
            self.add_fees(&mut sum, tx);
        }
        sum.finish(base)
    }

    /// Reads both [`MvMemory::read_basic`] and [`MvMemory::read_balance`]
    /// with one lookup.
    pub(crate) fn read_account<E>(
        &self,
        address: Address,
        tx: TxIdx,
        base: impl FnOnce() -> Result<U256, E>,
    ) -> Result<(Read<Option<AccountCore>>, Read<U256>), E> {
        let (basic, mut sum) = match self.accounts.get(&address) {
            Some(account) => (basic_read(&account.basic, tx), BalanceSum::of(&account.balance, tx)),
            None => (Read::Base, BalanceSum::new()),
        };
        if address == self.beneficiary {
            self.add_fees(&mut sum, tx);
        }
        Ok((basic, sum.finish(base)?))
    }

    /// Reads a storage slot, honouring storage wipes.
    pub(crate) fn read_storage(&self, address: Address, slot: U256, tx: TxIdx) -> Read<U256> {
        let written = self
            .slots
            .get(&(address, slot))
            .and_then(|slot| slot.versions.below(tx).next().map(|(i, e)| (*i, *e)));
        let cleared = if self.any_clear.load(Ordering::SeqCst) {
            self.accounts
                .get(&address)
                .and_then(|account| Some(*account.clear.as_deref()?.below(tx).next()?))
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

/// An account's final fields from its last core write and wipe, its
/// balance summed above every transaction and its snapshot value (`None`:
/// an estimate is left, or credits overflow).
fn final_fields(
    core_and_clear: Option<(Option<Option<AccountCore>>, bool)>,
    balance: BalanceSum,
    base: Option<Option<BasicAccount>>,
) -> Option<FinalFields> {
    let balance = balance.into_final()?;
    let (core, cleared) = core_and_clear?;
    Some(FinalFields { core, balance, cleared, base })
}

/// An account's last core write and whether it was wiped (`None`: an
/// estimate is left).
fn final_core_and_clear(account: &AccountVersions) -> Option<(Option<Option<AccountCore>>, bool)> {
    let core = match account.basic.0.last() {
        None => None,
        Some((_, Entry::Value(Write::Basic(core)))) => Some(*core),
        Some((_, Entry::Estimate)) => return None,
        Some((_, Entry::Value(_))) => unreachable!("basic location holds basic writes"),
    };
    let clear = account.clear.as_deref().map_or(&[][..], |clear| &clear.0[..]);
    if clear.iter().any(|(_, e)| matches!(e, Entry::Estimate)) {
        return None;
    }
    Some((core, !clear.is_empty()))
}

fn basic_read(versions: &Versions, tx: TxIdx) -> Read<Option<AccountCore>> {
    match versions.below(tx).next() {
        None => Read::Base,
        Some((i, Entry::Estimate)) => Read::Blocked(*i),
        Some((i, Entry::Value(Write::Basic(core)))) => Read::Value(*core, *i),
        Some((_, Entry::Value(_))) => unreachable!("basic location holds basic writes"),
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
    use proptest::prelude::*;
    use std::convert::Infallible;

    proptest! {
        #[test]
        fn version_search_agrees_with_bisection(
            written in proptest::collection::btree_set(0usize..64, 0..40),
            tx in 0usize..70,
        ) {
            let mut versions = Versions::default();
            // Out of order, as re-executions insert.
            for i in written.iter().rev() {
                versions.insert(*i, Entry::Estimate);
            }
            let sorted: Vec<TxIdx> = versions.0.iter().map(|(i, _)| *i).collect();
            prop_assert_eq!(&sorted, &written.iter().copied().collect::<Vec<_>>());
            prop_assert_eq!(versions.count_below(tx), sorted.partition_point(|i| *i < tx));
            prop_assert_eq!(versions.search(tx), sorted.binary_search(&tx));
        }
    }

    const A: Address = Address::repeat_byte(0xaa);

    fn balance(mv: &MvMemory, tx: TxIdx) -> Read<U256> {
        mv.read_balance(A, tx, || Ok::<_, Infallible>(U256::from(100))).unwrap()
    }

    #[test]
    fn balance_credits_sum_in_order_on_the_latest_absolute_value() {
        let mv = MvMemory::new(5, 1, Address::ZERO);
        mv.record(1, &[(Location::Balance(A), Write::AddBalance(U256::from(5)))], &[], &[]);
        mv.record(2, &[(Location::Balance(A), Write::SetBalance(U256::from(10)))], &[], &[]);
        let third = [(Location::Balance(A), Write::AddBalance(U256::from(1)))];
        mv.record(3, &third, &[], &[]);
        assert_eq!(balance(&mv, 0), Read::Base);
        assert_eq!(balance(&mv, 2), Read::Value(U256::from(105), 1));
        assert_eq!(balance(&mv, 4), Read::Value(U256::from(11), 3));
        mv.mark_estimates(3, &third);
        assert_eq!(balance(&mv, 4), Read::Blocked(3));
        assert_eq!(balance(&mv, 3), Read::Value(U256::from(10), 2));
    }

    #[test]
    fn beneficiary_credits_in_stripes_sum_above_its_latest_absolute_value() {
        let mv = MvMemory::new(40, 2, A);
        let fee = |tx: TxIdx| [(Location::Balance(A), Write::AddBalance(U256::from(tx)))];
        // Credits from many transactions, over every stripe.
        for tx in 1..=20 {
            assert!(!mv.record(tx, &fee(tx), &[], &[]).is_empty());
        }
        assert_eq!(balance(&mv, 0), Read::Base);
        assert_eq!(balance(&mv, 1), Read::Base);
        assert_eq!(balance(&mv, 5), Read::Value(U256::from(100 + 1 + 2 + 3 + 4), 4));
        assert_eq!(balance(&mv, 21), Read::Value(U256::from(100 + 210), 20));
        // An absolute value hides the credits below it, not those above.
        let set = [(Location::Balance(A), Write::SetBalance(U256::from(7)))];
        assert!(mv.record(10, &set, &fee(10), &[]).is_empty());
        assert_eq!(balance(&mv, 10), Read::Value(U256::from(100 + 45), 9));
        assert_eq!(balance(&mv, 12), Read::Value(U256::from(7 + 11), 11));
        let core = mv.read_account(A, 12, || Ok::<_, Infallible>(U256::from(100))).unwrap();
        assert_eq!(core, (Read::Base, Read::Value(U256::from(18), 11)));
        // Back to a credit: the absolute value leaves its list.
        assert!(mv.record(10, &fee(10), &set, &[]).is_empty());
        assert_eq!(balance(&mv, 12), Read::Value(U256::from(100 + 66), 11));
        // An aborted credit blocks readers above it; a new incarnation
        // without it removes it.
        mv.mark_estimates(3, &fee(3));
        assert_eq!(balance(&mv, 3), Read::Value(U256::from(103), 2));
        assert_eq!(balance(&mv, 4), Read::Blocked(3));
        assert!(mv.record(3, &[], &fee(3), &[]).is_empty());
        assert_eq!(balance(&mv, 4), Read::Value(U256::from(103), 2));
        // Other accounts' credits stay in their own lists.
        let other = Address::repeat_byte(0xbb);
        mv.record(30, &[(Location::Balance(other), Write::AddBalance(U256::from(1)))], &[], &[]);
        let read = mv.read_balance(other, 31, || Ok::<_, Infallible>(U256::ZERO)).unwrap();
        assert_eq!(read, Read::Value(U256::from(1), 30));
    }

    #[test]
    fn the_final_view_holds_last_writes_credits_and_snapshot_values_read() {
        use super::view::Source;
        let beneficiary = Address::repeat_byte(0xbb);
        let mv = MvMemory::new(8, 2, beneficiary);
        let (slot, other_slot) = (U256::from(1), U256::from(2));
        let core = |nonce| AccountCore { nonce, code_hash: B256::repeat_byte(7) };
        let value = U256::from;
        let fee = |amount| (Location::Balance(beneficiary), Write::AddBalance(value(amount)));
        // Transaction 0 read A and a slot of A in the snapshot, then wrote them.
        let reads = [
            ReadRecord::Basic(A, Some(core(1)), Source::Base),
            ReadRecord::Balance(A, value(50), Source::Base),
            ReadRecord::Storage(A, slot, value(9), Source::Base),
        ];
        let writes = [
            (Location::Basic(A), Write::Basic(Some(core(2)))),
            (Location::Balance(A), Write::SetBalance(value(40))),
            (Location::Storage(A, slot), Write::Storage(value(10))),
            fee(3),
        ];
        mv.record(0, &writes, &[], &reads);
        // Later ones credit A, pay, set and pay the beneficiary again, and
        // rewrite the slot; transaction 4 is left out of the block.
        mv.record(1, &[(Location::Balance(A), Write::AddBalance(value(5))), fee(4)], &[], &[]);
        let set = (Location::Balance(beneficiary), Write::SetBalance(value(100)));
        mv.record(2, &[set], &[], &[]);
        mv.record(3, &[fee(7), (Location::Storage(A, slot), Write::Storage(value(11)))], &[], &[]);
        let left_out = [(Location::Storage(A, other_slot), Write::Storage(value(1))), fee(8)];
        mv.record(4, &left_out, &[], &[]);
        mv.record(4, &[], &left_out, &[]);

        let slots: Vec<FinalSlot> = mv.final_slots().collect();
        let expected = FinalSlot { address: A, slot, value: Some(value(11)), base: Some(value(9)) };
        assert_eq!(slots, [expected]);
        let mut accounts: Vec<_> = mv.final_accounts().collect();
        accounts.sort_by_key(|(address, _)| *address);
        let a = FinalFields {
            core: Some(Some(core(2))),
            balance: FinalBalance::Set(value(45)),
            cleared: false,
            base: Some(Some(BasicAccount {
                nonce: 1,
                balance: value(50),
                code_hash: B256::repeat_byte(7),
            })),
        };
        let paid = FinalFields { balance: FinalBalance::Set(value(107)), ..Default::default() };
        assert_eq!(accounts, [(A, Some(a)), (beneficiary, Some(paid))]);

        // Credits that overflow leave no final value.
        let mv = MvMemory::new(2, 1, beneficiary);
        mv.record(0, &[(Location::Balance(A), Write::AddBalance(U256::MAX))], &[], &[]);
        mv.record(1, &[(Location::Balance(A), Write::AddBalance(value(1)))], &[], &[]);
        assert_eq!(mv.final_accounts().collect::<Vec<_>>(), [(A, None)]);
    }

    #[test]
    fn a_wipe_hides_earlier_slot_writes_and_rewrites_drop_stale_locations() {
        let mv = MvMemory::new(4, 1, Address::ZERO);
        let slot = U256::from(7);
        assert!(
            !mv.record(0, &[(Location::Storage(A, slot), Write::Storage(U256::from(3)))], &[], &[])
                .is_empty()
        );
        let wipe = [(Location::Clear(A), Write::Clear)];
        assert!(!mv.record(1, &wipe, &[], &[]).is_empty());
        assert_eq!(mv.read_storage(A, slot, 1), Read::Value(U256::from(3), 0));
        assert_eq!(mv.read_storage(A, slot, 2), Read::Value(U256::ZERO, 1));
        assert_eq!(mv.read_storage(A, U256::from(8), 3), Read::Value(U256::ZERO, 1));
        // A new incarnation of tx 1 that does not wipe removes the marker.
        assert!(mv.record(1, &[], &wipe, &[]).is_empty());
        assert_eq!(mv.read_storage(A, slot, 2), Read::Value(U256::from(3), 0));
        assert_eq!(mv.read_storage(A, U256::from(8), 3), Read::Base);
    }
}
