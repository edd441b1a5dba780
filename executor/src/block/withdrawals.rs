//! EIP-4895 withdrawals: balance increments applied after the block's
//! transactions.

use crate::state::{AccountDiff, BasicAccount, StateDiff};
use alloy_eips::eip4895::Withdrawal;
use alloy_primitives::U256;
use revm::DatabaseRef;
use std::collections::{BTreeMap, btree_map::Entry};

/// Credits each withdrawal's amount (gwei, converted to wei) to its address on
/// top of `state` and returns the resulting diff.
///
/// A withdrawal is not a transaction: no gas, no nonce, no code runs. As in
/// the execution specs (and geth, which finalizes the state with EIP-161 on),
/// an account that is empty after its withdrawal does not exist afterwards:
/// a zero-amount withdrawal to a missing address creates nothing, and one to
/// an existing empty account removes it.
pub fn apply_withdrawals<DB: DatabaseRef>(
    state: &DB,
    withdrawals: &[Withdrawal],
) -> Result<StateDiff, DB::Error> {
    let mut accounts: BTreeMap<_, AccountDiff> = BTreeMap::new();
    for withdrawal in withdrawals {
        let change = match accounts.entry(withdrawal.address) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => {
                let before =
                    state.basic_ref(withdrawal.address)?.map(|info| BasicAccount::from_info(&info));
                entry.insert(AccountDiff { before, after: before, ..AccountDiff::default() })
            }
        };
        let mut account = change.after.unwrap_or(BasicAccount::with_balance(U256::ZERO));
        account.balance = account.balance.saturating_add(withdrawal.amount_wei());
        if account.is_empty() {
            change.after = None;
            // Leaving the state takes the account's storage with it.
            change.storage_cleared = change.before.is_some();
        } else {
            change.after = Some(account);
        }
    }
    accounts.retain(|_, change| change.before != change.after || change.storage_cleared);
    Ok(StateDiff { accounts, code: BTreeMap::new() })
}
