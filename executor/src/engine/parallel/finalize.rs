//! Finalization: the block's results and state diff from the last
//! incarnation of every transaction, in order.
//!
//! The block gas-limit rule and the invalid-transaction policy are applied
//! here, in order, exactly as the sequential engine does. Each included
//! transaction's changes are then committed in order into a
//! [`BlockState`] overlay, the same one the sequential engine commits into,
//! so the diff (before/after values, wiped storage, the set of accounts) is
//! built by the same code. Lazy credits (beneficiary fees the transaction
//! did not observe, fast-path transfers) are resolved here against the
//! overlay's running balance.

use super::execute::{Changes, Outcome, TxOutput, computed, touched};
use crate::{
    InvalidTxPolicy,
    block::SkipReason,
    engine::{EngineError, EngineOutput, ExecutionEnv, TxResult, sequential::skip},
    state::BlockState,
    tx::RecoveredTx,
};
use alloy_primitives::U256;
use revm::{Database, DatabaseCommit, DatabaseRef, primitives::AddressMap, state::Account};

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

/// Builds the engine output from each transaction's final output.
pub(crate) fn finalize<DB: DatabaseRef>(
    env: &ExecutionEnv,
    base: &DB,
    transactions: &[RecoveredTx],
    outputs: Vec<TxOutput>,
    policy: InvalidTxPolicy,
) -> Result<EngineOutput, Fallback<DB::Error>> {
    let mut overlay = BlockState::new(base);
    let beneficiary = env.block.beneficiary;
    let gas_limit = env.block.gas_limit;
    let mut results = Vec::with_capacity(outputs.len());
    let mut cumulative_gas = 0u64;
    let mut block_full = false;
    for (index, (tx, output)) in transactions.iter().zip(outputs).enumerate() {
        let tx_gas_limit = alloy_consensus::Transaction::gas_limit(tx.inner());
        if block_full || cumulative_gas.saturating_add(tx_gas_limit) > gas_limit {
            block_full = true;
            results.push(skip(
                policy,
                index,
                SkipReason::Deferred("block gas limit reached".into()),
            )?);
            continue;
        }
        let (executed, changes) = match output.outcome {
            Outcome::Invalid(reason) => {
                results.push(skip(policy, index, reason)?);
                continue;
            }
            Outcome::Executed(executed, changes) => (executed, changes),
        };
        cumulative_gas += executed.gas_used;
        let state = match *changes {
            Changes::Evm { mut state, owed_reward } => {
                if let Some(reward) = owed_reward {
                    let current = overlay.basic(beneficiary).map_err(EngineError::Database)?;
                    state.insert(beneficiary, reward_account(current, reward));
                }
                state
            }
            Changes::Transfer(plain) => {
                let mut state = AddressMap::<Account>::default();
                state.insert(plain.sender, computed(plain.sender_after));
                let current = overlay.basic(plain.to).map_err(EngineError::Database)?;
                let Some(recipient) = touched(current, plain.value) else {
                    return Err(Fallback::Sequential);
                };
                state.insert(plain.to, recipient);
                if plain.sender != beneficiary {
                    let current = overlay.basic(beneficiary).map_err(EngineError::Database)?;
                    state.insert(beneficiary, reward_account(current, plain.reward));
                }
                state
            }
        };
        overlay.commit(state);
        results.push(TxResult::Executed(executed));
    }
    let diff = overlay.into_diff().map_err(EngineError::Database)?;
    Ok(EngineOutput { results, diff })
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
