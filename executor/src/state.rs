//! In-memory state snapshot, per-block overlay and state diffs.
//!
//! [`MemoryState`] is the head state the block producer executes on: it
//! implements revm's [`DatabaseRef`], so execution never waits on SQL.
//! [`BlockState`] is the mutable overlay of one block on top of any
//! `DatabaseRef`; when the block is done it yields a [`StateDiff`] (old and new
//! value of everything the block changed), the unit that persists state.

use crate::{
    snapshot::{self, Reader, SnapshotError, Writer},
    trie::MerkleTrie,
};
use alloy_primitives::{
    Address, B256, Bytes, U256, keccak256,
    map::{HashMap, HashSet},
};
use alloy_trie::{EMPTY_ROOT_HASH, KECCAK_EMPTY, TrieAccount};
use rayon::prelude::*;
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

    /// Whether the account is empty in the EIP-161 sense (no nonce, balance
    /// or code).
    pub fn is_empty(&self) -> bool {
        self.nonce == 0 && self.balance.is_zero() && self.code_hash == KECCAK_EMPTY
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
#[derive(Debug, Clone)]
struct StoredAccount {
    info: Option<BasicAccount>,
    storage: HashMap<U256, U256>,
    /// Secure trie of `storage` (keccak(slot) → RLP(value)).
    storage_trie: MerkleTrie,
    /// Root of `storage_trie` as of the last state root.
    storage_root: B256,
    /// Whether `storage` changed since the last state root.
    storage_dirty: bool,
}

/// The full state of the chain at one block, in memory.
///
/// The account trie and each account's storage trie are kept alongside the
/// plain maps; changes mark accounts dirty and [`MemoryState::state_root`]
/// refreshes only those (see [`crate::trie`]).
#[derive(Debug, Clone, Default)]
pub struct MemoryState {
    accounts: HashMap<Address, StoredAccount>,
    code: HashMap<B256, Bytecode>,
    block_hashes: BTreeMap<u64, B256>,
    /// How many block hashes are kept (`None`: [`BLOCK_HASH_WINDOW`]).
    block_hash_window: Option<u64>,
    /// Secure trie of accounts (keccak(address) → RLP(account)).
    account_trie: MerkleTrie,
    /// Accounts changed since the last root.
    dirty: HashSet<Address>,
}

impl MemoryState {
    /// An empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets an account's basic fields (creating it).
    pub fn insert_account(&mut self, address: Address, account: BasicAccount) {
        self.accounts.entry(address).or_default().info = Some(account);
        self.dirty.insert(address);
    }

    /// Sets one storage slot (zero removes it).
    pub fn insert_storage(&mut self, address: Address, slot: U256, value: U256) {
        set_slot(self.accounts.entry(address).or_default(), slot, value);
        self.dirty.insert(address);
    }

    /// Sets many storage slots.
    pub fn insert_storage_many(&mut self, slots: impl IntoIterator<Item = (Address, U256, U256)>) {
        for (address, slot, value) in slots {
            self.insert_storage(address, slot, value);
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
        let window = self.block_hash_window.unwrap_or(BLOCK_HASH_WINDOW);
        while self.block_hashes.len() as u64 > window {
            self.block_hashes.pop_first();
        }
    }

    /// Keeps the last `window` block hashes (at least the EVM's 256): a
    /// state that also serves past blocks (undoing later diffs) needs the
    /// 256 before the oldest of them.
    pub fn keep_block_hashes(&mut self, window: u64) {
        self.block_hash_window = Some(window.max(BLOCK_HASH_WINDOW));
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
            self.dirty.insert(*address);
            let Some(after) = change.after else {
                self.accounts.remove(address);
                continue;
            };
            let stored = self.accounts.entry(*address).or_default();
            stored.info = Some(after);
            if change.storage_cleared {
                stored.storage.clear();
                stored.storage_trie = MerkleTrie::new();
                stored.storage_dirty = true;
            }
            for (slot, value) in &change.storage {
                set_slot(stored, *slot, value.after);
            }
        }
    }

    /// The Ethereum Merkle-Patricia state root of this state.
    ///
    /// Incremental: only accounts changed since the last call are re-encoded,
    /// and only the trie paths above them re-hashed.
    pub fn state_root(&mut self) -> B256 {
        // The dirty set is cleared only once every hash is current: a panic
        // midway must not leave the tries looking current.
        let dirty: Vec<Address> = self.dirty.iter().copied().collect();
        for address in &dirty {
            if let Some(stored) = self.accounts.get_mut(address)
                && stored.storage_dirty
            {
                stored.storage_root = stored.storage_trie.root();
                stored.storage_dirty = false;
            }
        }
        let accounts = &self.accounts;
        let updates = dirty
            .par_iter()
            .map(|address| {
                let leaf = accounts.get(address).and_then(|stored| {
                    let info = stored.info?;
                    Some(alloy_rlp::encode(TrieAccount {
                        nonce: info.nonce,
                        balance: info.balance,
                        storage_root: stored.storage_root,
                        code_hash: info.code_hash,
                    }))
                });
                (keccak256(address), leaf)
            })
            .collect();
        self.account_trie.update_many(updates);
        let root = self.account_trie.root();
        self.dirty.clear();
        root
    }
}

/// Snapshots: the whole state with its tries' cached hashes (see
/// [`crate::snapshot`]).
impl MemoryState {
    /// The state as a snapshot; hashes every dirty node first so the snapshot
    /// carries them all. Block hashes are not included (the caller reloads
    /// the last 256 with [`MemoryState::insert_block_hash`]).
    pub fn encode_snapshot(&mut self) -> Vec<u8> {
        self.state_root();
        let mut w = Writer::default();
        w.u8(snapshot::VERSION);
        w.u64(self.code.len() as u64);
        for (hash, code) in &self.code {
            w.fixed(hash.as_slice());
            w.bytes(code.original_byte_slice());
        }
        // The account trie as one length-prefixed section, so loading decodes
        // it beside the accounts.
        let section = w.begin_section();
        self.account_trie.write_snapshot(&mut w);
        w.end_section(section);
        w.u64(self.accounts.len() as u64);
        for (address, stored) in &self.accounts {
            w.fixed(address.as_slice());
            match stored.info {
                None => w.u8(0),
                Some(info) => {
                    w.u8(1);
                    w.u64(info.nonce);
                    w.fixed(&info.balance.to_be_bytes::<32>());
                    w.fixed(info.code_hash.as_slice());
                }
            }
            w.fixed(stored.storage_root.as_slice());
            w.u64(stored.storage.len() as u64);
            for (slot, value) in &stored.storage {
                w.fixed(&slot.to_be_bytes::<32>());
                w.fixed(&value.to_be_bytes::<32>());
            }
            stored.storage_trie.write_snapshot(&mut w);
        }
        w.out
    }

    /// A state from [`MemoryState::encode_snapshot`]'s bytes, without
    /// rehashing: its state root is the snapshot's. The account trie and the
    /// accounts decode in parallel.
    pub fn decode_snapshot(bytes: &[u8]) -> Result<Self, SnapshotError> {
        let mut r = Reader { input: bytes };
        let version = r.u8()?;
        if version != snapshot::VERSION {
            return Err(SnapshotError::Version(version));
        }
        let mut state = Self::new();
        let codes = r.len(40)?;
        state.code.reserve(codes);
        for _ in 0..codes {
            let hash = B256::from_slice(r.fixed(32)?);
            let code = Bytes::copy_from_slice(r.bytes()?);
            state.code.insert(hash, Bytecode::new_raw(code));
        }
        let trie_bytes = r.bytes()?;
        let (trie, accounts) = rayon::join(
            || {
                let mut r = Reader { input: trie_bytes };
                let trie = MerkleTrie::read_snapshot(&mut r)?;
                if !r.input.is_empty() {
                    return Err(SnapshotError::Invalid("trailing bytes after the account trie"));
                }
                Ok(trie)
            },
            || decode_accounts(r),
        );
        state.account_trie = trie?;
        state.accounts = accounts?;
        Ok(state)
    }
}

/// The accounts section of a snapshot (the rest of the input).
fn decode_accounts(mut r: Reader<'_>) -> Result<HashMap<Address, StoredAccount>, SnapshotError> {
    let b256 = |r: &mut Reader<'_>| r.fixed(32).map(B256::from_slice);
    let u256 = |r: &mut Reader<'_>| r.fixed(32).map(U256::from_be_slice);
    let count = r.len(61)?;
    let mut accounts = HashMap::default();
    accounts.reserve(count);
    for _ in 0..count {
        let address = Address::from_slice(r.fixed(20)?);
        let info = match r.u8()? {
            0 => None,
            1 => Some(BasicAccount {
                nonce: r.u64()?,
                balance: u256(&mut r)?,
                code_hash: b256(&mut r)?,
            }),
            _ => return Err(SnapshotError::Invalid("account flag")),
        };
        let storage_root = b256(&mut r)?;
        let slots = r.len(64)?;
        let mut storage = HashMap::default();
        storage.reserve(slots);
        for _ in 0..slots {
            storage.insert(u256(&mut r)?, u256(&mut r)?);
        }
        let storage_trie = MerkleTrie::read_snapshot(&mut r)?;
        accounts.insert(
            address,
            StoredAccount { info, storage, storage_trie, storage_root, storage_dirty: false },
        );
    }
    if !r.input.is_empty() {
        return Err(SnapshotError::Invalid("trailing bytes"));
    }
    Ok(accounts)
}

impl Default for StoredAccount {
    fn default() -> Self {
        Self {
            info: None,
            storage: HashMap::default(),
            storage_trie: MerkleTrie::new(),
            storage_root: EMPTY_ROOT_HASH,
            storage_dirty: false,
        }
    }
}

/// An account with Merkle proofs of it and of some of its storage slots
/// (EIP-1186, `eth_getProof`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountProof {
    /// The account (`None`: it does not exist; the proof shows its absence).
    pub account: Option<BasicAccount>,
    /// Root of the account's storage trie.
    pub storage_root: B256,
    /// Nodes from the state root to the account.
    pub account_proof: Vec<Bytes>,
    /// Per requested slot: the slot, its value and nodes from the storage root.
    pub storage_proofs: Vec<(U256, U256, Vec<Bytes>)>,
}

impl MemoryState {
    /// Proofs of `address` and `slots` against [`MemoryState::state_root`]
    /// (which this first brings up to date).
    pub fn proof(&mut self, address: Address, slots: &[U256]) -> AccountProof {
        self.state_root();
        self.current_proof(address, slots).expect("the hashes were just brought up to date")
    }

    /// Whether the tries' hashes are current: nothing changed since the
    /// last [`MemoryState::state_root`]. Proofs, here and of past blocks,
    /// need them so.
    pub fn hashes_current(&self) -> bool {
        self.dirty.is_empty()
    }

    /// Like [`MemoryState::proof`], from a shared reference: `None` if the
    /// hashes are not current (see [`MemoryState::hashes_current`]).
    pub fn current_proof(&self, address: Address, slots: &[U256]) -> Option<AccountProof> {
        if !self.hashes_current() {
            return None;
        }
        let account_proof = self.account_trie.proof(keccak256(address));
        let stored = self.accounts.get(&address).filter(|s| s.info.is_some());
        let storage_proofs = slots
            .iter()
            .map(|slot| {
                let value = stored.and_then(|s| s.storage.get(slot).copied()).unwrap_or_default();
                let proof = stored
                    .map(|s| s.storage_trie.proof(keccak256(B256::from(*slot))))
                    .unwrap_or_default();
                (*slot, value, proof)
            })
            .collect();
        Some(AccountProof {
            account: stored.and_then(|s| s.info),
            storage_root: stored.map_or(EMPTY_ROOT_HASH, |s| s.storage_root),
            account_proof,
            storage_proofs,
        })
    }
}

/// What historical proofs read from the head (see `crate::history`).
impl MemoryState {
    /// The account trie; its hashes are current after [`MemoryState::state_root`].
    pub(crate) const fn account_trie(&self) -> &MerkleTrie {
        &self.account_trie
    }

    /// An account's storage trie and its root as of the last state root.
    pub(crate) fn storage_trie(&self, address: &Address) -> Option<(&MerkleTrie, B256)> {
        self.accounts.get(address).map(|stored| (&stored.storage_trie, stored.storage_root))
    }
}

fn set_slot(stored: &mut StoredAccount, slot: U256, value: U256) {
    stored.storage_dirty = true;
    let key = keccak256(B256::from(slot));
    if value.is_zero() {
        stored.storage.remove(&slot);
        stored.storage_trie.remove(key);
    } else {
        stored.storage.insert(slot, value);
        stored.storage_trie.insert(key, alloy_rlp::encode(value));
    }
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
    /// Code of the accounts committed so far, as revm loaded it: analysed
    /// once (jump table included), so a contract called again in the block
    /// is not analysed again.
    code: HashMap<B256, Bytecode>,
}

impl<'a, DB: DatabaseRef> BlockState<'a, DB> {
    /// An empty overlay over `base`.
    pub fn new(base: &'a DB) -> Self {
        Self { base, accounts: HashMap::default(), code: HashMap::default() }
    }

    /// The diff of everything committed so far against the base snapshot.
    pub fn into_diff(self) -> Result<StateDiff, DB::Error> {
        let mut diff = StateDiff { accounts: BTreeMap::new(), code: BTreeMap::new() };
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
        // Only code the block deployed: the overlay also holds the code of
        // every contract the block called.
        let deployed: Vec<B256> = diff
            .accounts
            .values()
            .filter_map(|change| {
                let after = change.after?.code_hash;
                (change.before.map(|b| b.code_hash) != Some(after)).then_some(after)
            })
            .collect();
        for hash in deployed {
            if let Some(code) = self.code.get(&hash) {
                diff.code.insert(hash, code.original_bytes());
            }
        }
        Ok(diff)
    }

    /// Commits one account of a transaction's write set.
    pub(crate) fn commit_account(&mut self, address: Address, account: &Account) {
        if !account.is_touched() {
            return;
        }
        self.commit_parts(
            address,
            account.is_selfdestructed() || account.is_empty(),
            account.is_created(),
            &account.info,
            account
                .storage
                .iter()
                .map(|(slot, value)| (*slot, value.present_value(), value.is_changed())),
        );
    }

    /// Commits an [`AccountChange`] (what [`BlockState::commit_account`]
    /// would commit of the account it was taken from).
    pub(crate) fn commit_change(&mut self, change: &AccountChange) {
        self.commit_parts(
            change.address,
            change.destroyed,
            change.created,
            &change.info,
            change.storage.iter().copied(),
        );
    }

    fn commit_parts(
        &mut self,
        address: Address,
        destroyed: bool,
        created: bool,
        info: &AccountInfo,
        storage: impl IntoIterator<Item = (U256, U256, bool)>,
    ) {
        let entry = self.accounts.entry(address).or_default();
        // EIP-6780 self-destructs and EIP-161 touched-empty accounts both end
        // the account: it leaves the state with its storage.
        if destroyed {
            *entry =
                OverlayAccount { info: None, storage: HashMap::default(), storage_cleared: true };
            return;
        }
        if created {
            entry.storage.clear();
            entry.storage_cleared = true;
        }
        if let Some(code) = &info.code
            && !code.is_empty()
        {
            self.code.entry(info.code_hash).or_insert_with(|| code.clone());
        }
        entry.info = Some(BasicAccount::from_info(info));
        for (slot, present, changed) in storage {
            if changed || entry.storage_cleared {
                entry.storage.insert(slot, present);
            }
        }
    }
}

/// A compact copy of what a transaction did to one touched account: what
/// [`BlockState`] commits of it, without revm's per-account maps.
#[derive(Debug, Clone)]
pub(crate) struct AccountChange {
    /// The account.
    pub(crate) address: Address,
    /// Self-destructed, or touched and empty (EIP-161): it leaves the state.
    pub(crate) destroyed: bool,
    /// Created by the transaction (its storage is wiped first).
    pub(crate) created: bool,
    /// Its fields after the transaction (with its code, if loaded).
    pub(crate) info: AccountInfo,
    /// Every slot the transaction loaded or wrote: (slot, value after the
    /// transaction, whether the transaction changed it).
    pub(crate) storage: Box<[(U256, U256, bool)]>,
}

impl AccountChange {
    /// The change of `account` (`None`: untouched, nothing to commit).
    pub(crate) fn new(address: Address, account: &Account) -> Option<Self> {
        // The code is kept only where committing this change may deploy it:
        // a creation, or an EIP-7702 delegation. A called contract's code
        // stays out: cloning it bumps a reference count that every
        // transaction calling the contract shares, from every worker.
        let deploys = account.is_created()
            || account.info.code.as_ref().is_some_and(|code| code.is_eip7702());
        account.is_touched().then(|| Self {
            address,
            destroyed: account.is_selfdestructed() || account.is_empty(),
            created: account.is_created(),
            info: AccountInfo {
                code: if deploys { account.info.code.clone() } else { None },
                ..account.info.copy_without_code()
            },
            storage: account
                .storage
                .iter()
                .map(|(slot, value)| (*slot, value.present_value(), value.is_changed()))
                .collect(),
        })
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
            Some(code) => Ok(code.clone()),
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

impl StateDiff {
    /// Composes two consecutive diffs into one: `later` was computed on top of
    /// `base` with `self` applied (e.g. through [`DiffOverlay`]).
    ///
    /// The result goes from `base` straight to the state after both: the
    /// `before` values come from `base` (or from `self`), the `after` values
    /// from `later` (or from `self`), and entries that end where they began
    /// are dropped.
    pub fn then<DB: DatabaseRef>(self, later: Self, base: &DB) -> Result<Self, DB::Error> {
        if later.accounts.is_empty() && later.code.is_empty() {
            return Ok(self);
        }
        let mut code = self.code;
        code.extend(later.code);
        let mut accounts = self.accounts;
        for (address, second) in later.accounts {
            let Some(first) = accounts.remove(&address) else {
                accounts.insert(address, second);
                continue;
            };
            let storage_cleared = first.storage_cleared || second.storage_cleared;
            // With the second diff wiping the storage, the first one's slots
            // only serve to look up `before` values.
            let (mut storage, wiped) = if second.storage_cleared {
                (BTreeMap::new(), first.storage)
            } else {
                (first.storage, BTreeMap::new())
            };
            for (slot, change) in second.storage {
                let before = match storage.get(&slot).or_else(|| wiped.get(&slot)) {
                    Some(earlier) => earlier.before,
                    None if first.storage_cleared => base.storage_ref(address, slot)?,
                    None => change.before,
                };
                storage.insert(slot, SlotChange { before, after: change.after });
            }
            if !storage_cleared {
                storage.retain(|_, change| change.before != change.after);
            }
            let merged =
                AccountDiff { before: first.before, after: second.after, storage_cleared, storage };
            if merged.before != merged.after || merged.storage_cleared || !merged.storage.is_empty()
            {
                accounts.insert(address, merged);
            }
        }
        Ok(Self { accounts, code })
    }
}

/// A [`DatabaseRef`] that reads `base` with a [`StateDiff`] applied on top.
///
/// Block execution runs in stages (system calls, transactions, withdrawals):
/// each stage reads the state the previous ones left through this layer, and
/// the stage diffs are joined with [`StateDiff::then`].
#[derive(Debug, Clone, Copy)]
pub struct DiffOverlay<'a, DB> {
    base: &'a DB,
    diff: &'a StateDiff,
}

impl<'a, DB: DatabaseRef> DiffOverlay<'a, DB> {
    /// `base` with `diff` applied.
    pub const fn new(base: &'a DB, diff: &'a StateDiff) -> Self {
        Self { base, diff }
    }
}

impl<DB: DatabaseRef> DatabaseRef for DiffOverlay<'_, DB> {
    type Error = DB::Error;

    fn basic_ref(&self, address: Address) -> Result<Option<AccountInfo>, Self::Error> {
        match self.diff.accounts.get(&address) {
            Some(change) => Ok(change.after.map(BasicAccount::to_info)),
            None => self.base.basic_ref(address),
        }
    }

    fn code_by_hash_ref(&self, code_hash: B256) -> Result<Bytecode, Self::Error> {
        match self.diff.code.get(&code_hash) {
            Some(code) => Ok(Bytecode::new_raw(code.clone())),
            None => self.base.code_by_hash_ref(code_hash),
        }
    }

    fn storage_ref(&self, address: Address, index: U256) -> Result<U256, Self::Error> {
        if let Some(change) = self.diff.accounts.get(&address) {
            if let Some(slot) = change.storage.get(&index) {
                return Ok(slot.after);
            }
            if change.storage_cleared {
                return Ok(U256::ZERO);
            }
        }
        self.base.storage_ref(address, index)
    }

    fn block_hash_ref(&self, number: u64) -> Result<B256, Self::Error> {
        self.base.block_hash_ref(number)
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
    fn a_snapshot_reloads_the_state_and_its_tries_without_rehashing() {
        let mut state = MemoryState::new();
        let code_hash = state.insert_code(Bytes::from_static(&[0x60, 0x00, 0x00]));
        for i in 0..500u64 {
            let address = Address::left_padding_from(&i.to_be_bytes());
            let account = BasicAccount { nonce: i, balance: U256::from(i * 7), code_hash };
            state.insert_account(address, account);
        }
        let slots = (0..300u64).map(|i| {
            (Address::left_padding_from(&(i % 3).to_be_bytes()), U256::from(i), U256::from(i + 1))
        });
        state.insert_storage_many(slots);
        let root = state.state_root();
        let bytes = state.encode_snapshot();
        let mut loaded = MemoryState::decode_snapshot(&bytes).unwrap();
        assert_eq!(loaded.state_root(), root);
        let probe = Address::left_padding_from(&1u64.to_be_bytes());
        assert_eq!(loaded.proof(probe, &[U256::from(4)]), state.proof(probe, &[U256::from(4)]));
        assert_eq!(
            loaded.code_by_hash_ref(code_hash).unwrap(),
            state.code_by_hash_ref(code_hash).unwrap()
        );

        // The reloaded tries update incrementally to the same roots.
        let mut diff = StateDiff::default();
        diff.accounts.insert(
            probe,
            AccountDiff {
                before: state.account(&probe),
                after: Some(BasicAccount { nonce: 9, ..BasicAccount::with_balance(U256::from(1)) }),
                storage_cleared: false,
                storage: BTreeMap::from([(
                    U256::from(4),
                    SlotChange { before: U256::from(5), after: U256::from(77) },
                )]),
            },
        );
        state.apply(&diff);
        loaded.apply(&diff);
        assert_eq!(loaded.state_root(), state.state_root());

        // Corrupt bytes are an error, never a panic.
        for cut in [0, 1, 9, bytes.len() / 2, bytes.len() - 1] {
            assert!(MemoryState::decode_snapshot(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut wrong = bytes;
        wrong[0] = 99;
        assert!(matches!(MemoryState::decode_snapshot(&wrong), Err(SnapshotError::Version(99))));
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

    /// The root rebuilt from scratch with alloy-trie's sorted-leaf builder.
    fn full_rebuild_root(state: &MemoryState) -> B256 {
        alloy_trie::root::state_root_unhashed(state.accounts_snapshot().into_iter().map(|a| {
            let storage_root = alloy_trie::root::storage_root_unhashed(
                a.storage.iter().map(|(slot, value)| (B256::from(*slot), *value)),
            );
            let account = TrieAccount {
                nonce: a.account.nonce,
                balance: a.account.balance,
                storage_root,
                code_hash: a.account.code_hash,
            };
            (a.address, account)
        }))
    }

    #[test]
    fn incremental_root_equals_a_full_rebuild_across_blocks() {
        let address = |i: u64| Address::from_word(keccak256(i.to_be_bytes()));
        let mut state = MemoryState::new();
        for i in 0..2_000 {
            state.insert_account(address(i), BasicAccount::with_balance(U256::from(i + 1)));
        }
        for i in 0..20 {
            for slot in 0..50 {
                state.insert_storage(address(i), U256::from(slot), U256::from(slot * 7 + 1));
            }
        }
        assert_eq!(state.state_root(), full_rebuild_root(&state));
        for block in 0u64..12 {
            let mut diff = StateDiff::default();
            for i in (block * 37..block * 37 + 400).step_by(3) {
                let address = address(i % 2_500);
                let before = state.account(&address);
                let after = match (i + block) % 9 {
                    // Deleted (EIP-161 or self-destruct): storage goes with it.
                    0 => None,
                    _ => Some(BasicAccount {
                        nonce: before.map_or(0, |b| b.nonce) + 1,
                        ..BasicAccount::with_balance(U256::from(i * 1_000 + block))
                    }),
                };
                let storage_cleared = after.is_none() || i % 13 == 0;
                let storage = (0..(i % 5))
                    .map(|slot| {
                        let value = if (slot + block) % 4 == 0 { 0 } else { i + slot + block };
                        (
                            U256::from(slot),
                            SlotChange { before: U256::ZERO, after: U256::from(value) },
                        )
                    })
                    .filter(|_| after.is_some())
                    .collect();
                diff.accounts
                    .insert(address, AccountDiff { before, after, storage_cleared, storage });
            }
            state.apply(&diff);
            assert_eq!(state.state_root(), full_rebuild_root(&state), "block {block}");
        }
    }

    #[test]
    fn block_hashes_keep_a_window_of_256() {
        let mut state = MemoryState::new();
        for n in 0..300 {
            state.insert_block_hash(n, B256::with_last_byte(n as u8));
        }
        assert_eq!(state.block_hash_ref(43).unwrap(), B256::ZERO);
        assert_eq!(state.block_hash_ref(299).unwrap(), B256::with_last_byte(299u64 as u8));
        // A longer window, for a state that serves past blocks too.
        state.keep_block_hashes(1_000);
        for n in 300..1_300 {
            state.insert_block_hash(n, B256::with_last_byte(n as u8));
        }
        assert_eq!(state.block_hash_ref(299).unwrap(), B256::ZERO);
        assert_eq!(state.block_hash_ref(300).unwrap(), B256::with_last_byte(300u64 as u8));
    }

    #[test]
    fn composed_diffs_go_from_the_base_to_the_last_state() {
        let alice = address!("0x00000000000000000000000000000000000a11ce");
        let bob = address!("0x0000000000000000000000000000000000000b0b");
        let account = |balance: u64| Some(BasicAccount::with_balance(U256::from(balance)));
        let slot = |before: u64, after: u64| SlotChange {
            before: U256::from(before),
            after: U256::from(after),
        };
        let mut base = MemoryState::new();
        base.insert_account(alice, BasicAccount::with_balance(U256::from(1)));
        base.insert_account(bob, BasicAccount::with_balance(U256::from(1)));
        base.insert_storage(bob, U256::from(3), U256::from(9));

        let first = StateDiff {
            accounts: BTreeMap::from([
                (
                    alice,
                    AccountDiff {
                        before: account(1),
                        after: account(2),
                        storage_cleared: false,
                        storage: BTreeMap::from([(U256::from(1), slot(0, 5))]),
                    },
                ),
                (
                    bob,
                    AccountDiff {
                        before: account(1),
                        after: account(1),
                        storage_cleared: false,
                        storage: BTreeMap::from([(U256::from(1), slot(0, 4))]),
                    },
                ),
            ]),
            code: BTreeMap::new(),
        };
        let mut after_first = base.clone();
        after_first.apply(&first);
        // The second stage reads through the overlay.
        let overlay = DiffOverlay::new(&base, &first);
        assert_eq!(overlay.storage_ref(alice, U256::from(1)).unwrap(), U256::from(5));
        assert_eq!(overlay.storage_ref(bob, U256::from(3)).unwrap(), U256::from(9));
        assert_eq!(overlay.basic_ref(alice).unwrap().unwrap().balance, U256::from(2));

        let second = StateDiff {
            accounts: BTreeMap::from([
                (
                    alice,
                    AccountDiff {
                        before: account(2),
                        after: account(3),
                        storage_cleared: false,
                        storage: BTreeMap::from([
                            (U256::from(1), slot(5, 0)),
                            (U256::from(2), slot(0, 7)),
                        ]),
                    },
                ),
                (
                    bob,
                    AccountDiff {
                        before: account(1),
                        after: None,
                        storage_cleared: true,
                        storage: BTreeMap::new(),
                    },
                ),
            ]),
            code: BTreeMap::new(),
        };
        let mut stepwise = after_first.clone();
        stepwise.apply(&second);

        let composed = first.then(second, &base).unwrap();
        let alice_diff = &composed.accounts[&alice];
        assert_eq!((alice_diff.before, alice_diff.after), (account(1), account(3)));
        // Slot 1 went 0 -> 5 -> 0: no change at all.
        assert_eq!(alice_diff.storage, BTreeMap::from([(U256::from(2), slot(0, 7))]));
        let bob_diff = &composed.accounts[&bob];
        assert_eq!(
            (bob_diff.before, bob_diff.after, bob_diff.storage_cleared),
            (account(1), None, true)
        );
        let mut direct = base.clone();
        direct.apply(&composed);
        assert_eq!(direct.state_root(), stepwise.state_root());
    }
}
