//! In-memory state snapshot, per-block overlay and state diffs.
//!
//! [`MemoryState`] is the head state the block producer executes on: it
//! implements revm's [`DatabaseRef`], so execution never waits on SQL.
//! [`BlockState`] is the mutable overlay of one block on top of any
//! `DatabaseRef`; when the block is done it yields a [`StateDiff`] (old and new
//! value of everything the block changed), the unit that persists state.

use alloy_primitives::{Address, B256, Bytes, U256, keccak256, map::HashMap};
use alloy_trie::{EMPTY_ROOT_HASH, KECCAK_EMPTY, TrieAccount};
use revm::{
    Database, DatabaseCommit, DatabaseRef,
    bytecode::Bytecode,
    primitives::AddressMap,
    state::{Account, AccountInfo},
};
use serde::{Deserialize, Serialize};
use std::{collections::BTreeMap, convert::Infallible};

/// How many recent block hashes the `BLOCKHASH` opcode can see.
pub const BLOCK_HASH_WINDOW: u64 = 256;

/// The account fields that are not storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BasicAccount {
    /// Account nonce.
    pub nonce: u64,
    /// Balance in wei.
    pub balance: U256,
    /// Hash of the account's code ([`KECCAK_EMPTY`] for none).
    pub code_hash: B256,
}

impl BasicAccount {
    /// An account holding only a balance.
    pub const fn with_balance(balance: U256) -> Self {
        Self { nonce: 0, balance, code_hash: KECCAK_EMPTY }
    }

    pub(crate) fn from_info(info: &AccountInfo) -> Self {
        Self { nonce: info.nonce, balance: info.balance, code_hash: info.code_hash }
    }

    pub(crate) fn to_info(self) -> AccountInfo {
        let info = AccountInfo { balance: self.balance, nonce: self.nonce, ..Default::default() };
        if self.code_hash == KECCAK_EMPTY {
            info
        } else {
            // The code is loaded lazily through `code_by_hash`.
            AccountInfo { code_hash: self.code_hash, code: None, ..info }
        }
    }
}

/// Old and new value of one storage slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotChange {
    /// Value before the block.
    pub before: U256,
    /// Value after the block.
    pub after: U256,
}

/// What one block did to one account.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AccountDiff {
    /// The account before the block (`None`: it did not exist).
    pub before: Option<BasicAccount>,
    /// The account after the block (`None`: it does not exist).
    pub after: Option<BasicAccount>,
    /// Whether the block wiped the account's storage (self-destruct or
    /// creation over an address with storage) before writing `storage`.
    pub storage_cleared: bool,
    /// Changed slots.
    pub storage: BTreeMap<U256, SlotChange>,
}

/// Everything one block changed: the unit that persists state.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StateDiff {
    /// Changed accounts, by address.
    pub accounts: BTreeMap<Address, AccountDiff>,
    /// Code deployed by the block, by hash.
    pub code: BTreeMap<B256, Bytes>,
}

/// One account with all its storage (see [`MemoryState::accounts_snapshot`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountSnapshot {
    /// The address.
    pub address: Address,
    /// Nonce, balance, code hash.
    pub account: BasicAccount,
    /// Non-zero storage slots, sorted.
    pub storage: Vec<(U256, U256)>,
}

/// One account of the in-memory state.
#[derive(Debug, Clone, Default)]
struct StoredAccount {
    info: Option<BasicAccount>,
    storage: HashMap<U256, U256>,
    storage_root: B256,
}

/// The full state of the chain at one block, in memory.
#[derive(Debug, Clone, Default)]
pub struct MemoryState {
    accounts: HashMap<Address, StoredAccount>,
    code: HashMap<B256, Bytecode>,
    block_hashes: BTreeMap<u64, B256>,
}

impl MemoryState {
    /// An empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets an account's basic fields (creating it).
    pub fn insert_account(&mut self, address: Address, account: BasicAccount) {
        self.accounts.entry(address).or_insert_with(StoredAccount::empty).info = Some(account);
    }

    /// Sets one storage slot (zero removes it).
    pub fn insert_storage(&mut self, address: Address, slot: U256, value: U256) {
        let stored = self.accounts.entry(address).or_insert_with(StoredAccount::empty);
        set_slot(&mut stored.storage, slot, value);
        stored.storage_root = storage_root(&stored.storage);
    }

    /// Sets many storage slots, refreshing each touched account's storage root once.
    pub fn insert_storage_many(&mut self, slots: impl IntoIterator<Item = (Address, U256, U256)>) {
        let mut touched = Vec::new();
        for (address, slot, value) in slots {
            let stored = self.accounts.entry(address).or_insert_with(StoredAccount::empty);
            set_slot(&mut stored.storage, slot, value);
            touched.push(address);
        }
        touched.sort_unstable();
        touched.dedup();
        for address in touched {
            if let Some(stored) = self.accounts.get_mut(&address) {
                stored.storage_root = storage_root(&stored.storage);
            }
        }
    }

    /// Every existing account with its storage, sorted by address.
    pub fn accounts_snapshot(&self) -> Vec<AccountSnapshot> {
        let mut out: Vec<_> = self
            .accounts
            .iter()
            .filter_map(|(address, a)| {
                let mut storage: Vec<_> = a.storage.iter().map(|(k, v)| (*k, *v)).collect();
                storage.sort_unstable();
                Some(AccountSnapshot { address: *address, account: a.info?, storage })
            })
            .collect();
        out.sort_unstable_by_key(|a| a.address);
        out
    }

    /// All code, by hash.
    pub fn code_snapshot(&self) -> BTreeMap<B256, Bytes> {
        self.code.iter().map(|(hash, code)| (*hash, code.original_bytes())).collect()
    }

    /// Stores code by its hash.
    pub fn insert_code(&mut self, code: Bytes) -> B256 {
        let hash = keccak256(&code);
        if hash != KECCAK_EMPTY {
            self.code.insert(hash, Bytecode::new_raw(code));
        }
        hash
    }

    /// Records a block hash for `BLOCKHASH`, keeping the last 256.
    pub fn insert_block_hash(&mut self, number: u64, hash: B256) {
        self.block_hashes.insert(number, hash);
        while self.block_hashes.len() as u64 > BLOCK_HASH_WINDOW {
            self.block_hashes.pop_first();
        }
    }

    /// An account's basic fields.
    pub fn account(&self, address: &Address) -> Option<BasicAccount> {
        self.accounts.get(address).and_then(|a| a.info)
    }

    /// Number of existing accounts.
    pub fn account_count(&self) -> usize {
        self.accounts.values().filter(|a| a.info.is_some()).count()
    }

    /// Applies a block's diff (moves the state to the block's post-state).
    pub fn apply(&mut self, diff: &StateDiff) {
        for (hash, code) in &diff.code {
            self.code.insert(*hash, Bytecode::new_raw(code.clone()));
        }
        for (address, change) in &diff.accounts {
            let Some(after) = change.after else {
                self.accounts.remove(address);
                continue;
            };
            let stored = self.accounts.entry(*address).or_insert_with(StoredAccount::empty);
            stored.info = Some(after);
            if change.storage_cleared {
                stored.storage.clear();
            }
            for (slot, value) in &change.storage {
                set_slot(&mut stored.storage, *slot, value.after);
            }
            if change.storage_cleared || !change.storage.is_empty() {
                stored.storage_root = storage_root(&stored.storage);
            }
        }
    }

    /// The Ethereum Merkle-Patricia state root of this state.
    ///
    /// Storage roots are cached per account and refreshed when a diff touches
    /// the account's storage; the account trie is rebuilt from the sorted
    /// hashed keys (incremental account-trie updates are a later step).
    pub fn state_root(&self) -> B256 {
        alloy_trie::root::state_root_unhashed(self.accounts.iter().filter_map(|(address, a)| {
            let info = a.info?;
            Some((
                *address,
                TrieAccount {
                    nonce: info.nonce,
                    balance: info.balance,
                    storage_root: a.storage_root,
                    code_hash: info.code_hash,
                },
            ))
        }))
    }
}

impl StoredAccount {
    fn empty() -> Self {
        Self { info: None, storage: HashMap::default(), storage_root: EMPTY_ROOT_HASH }
    }
}

fn set_slot(storage: &mut HashMap<U256, U256>, slot: U256, value: U256) {
    if value.is_zero() {
        storage.remove(&slot);
    } else {
        storage.insert(slot, value);
    }
}

fn storage_root(storage: &HashMap<U256, U256>) -> B256 {
    alloy_trie::root::storage_root_unhashed(
        storage.iter().map(|(slot, value)| (B256::from(*slot), *value)),
    )
}

impl DatabaseRef for MemoryState {
    type Error = Infallible;

    fn basic_ref(&self, address: Address) -> Result<Option<AccountInfo>, Self::Error> {
        Ok(self.account(&address).map(BasicAccount::to_info))
    }

    fn code_by_hash_ref(&self, code_hash: B256) -> Result<Bytecode, Self::Error> {
        Ok(self.code.get(&code_hash).cloned().unwrap_or_default())
    }

    fn storage_ref(&self, address: Address, index: U256) -> Result<U256, Self::Error> {
        Ok(self
            .accounts
            .get(&address)
            .and_then(|a| a.storage.get(&index).copied())
            .unwrap_or_default())
    }

    fn block_hash_ref(&self, number: u64) -> Result<B256, Self::Error> {
        Ok(self.block_hashes.get(&number).copied().unwrap_or_default())
    }
}

/// One account as the block has left it so far.
#[derive(Debug, Clone, Default)]
struct OverlayAccount {
    info: Option<BasicAccount>,
    storage: HashMap<U256, U256>,
    storage_cleared: bool,
}

/// The writes of one block on top of a read-only snapshot.
///
/// revm executes against it as a [`Database`]; each transaction's write set is
/// committed into it, and [`BlockState::into_diff`] turns it into the block's
/// [`StateDiff`].
#[derive(Debug)]
pub struct BlockState<'a, DB> {
    base: &'a DB,
    accounts: HashMap<Address, OverlayAccount>,
    code: BTreeMap<B256, Bytes>,
}

impl<'a, DB: DatabaseRef> BlockState<'a, DB> {
    /// An empty overlay over `base`.
    pub fn new(base: &'a DB) -> Self {
        Self { base, accounts: HashMap::default(), code: BTreeMap::new() }
    }

    /// The diff of everything committed so far against the base snapshot.
    pub fn into_diff(self) -> Result<StateDiff, DB::Error> {
        let mut diff = StateDiff { accounts: BTreeMap::new(), code: self.code };
        for (address, account) in self.accounts {
            let before = self.base.basic_ref(address)?.map(|i| BasicAccount::from_info(&i));
            let mut storage = BTreeMap::new();
            for (slot, after) in account.storage {
                let before = self.base.storage_ref(address, slot)?;
                if before != after || account.storage_cleared {
                    storage.insert(slot, SlotChange { before, after });
                }
            }
            let changed = before != account.info || account.storage_cleared || !storage.is_empty();
            if changed {
                diff.accounts.insert(
                    address,
                    AccountDiff {
                        before,
                        after: account.info,
                        storage_cleared: account.storage_cleared,
                        storage,
                    },
                );
            }
        }
        Ok(diff)
    }

    /// Commits one account of a transaction's write set.
    pub(crate) fn commit_account(&mut self, address: Address, account: &Account) {
        if !account.is_touched() {
            return;
        }
        let entry = self.accounts.entry(address).or_default();
        // EIP-6780 self-destructs and EIP-161 touched-empty accounts both end
        // the account: it leaves the state with its storage.
        if account.is_selfdestructed() || account.is_empty() {
            *entry =
                OverlayAccount { info: None, storage: HashMap::default(), storage_cleared: true };
            return;
        }
        if account.is_created() {
            entry.storage.clear();
            entry.storage_cleared = true;
        }
        if let Some(code) = &account.info.code
            && !code.is_empty()
        {
            self.code.entry(account.info.code_hash).or_insert_with(|| code.original_bytes());
        }
        entry.info = Some(BasicAccount::from_info(&account.info));
        for (slot, value) in &account.storage {
            if value.is_changed() || entry.storage_cleared {
                entry.storage.insert(*slot, value.present_value());
            }
        }
    }
}

impl<DB: DatabaseRef> Database for BlockState<'_, DB> {
    type Error = DB::Error;

    fn basic(&mut self, address: Address) -> Result<Option<AccountInfo>, Self::Error> {
        match self.accounts.get(&address) {
            Some(account) => Ok(account.info.map(BasicAccount::to_info)),
            None => self.base.basic_ref(address),
        }
    }

    fn code_by_hash(&mut self, code_hash: B256) -> Result<Bytecode, Self::Error> {
        match self.code.get(&code_hash) {
            Some(code) => Ok(Bytecode::new_raw(code.clone())),
            None => self.base.code_by_hash_ref(code_hash),
        }
    }

    fn storage(&mut self, address: Address, index: U256) -> Result<U256, Self::Error> {
        if let Some(account) = self.accounts.get(&address) {
            if let Some(value) = account.storage.get(&index) {
                return Ok(*value);
            }
            if account.storage_cleared {
                return Ok(U256::ZERO);
            }
        }
        self.base.storage_ref(address, index)
    }

    fn block_hash(&mut self, number: u64) -> Result<B256, Self::Error> {
        self.base.block_hash_ref(number)
    }
}

impl<DB: DatabaseRef> DatabaseCommit for BlockState<'_, DB> {
    fn commit(&mut self, changes: AddressMap<Account>) {
        for (address, account) in changes {
            self.commit_account(address, &account);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::address;

    #[test]
    fn empty_state_has_the_empty_root() {
        assert_eq!(MemoryState::new().state_root(), EMPTY_ROOT_HASH);
    }

    #[test]
    fn applying_a_diff_moves_the_root_and_storage() {
        let alice = address!("0x00000000000000000000000000000000000a11ce");
        let mut state = MemoryState::new();
        state.insert_account(alice, BasicAccount::with_balance(U256::from(100)));
        let root_before = state.state_root();

        let mut diff = StateDiff::default();
        diff.accounts.insert(
            alice,
            AccountDiff {
                before: state.account(&alice),
                after: Some(BasicAccount { nonce: 1, ..BasicAccount::with_balance(U256::from(7)) }),
                storage_cleared: false,
                storage: BTreeMap::from([(
                    U256::from(1),
                    SlotChange { before: U256::ZERO, after: U256::from(9) },
                )]),
            },
        );
        state.apply(&diff);
        assert_ne!(state.state_root(), root_before);
        assert_eq!(state.storage_ref(alice, U256::from(1)).unwrap(), U256::from(9));
        assert_eq!(state.account(&alice).unwrap().nonce, 1);

        // The same state built directly has the same root.
        let mut direct = MemoryState::new();
        direct.insert_account(
            alice,
            BasicAccount { nonce: 1, ..BasicAccount::with_balance(U256::from(7)) },
        );
        direct.insert_storage(alice, U256::from(1), U256::from(9));
        assert_eq!(direct.state_root(), state.state_root());
    }

    #[test]
    fn block_hashes_keep_a_window_of_256() {
        let mut state = MemoryState::new();
        for n in 0..300 {
            state.insert_block_hash(n, B256::with_last_byte(n as u8));
        }
        assert_eq!(state.block_hash_ref(43).unwrap(), B256::ZERO);
        assert_eq!(state.block_hash_ref(299).unwrap(), B256::with_last_byte(299u64 as u8));
    }
}
