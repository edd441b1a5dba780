//! The database one incarnation executes against: the snapshot seen through
//! the multi-version memory, recording every read.
//!
//! revm does not expose read sets, so [`TxView`] implements revm's
//! [`Database`] and logs each value it hands out ([`ReadRecord`]). Reading an
//! [`Estimate`](super::memory::Entry::Estimate) stops the execution with
//! [`ViewError::Blocked`]; [`validate`] re-reads a read set and checks that
//! every value is unchanged.

use super::{
    TxIdx,
    memory::{AccountCore, Location, MvMemory, Read},
};
use crate::state::BasicAccount;
use alloy_primitives::{Address, B256, U256, map::DefaultHashBuilder};
use dashmap::DashMap;
use revm::{
    Database, DatabaseRef, bytecode::Bytecode, database_interface::DBErrorMarker,
    state::AccountInfo,
};

/// Code deployed during the block, by hash (content-addressed, so it needs
/// no versions).
pub(crate) type NewCode = DashMap<B256, Bytecode, DefaultHashBuilder>;

/// One value an incarnation read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadRecord {
    /// Existence, nonce and code hash.
    Basic(Address, Option<AccountCore>, Source),
    /// Balance.
    Balance(Address, U256, Source),
    /// Storage slot.
    Storage(Address, U256, U256, Source),
}

/// Where a read value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// The snapshot (no lower transaction wrote the location): if that is
    /// still so at validation, the value cannot have changed and the
    /// snapshot is not read again.
    Base,
    /// A lower transaction's write.
    Memory,
}

/// Why a read could not be served.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ViewError<E> {
    /// A lower transaction's value is being recomputed.
    #[error("blocked on transaction {0}")]
    Blocked(TxIdx),
    /// The snapshot failed.
    #[error("snapshot read failed: {0}")]
    Base(E),
}

impl<E: DBErrorMarker> DBErrorMarker for ViewError<E> {}

/// What a transaction sees: the snapshot under the writes of lower ones.
#[derive(Debug)]
pub(crate) struct TxView<'a, DB> {
    pub(crate) tx: TxIdx,
    pub(crate) memory: &'a MvMemory,
    pub(crate) base: &'a DB,
    pub(crate) code: &'a NewCode,
    pub(crate) reads: Vec<ReadRecord>,
    /// The highest transaction whose write to an account's fields or a
    /// slot this incarnation read (how close its dependencies are).
    pub(crate) latest_writer: Option<TxIdx>,
}

impl<DB: DatabaseRef> TxView<'_, DB> {
    /// Existence, nonce and code hash of `address` (recorded).
    pub(crate) fn core(
        &mut self,
        address: Address,
    ) -> Result<Option<AccountCore>, ViewError<DB::Error>> {
        let (core, source) = match self.memory.read_basic(address, self.tx) {
            Read::Value(core, writer) => (core, self.written_by(writer)),
            Read::Blocked(i) => return Err(ViewError::Blocked(i)),
            Read::Base => (base_core(self.base, address)?, Source::Base),
        };
        self.reads.push(ReadRecord::Basic(address, core, source));
        Ok(core)
    }

    /// Existence, nonce, code hash and balance of `address` (recorded), with
    /// one snapshot lookup when neither was written.
    pub(crate) fn account(
        &mut self,
        address: Address,
    ) -> Result<(Option<AccountCore>, U256), ViewError<DB::Error>> {
        let base = self.base;
        let mut cached: Option<Option<AccountInfo>> = None;
        let mut base_info = || -> Result<Option<AccountInfo>, ViewError<DB::Error>> {
            if cached.is_none() {
                cached = Some(base.basic_ref(address).map_err(ViewError::Base)?);
            }
            Ok(cached.clone().flatten())
        };
        let mut base_balance = || Ok(base_info()?.map(|i| i.balance).unwrap_or_default());
        let (core, balance) = self.memory.read_account(address, self.tx, &mut base_balance)?;
        let (balance, balance_source) = match balance {
            Read::Value(balance, _) => (balance, Source::Memory),
            Read::Blocked(i) => return Err(ViewError::Blocked(i)),
            Read::Base => (base_balance()?, Source::Base),
        };
        let (core, core_source) = match core {
            Read::Value(core, writer) => (core, self.written_by(writer)),
            Read::Blocked(i) => return Err(ViewError::Blocked(i)),
            Read::Base => (base_info()?.map(core_of), Source::Base),
        };
        self.reads.push(ReadRecord::Basic(address, core, core_source));
        self.reads.push(ReadRecord::Balance(address, balance, balance_source));
        Ok((core, balance))
    }

    /// Notes that a value (not a balance: credits are no dependency) came
    /// from `writer`'s write.
    fn written_by(&mut self, writer: TxIdx) -> Source {
        self.latest_writer = self.latest_writer.max(Some(writer));
        Source::Memory
    }

    fn storage_value(
        &mut self,
        address: Address,
        slot: U256,
    ) -> Result<U256, ViewError<DB::Error>> {
        let (value, source) = match self.memory.read_storage(address, slot, self.tx) {
            Read::Value(value, writer) => (value, self.written_by(writer)),
            Read::Blocked(i) => return Err(ViewError::Blocked(i)),
            Read::Base => {
                (self.base.storage_ref(address, slot).map_err(ViewError::Base)?, Source::Base)
            }
        };
        self.reads.push(ReadRecord::Storage(address, slot, value, source));
        Ok(value)
    }
}

fn core_of(info: AccountInfo) -> AccountCore {
    AccountCore { nonce: info.nonce, code_hash: info.code_hash }
}

fn base_core<DB: DatabaseRef>(
    base: &DB,
    address: Address,
) -> Result<Option<AccountCore>, ViewError<DB::Error>> {
    Ok(base.basic_ref(address).map_err(ViewError::Base)?.map(core_of))
}

fn base_balance<DB: DatabaseRef>(
    base: &DB,
    address: Address,
) -> Result<U256, ViewError<DB::Error>> {
    Ok(base.basic_ref(address).map_err(ViewError::Base)?.map(|i| i.balance).unwrap_or_default())
}

/// Whether a read that returned `recorded` from `source` would return it
/// again, `now` being what the memory holds now.
fn unchanged<T: PartialEq, E>(
    now: Read<T>,
    recorded: T,
    source: Source,
    base: impl FnOnce() -> Result<T, E>,
) -> bool {
    match now {
        Read::Blocked(_) => false,
        Read::Value(value, _) => value == recorded,
        Read::Base => source == Source::Base || base().is_ok_and(|value| value == recorded),
    }
}

/// Whether every recorded read still yields the same value.
pub(crate) fn validate<DB: DatabaseRef>(
    memory: &MvMemory,
    base: &DB,
    tx: TxIdx,
    reads: &[ReadRecord],
) -> bool {
    let mut i = 0;
    while i < reads.len() {
        let valid = match (reads[i], reads.get(i + 1)) {
            // An account read: both fields with one lookup.
            (ReadRecord::Basic(address, core, core_source), Some(ReadRecord::Balance(a, b, s)))
                if *a == address =>
            {
                i += 1;
                let base_balance = || base_balance(base, address);
                match memory.read_account(address, tx, base_balance) {
                    Ok((now_core, now_balance)) => {
                        unchanged(now_core, core, core_source, || base_core(base, address))
                            && unchanged(now_balance, *b, *s, base_balance)
                    }
                    Err(_) => false,
                }
            }
            (ReadRecord::Basic(address, core, source), _) => {
                unchanged(memory.read_basic(address, tx), core, source, || base_core(base, address))
            }
            (ReadRecord::Balance(address, balance, source), _) => {
                let base_balance = || base_balance(base, address);
                match memory.read_balance(address, tx, base_balance) {
                    Ok(now) => unchanged(now, balance, source, base_balance),
                    Err(_) => false,
                }
            }
            (ReadRecord::Storage(address, slot, value, source), _) => {
                unchanged(memory.read_storage(address, slot, tx), value, source, || {
                    base.storage_ref(address, slot)
                })
            }
        };
        if !valid {
            return false;
        }
        i += 1;
    }
    true
}

/// The snapshot's value of a slot, if the read set read it there.
pub(crate) fn base_slot(reads: &[ReadRecord], address: Address, slot: U256) -> Option<U256> {
    reads.iter().find_map(|read| match *read {
        ReadRecord::Storage(a, s, value, Source::Base) if a == address && s == slot => Some(value),
        _ => None,
    })
}

/// The snapshot's account at `address` (`Some(None)`: none), if the read
/// set read both its fields and its balance there.
pub(crate) fn base_account(reads: &[ReadRecord], address: Address) -> Option<Option<BasicAccount>> {
    let mut core = None;
    let mut balance = None;
    for read in reads {
        match *read {
            ReadRecord::Basic(a, c, Source::Base) if a == address => core = Some(c),
            ReadRecord::Balance(a, b, Source::Base) if a == address => balance = Some(b),
            _ => continue,
        }
        if let (Some(core), Some(balance)) = (core, balance) {
            return Some(core.map(|c| BasicAccount {
                nonce: c.nonce,
                balance,
                code_hash: c.code_hash,
            }));
        }
    }
    None
}

/// Whether a read set read any of `locations` (a storage wipe counts as a
/// write to every slot of its account).
pub(crate) fn reads_any(reads: &[ReadRecord], locations: &[Location]) -> bool {
    reads.iter().any(|read| {
        locations.iter().any(|location| match (*read, *location) {
            (ReadRecord::Basic(a, ..), Location::Basic(b))
            | (ReadRecord::Balance(a, ..), Location::Balance(b))
            | (ReadRecord::Storage(a, ..), Location::Clear(b)) => a == b,
            (ReadRecord::Storage(a, slot, ..), Location::Storage(b, written)) => {
                a == b && slot == written
            }
            _ => false,
        })
    })
}

/// The account revm sees for existence/nonce/code `core` and `balance`: the
/// same as the sequential overlay returns (an account exists if its basic
/// fields say so or it holds a balance, which lazy credits can give it).
pub(crate) fn account_info(core: Option<AccountCore>, balance: U256) -> Option<AccountInfo> {
    let account = match core {
        Some(core) => BasicAccount { nonce: core.nonce, balance, code_hash: core.code_hash },
        None if balance.is_zero() => return None,
        None => BasicAccount::with_balance(balance),
    };
    Some(account.to_info())
}

impl<DB: DatabaseRef> Database for TxView<'_, DB> {
    type Error = ViewError<DB::Error>;

    fn basic(&mut self, address: Address) -> Result<Option<AccountInfo>, Self::Error> {
        let (core, balance) = self.account(address)?;
        Ok(account_info(core, balance))
    }

    fn code_by_hash(&mut self, code_hash: B256) -> Result<Bytecode, Self::Error> {
        if let Some(code) = self.code.get(&code_hash) {
            return Ok(code.clone());
        }
        self.base.code_by_hash_ref(code_hash).map_err(ViewError::Base)
    }

    fn storage(&mut self, address: Address, index: U256) -> Result<U256, Self::Error> {
        self.storage_value(address, index)
    }

    fn block_hash(&mut self, number: u64) -> Result<B256, Self::Error> {
        self.base.block_hash_ref(number).map_err(ViewError::Base)
    }
}
