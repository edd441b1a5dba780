//! Reads of past states: the head state plus the diffs of the blocks after
//! the block of interest, walked backwards.
//!
//! The value of an account or slot at block `n` is the `before` value of the
//! first later block that changed it, or the head's value if none did. A
//! node keeps a window of recent diffs in memory, so historical reads within
//! the window cost a few map lookups per block and no database round trip.

use crate::{
    state::{AccountProof, BasicAccount, MemoryState, StateDiff},
    trie::MerkleTrie,
};
use alloy_primitives::{Address, B256, U256, keccak256};
use alloy_trie::{EMPTY_ROOT_HASH, TrieAccount};
use revm::{DatabaseRef, bytecode::Bytecode, state::AccountInfo};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Why a past value cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HistoryError {
    /// A later block wiped the account's storage without recording this
    /// slot's old value (a self-destruct of storage that existed before the
    /// block; impossible for accounts created before Cancun's EIP-6780 rule
    /// applies, but not ruled out).
    #[error("the value of slot {slot} of {address} before block {block} was not recorded")]
    SlotWiped {
        /// The account.
        address: Address,
        /// The slot.
        slot: U256,
        /// The block that wiped the storage.
        block: u64,
    },
}

impl revm::database_interface::DBErrorMarker for HistoryError {}

/// The state after some past block: `head` with `later` undone.
#[derive(Debug, Clone, Copy)]
pub struct HistoricalState<'a> {
    head: &'a MemoryState,
    /// Diffs of the blocks after the one of interest, oldest first.
    later: &'a [(u64, Arc<StateDiff>)],
}

impl<'a> HistoricalState<'a> {
    /// The state before the first of `later` (`later` must be consecutive
    /// blocks ending at the head of `head`, oldest first).
    pub const fn new(head: &'a MemoryState, later: &'a [(u64, Arc<StateDiff>)]) -> Self {
        Self { head, later }
    }

    /// How many account and slot changes the later blocks made: a bound on
    /// the work of [`HistoricalState::proof`] (each is copied and rehashed).
    pub fn changes_undone(&self) -> usize {
        self.later
            .iter()
            .flat_map(|(_, diff)| diff.accounts.values())
            .map(|change| 1 + change.storage.len())
            .sum()
    }

    /// An account's basic fields.
    pub fn account(&self, address: &Address) -> Option<BasicAccount> {
        for (_, diff) in self.later {
            if let Some(change) = diff.accounts.get(address) {
                return change.before;
            }
        }
        self.head.account(address)
    }

    /// One storage slot.
    pub fn storage(&self, address: Address, slot: U256) -> Result<U256, HistoryError> {
        for (block, diff) in self.later {
            let Some(change) = diff.accounts.get(&address) else { continue };
            if let Some(slot_change) = change.storage.get(&slot) {
                return Ok(slot_change.before);
            }
            if change.storage_cleared {
                // Created by this block (it had no storage before) or wiped.
                if change.before.is_none() {
                    return Ok(U256::ZERO);
                }
                return Err(HistoryError::SlotWiped { address, slot, block: *block });
            }
        }
        Ok(self.head.storage_ref(address, slot).unwrap_or_default())
    }
}

/// EIP-1186 proofs against a past block's state root, without copying the
/// tries: the head's tries are copied only along the paths that the later
/// blocks changed (and the ones asked for), reverted there, and rehashed
/// (see [`MerkleTrie::partial_copy`]). The cost grows with what the later
/// blocks touched, not with the state.
impl HistoricalState<'_> {
    /// Proofs of `address` and `slots` at this past block. The head's hashes
    /// must be current ([`MemoryState::state_root`] after the last change).
    pub fn proof(&self, address: Address, slots: &[U256]) -> Result<AccountProof, HistoryError> {
        let mut account_updates = Vec::new();
        let mut target = None;
        for (changed_address, reverted) in self.reverted() {
            let asked: &[U256] = if changed_address == address { slots } else { &[] };
            let (storage_trie, storage_root) = match reverted.account {
                Some(_) => self.storage_trie(changed_address, &reverted, asked)?,
                None => (MerkleTrie::new(), EMPTY_ROOT_HASH),
            };
            let leaf = reverted.account.map(|info| {
                alloy_rlp::encode(TrieAccount {
                    nonce: info.nonce,
                    balance: info.balance,
                    storage_root,
                    code_hash: info.code_hash,
                })
            });
            account_updates.push((keccak256(changed_address), leaf));
            if changed_address == address {
                target = Some((reverted.account, storage_trie, storage_root));
            }
        }
        let key = keccak256(address);
        let keys = account_updates.iter().map(|(k, _)| *k).chain(std::iter::once(key));
        let mut account_trie = self.head.account_trie().partial_copy(keys);
        account_trie.update_many(account_updates);
        account_trie.root();
        let (account, mut storage_trie, storage_root) = match target {
            Some(target) => target,
            None => {
                // Unchanged since this block: the head's account and storage.
                let account = self.head.account(&address);
                match self.head.storage_trie(&address).filter(|_| account.is_some()) {
                    Some((trie, root)) => (account, trie.partial_copy(slot_keys(slots)), root),
                    None => (account, MerkleTrie::new(), EMPTY_ROOT_HASH),
                }
            }
        };
        storage_trie.root();
        let storage_proofs = slots
            .iter()
            .map(|slot| {
                let value =
                    if account.is_some() { self.storage(address, *slot)? } else { U256::ZERO };
                let proof = if account.is_some() {
                    storage_trie.proof(keccak256(B256::from(*slot)))
                } else {
                    Vec::new()
                };
                Ok((*slot, value, proof))
            })
            .collect::<Result<_, HistoryError>>()?;
        Ok(AccountProof {
            account,
            storage_root,
            account_proof: account_trie.proof(key),
            storage_proofs,
        })
    }

    /// Every account the later blocks changed, with its values at this block,
    /// in one pass over the later diffs (the oldest change of each account
    /// and slot holds its value here).
    fn reverted(&self) -> BTreeMap<Address, Reverted> {
        let mut reverted: BTreeMap<Address, Reverted> = BTreeMap::new();
        for (block, diff) in self.later {
            for (address, change) in &diff.accounts {
                let entry = reverted.entry(*address).or_insert_with(|| Reverted {
                    account: change.before,
                    slots: BTreeMap::new(),
                    wiped: None,
                });
                for (slot, slot_change) in &change.storage {
                    entry.slots.entry(*slot).or_insert(slot_change.before);
                }
                if change.storage_cleared && entry.wiped.is_none() {
                    let slot = change.storage.keys().next().copied().unwrap_or_default();
                    entry.wiped = Some((*block, slot));
                }
            }
        }
        reverted
    }

    /// The storage trie of `address` (which exists at this block) reverted to
    /// this block along its changed slots and copied along the `asked` ones,
    /// with its root.
    fn storage_trie(
        &self,
        address: Address,
        reverted: &Reverted,
        asked: &[U256],
    ) -> Result<(MerkleTrie, B256), HistoryError> {
        if let Some((block, slot)) = reverted.wiped {
            // The storage this block held is not recorded.
            return Err(HistoryError::SlotWiped { address, slot, block });
        }
        let Some((head_trie, head_root)) = self.head.storage_trie(&address) else {
            // Absent at the head: created and removed again later, with its
            // storage wiped then (caught above) or never written.
            return Ok((MerkleTrie::new(), EMPTY_ROOT_HASH));
        };
        let mut trie = head_trie.partial_copy(slot_keys(reverted.slots.keys().chain(asked)));
        if reverted.slots.is_empty() {
            return Ok((trie, head_root));
        }
        let updates = reverted
            .slots
            .iter()
            .map(|(slot, value)| {
                let leaf = (!value.is_zero()).then(|| alloy_rlp::encode(value));
                (keccak256(B256::from(*slot)), leaf)
            })
            .collect();
        trie.update_many(updates);
        let root = trie.root();
        Ok((trie, root))
    }
}

/// One account's values at a past block, as the later diffs recorded them.
struct Reverted {
    /// The account (`None`: it did not exist).
    account: Option<BasicAccount>,
    /// Changed slots and their values.
    slots: BTreeMap<U256, U256>,
    /// The first later block that wiped its storage, and a slot it names.
    wiped: Option<(u64, U256)>,
}

/// The storage trie keys of `slots`.
fn slot_keys<'a>(slots: impl IntoIterator<Item = &'a U256>) -> impl Iterator<Item = B256> {
    slots.into_iter().map(|slot| keccak256(B256::from(*slot)))
}

impl DatabaseRef for HistoricalState<'_> {
    type Error = HistoryError;

    fn basic_ref(&self, address: Address) -> Result<Option<AccountInfo>, Self::Error> {
        Ok(self.account(&address).map(BasicAccount::to_info))
    }

    fn code_by_hash_ref(&self, code_hash: B256) -> Result<Bytecode, Self::Error> {
        // Code is content-addressed and never removed from the state.
        Ok(self.head.code_by_hash_ref(code_hash).unwrap_or_default())
    }

    fn storage_ref(&self, address: Address, index: U256) -> Result<U256, Self::Error> {
        self.storage(address, index)
    }

    fn block_hash_ref(&self, number: u64) -> Result<B256, Self::Error> {
        Ok(self.head.block_hash_ref(number).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_trie::{Nibbles, proof::verify_proof};

    /// A diff setting `accounts` (`None`: removed) and `slots` on `state`.
    fn change(
        state: &MemoryState,
        accounts: &[(Address, Option<BasicAccount>)],
        slots: &[(Address, U256, U256)],
    ) -> StateDiff {
        let mut diff = StateDiff::default();
        for (address, after) in accounts {
            diff.accounts.insert(
                *address,
                AccountDiff { before: state.account(address), after: *after, ..Default::default() },
            );
        }
        for (address, slot, value) in slots {
            let entry = diff.accounts.entry(*address).or_insert_with(|| AccountDiff {
                before: state.account(address),
                after: state.account(address),
                ..Default::default()
            });
            let before = state.storage_ref(*address, *slot).unwrap();
            entry.storage.insert(*slot, SlotChange { before, after: *value });
        }
        diff
    }

    /// Checks `proof` of `address` and `slots` against `root` with alloy-trie.
    fn verify(root: B256, address: Address, slots: &[U256], proof: &AccountProof) {
        let leaf = proof.account.map(|info| {
            alloy_rlp::encode(TrieAccount {
                nonce: info.nonce,
                balance: info.balance,
                storage_root: proof.storage_root,
                code_hash: info.code_hash,
            })
        });
        verify_proof(root, Nibbles::unpack(keccak256(address)), leaf, &proof.account_proof)
            .unwrap_or_else(|e| panic!("account proof of {address}: {e}"));
        for (slot, (asked, value, nodes)) in slots.iter().zip(&proof.storage_proofs) {
            assert_eq!(slot, asked);
            if proof.account.is_none() {
                continue;
            }
            let expected = (!value.is_zero()).then(|| alloy_rlp::encode(*value));
            verify_proof(
                proof.storage_root,
                Nibbles::unpack(keccak256(B256::from(*slot))),
                expected,
                nodes,
            )
            .unwrap_or_else(|e| panic!("storage proof of {address} slot {slot}: {e}"));
        }
    }

    #[test]
    fn proofs_of_past_blocks_verify_against_their_roots() {
        let address = |i: u8| Address::repeat_byte(i);
        let mut state = MemoryState::new();
        for i in 1..=40u8 {
            state.insert_account(address(i), BasicAccount::with_balance(U256::from(i)));
        }
        for i in 0..20u64 {
            state.insert_storage(address(1), U256::from(i), U256::from(i + 100));
        }
        let mut roots = vec![state.state_root()];
        let mut history = Vec::new();
        let blocks = [
            change(
                &state,
                &[
                    (address(2), Some(BasicAccount::with_balance(U256::from(99)))),
                    (address(50), Some(BasicAccount::with_balance(U256::from(5)))),
                ],
                &[
                    (address(1), U256::from(3), U256::from(7)),
                    (address(1), U256::from(4), U256::ZERO),
                ],
            ),
            change(&state, &[(address(3), None)], &[(address(1), U256::from(30), U256::from(1))]),
            change(
                &state,
                &[(address(50), None), (address(4), Some(BasicAccount::with_balance(U256::ZERO)))],
                &[],
            ),
        ];
        for (number, diff) in blocks.into_iter().enumerate() {
            // Each diff's `before` values must be the state it applies to.
            let diff = if number == 0 { diff } else { rebase(&state, diff) };
            state.apply(&diff);
            roots.push(state.state_root());
            history.push((number as u64 + 1, Arc::new(diff)));
        }
        let slots = [U256::from(3), U256::from(4), U256::from(30), U256::from(5)];
        for n in 0..=history.len() {
            let past = HistoricalState::new(&state, &history[n..]);
            // Accounts plus slots the later blocks changed (3 + 2, 2 + 1, 2).
            assert_eq!(past.changes_undone(), [10, 5, 2, 0][n], "block {n}");
            for i in [1u8, 2, 3, 4, 5, 50, 77] {
                let proof = past.proof(address(i), &slots).unwrap();
                assert_eq!(proof.account, past.account(&address(i)), "block {n}, account {i}");
                verify(roots[n], address(i), &slots, &proof);
            }
        }
    }

    /// `diff` with its `before` values read from `state`.
    fn rebase(state: &MemoryState, mut diff: StateDiff) -> StateDiff {
        for (address, change) in &mut diff.accounts {
            change.before = state.account(address);
            for (slot, slot_change) in &mut change.storage {
                slot_change.before = state.storage_ref(*address, *slot).unwrap();
            }
        }
        diff
    }
    use crate::state::{AccountDiff, SlotChange};
    use std::collections::BTreeMap;

    #[test]
    fn undoes_later_blocks() {
        let alice = Address::repeat_byte(0xa1);
        let mut state = MemoryState::new();
        state.insert_account(alice, BasicAccount::with_balance(U256::from(1)));
        state.insert_storage(alice, U256::from(1), U256::from(10));
        let mut history = Vec::new();
        for block in 1..=3u64 {
            let mut diff = StateDiff::default();
            let before = state.account(&alice);
            let after = BasicAccount::with_balance(U256::from(block + 1));
            let slot_before = state.storage_ref(alice, U256::from(1)).unwrap();
            let storage = if block == 2 {
                BTreeMap::from([(
                    U256::from(1),
                    SlotChange { before: slot_before, after: U256::from(20) },
                )])
            } else {
                BTreeMap::new()
            };
            diff.accounts.insert(
                alice,
                AccountDiff { before, after: Some(after), storage_cleared: false, storage },
            );
            state.apply(&diff);
            history.push((block, Arc::new(diff)));
        }
        // After block 0 (all three undone), after 1, 2, and the head (3).
        let balances: Vec<_> = (0..=3)
            .map(|n: usize| {
                HistoricalState::new(&state, &history[n..]).account(&alice).unwrap().balance
            })
            .collect();
        assert_eq!(balances, [1, 2, 3, 4].map(U256::from));
        let slots: Vec<_> = (0..=3)
            .map(|n: usize| {
                HistoricalState::new(&state, &history[n..]).storage(alice, U256::from(1)).unwrap()
            })
            .collect();
        assert_eq!(slots, [10, 10, 20, 20].map(U256::from));
        // An account created later did not exist before.
        let bob = Address::repeat_byte(0xb0);
        assert_eq!(HistoricalState::new(&state, &history).account(&bob), None);
    }
}
