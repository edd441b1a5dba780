//! The reference engine: plain revm, one transaction after another, each
//! committed into a [`BlockState`] overlay.

use super::{BlockGas, EngineError, EngineOutput, ExecutedTx, ExecutionEnv, TxResult};
use crate::{
    InvalidTxPolicy,
    block::SkipReason,
    state::BlockState,
    tx::{RecoveredTx, tx_env},
};
use revm::{
    DatabaseRef, ExecuteCommitEvm,
    context::result::{EVMError, InvalidTransaction},
};

/// Executes `transactions` in order on top of `state`.
pub fn execute<DB: DatabaseRef>(
    env: &ExecutionEnv,
    state: &DB,
    transactions: &[RecoveredTx],
    policy: InvalidTxPolicy,
) -> Result<EngineOutput, EngineError<DB::Error>> {
    let mut overlay = BlockState::new(state);
    let mut evm = env.evm(&mut overlay);

    let mut gas = BlockGas::new(env.block.gas_limit);
    let mut results = Vec::with_capacity(transactions.len());
    for (index, tx) in transactions.iter().enumerate() {
        if !gas.admits(tx) {
            results.push(skip(policy, index, BlockGas::deferred())?);
            continue;
        }
        let result = match evm.transact_commit(tx_env(tx)) {
            Ok(result) => result,
            Err(EVMError::Transaction(invalid)) => {
                results.push(skip(policy, index, classify(&invalid))?);
                continue;
            }
            Err(EVMError::Database(e)) => return Err(EngineError::Database(e)),
            Err(other) => return Err(EngineError::Evm(other.to_string())),
        };
        let gas_used = result.tx_gas_used();
        gas.charge(gas_used);
        results.push(TxResult::Executed(ExecutedTx {
            success: result.is_success(),
            gas_used,
            logs: result.logs().to_vec(),
            contract_address: result.created_address(),
        }));
    }
    drop(evm);
    let diff = overlay.into_diff().map_err(EngineError::Database)?;
    Ok(EngineOutput { results, diff })
}

/// Applies the invalid-transaction policy to one left-out transaction.
pub(crate) fn skip<E>(
    policy: InvalidTxPolicy,
    index: usize,
    reason: SkipReason,
) -> Result<TxResult, EngineError<E>> {
    match policy {
        InvalidTxPolicy::Skip => Ok(TxResult::Skipped(reason)),
        InvalidTxPolicy::Reject => {
            let (SkipReason::Deferred(reason) | SkipReason::Invalid(reason)) = reason;
            Err(EngineError::InvalidTransaction { index, reason })
        }
    }
}

/// Sorts an invalid transaction into "may become valid" and "never valid".
pub(crate) fn classify(invalid: &InvalidTransaction) -> SkipReason {
    match invalid {
        InvalidTransaction::NonceTooHigh { .. } | InvalidTransaction::GasPriceLessThanBasefee => {
            SkipReason::Deferred(invalid.to_string())
        }
        InvalidTransaction::NonceTooLow { .. } => SkipReason::Invalid("nonce too low".into()),
        InvalidTransaction::LackOfFundForMaxFee { .. } => {
            SkipReason::Invalid("insufficient funds for gas * price + value".into())
        }
        other => SkipReason::Invalid(other.to_string()),
    }
}
