//! Reads of past states: the head state plus the diffs of the blocks after
//! the block of interest, walked backwards.
//!
//! The value of an account or slot at block `n` is the `before` value of the
//! first later block that changed it, or the head's value if none did. A
//! node keeps a window of recent diffs in memory, so historical reads within
//! the window cost a few map lookups per block and no database round trip.

use crate::state::{BasicAccount, MemoryState, StateDiff};
use alloy_primitives::{Address, B256, U256};
use revm::{DatabaseRef, bytecode::Bytecode, state::AccountInfo};
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
