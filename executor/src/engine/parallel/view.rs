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
    memory::{AccountCore, MvMemory, Read},
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
    Basic(Address, Option<AccountCore>),
    /// Balance.
    Balance(Address, U256),
    /// Storage slot.
    Storage(Address, U256, U256),
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
}

impl<DB: DatabaseRef> TxView<'_, DB> {
    /// Existence, nonce and code hash of `address` (recorded).
    pub(crate) fn core(
        &mut self,
        address: Address,
    ) -> Result<Option<AccountCore>, ViewError<DB::Error>> {
        let core = read_core(self.memory, self.base, address, self.tx)?;
        self.reads.push(ReadRecord::Basic(address, core));
        Ok(core)
    }

    /// Existence, nonce, code hash and balance of `address` (recorded).
    pub(crate) fn account(
        &mut self,
        address: Address,
    ) -> Result<(Option<AccountCore>, U256), ViewError<DB::Error>> {
        let (core, balance) = read_account(self.memory, self.base, address, self.tx)?;
        self.reads.push(ReadRecord::Basic(address, core));
        self.reads.push(ReadRecord::Balance(address, balance));
        Ok((core, balance))
    }
}

fn read_core<DB: DatabaseRef>(
    memory: &MvMemory,
    base: &DB,
    address: Address,
    tx: TxIdx,
) -> Result<Option<AccountCore>, ViewError<DB::Error>> {
    match memory.read_basic(address, tx) {
        Read::Value(core) => Ok(core),
        Read::Blocked(i) => Err(ViewError::Blocked(i)),
        Read::Base => Ok(base
            .basic_ref(address)
            .map_err(ViewError::Base)?
            .map(|info| AccountCore { nonce: info.nonce, code_hash: info.code_hash })),
    }
}

/// Both account locations, with one snapshot lookup when neither was
/// written.
fn read_account<DB: DatabaseRef>(
    memory: &MvMemory,
    base: &DB,
    address: Address,
    tx: TxIdx,
) -> Result<(Option<AccountCore>, U256), ViewError<DB::Error>> {
    let mut cached: Option<Option<AccountInfo>> = None;
    let mut base_info = || -> Result<Option<AccountInfo>, ViewError<DB::Error>> {
        if cached.is_none() {
            cached = Some(base.basic_ref(address).map_err(ViewError::Base)?);
        }
        Ok(cached.clone().flatten())
    };
    let core = match memory.read_basic(address, tx) {
        Read::Value(core) => core,
        Read::Blocked(i) => return Err(ViewError::Blocked(i)),
        Read::Base => {
            base_info()?.map(|info| AccountCore { nonce: info.nonce, code_hash: info.code_hash })
        }
    };
    let mut base_balance = || Ok(base_info()?.map(|i| i.balance).unwrap_or_default());
    let balance = match memory.read_balance(address, tx, &mut base_balance)? {
        Read::Value(balance) => balance,
        Read::Blocked(i) => return Err(ViewError::Blocked(i)),
        Read::Base => base_balance()?,
    };
    Ok((core, balance))
}

fn read_balance<DB: DatabaseRef>(
    memory: &MvMemory,
    base: &DB,
    address: Address,
    tx: TxIdx,
) -> Result<U256, ViewError<DB::Error>> {
    let base_balance = || {
        Ok(base.basic_ref(address).map_err(ViewError::Base)?.map(|i| i.balance).unwrap_or_default())
    };
    match memory.read_balance(address, tx, base_balance)? {
        Read::Value(balance) => Ok(balance),
        Read::Blocked(i) => Err(ViewError::Blocked(i)),
        Read::Base => base_balance(),
    }
}

fn read_storage<DB: DatabaseRef>(
    memory: &MvMemory,
    base: &DB,
    address: Address,
    slot: U256,
    tx: TxIdx,
) -> Result<U256, ViewError<DB::Error>> {
    match memory.read_storage(address, slot, tx) {
        Read::Value(value) => Ok(value),
        Read::Blocked(i) => Err(ViewError::Blocked(i)),
        Read::Base => base.storage_ref(address, slot).map_err(ViewError::Base),
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
            // An account read: both fields with one snapshot lookup.
            (ReadRecord::Basic(address, core), Some(ReadRecord::Balance(a, balance)))
                if *a == address =>
            {
                i += 1;
                matches!(read_account(memory, base, address, tx), Ok(now) if now == (core, *balance))
            }
            (ReadRecord::Basic(address, core), _) => {
                matches!(read_core(memory, base, address, tx), Ok(now) if now == core)
            }
            (ReadRecord::Balance(address, balance), _) => {
                matches!(read_balance(memory, base, address, tx), Ok(now) if now == balance)
            }
            (ReadRecord::Storage(address, slot, value), _) => {
                matches!(read_storage(memory, base, address, slot, tx), Ok(now) if now == value)
            }
        };
        if !valid {
            return false;
        }
        i += 1;
    }
    true
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
        let value = read_storage(self.memory, self.base, address, index, self.tx)?;
        self.reads.push(ReadRecord::Storage(address, index, value));
        Ok(value)
    }

    fn block_hash(&mut self, number: u64) -> Result<B256, Self::Error> {
        self.base.block_hash_ref(number).map_err(ViewError::Base)
    }
}
