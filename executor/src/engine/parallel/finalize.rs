//! Finalization: the block's results and state diff from the last
//! incarnation of every transaction, in order.
//!
//! The block gas-limit rule and the invalid-transaction policy are applied
//! here, in order, exactly as the sequential engine does. Each included
//! transaction's changes are then committed in order into [`BlockState`]
//! overlays, the same type the sequential engine commits into, so the diff
//! (before/after values, wiped storage, the set of accounts) is built by the
//! same code. Accounts are independent in a diff, so the addresses are split
//! into shards, one overlay and one thread each. Lazy credits (beneficiary fees the transaction
//! did not observe, fast-path transfers) are resolved here against the
//! overlay's running balance.

use super::execute::{Changes, Outcome, TxOutput, computed, touched};
use crate::engine::BlockGas;
use crate::{
    InvalidTxPolicy,
    engine::{EngineError, EngineOutput, ExecutionEnv, TxResult, sequential::skip},
    state::{BlockState, StateDiff},
    tx::RecoveredTx,
};
use alloy_primitives::{Address, U256};
use rayon::{ThreadPool, prelude::*};
use revm::{Database, DatabaseRef, state::Account};

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

/// Builds the engine output from each transaction's final output, using
/// `pool`'s threads: the diff is built per address, so each thread commits,
/// in block order, the changes to the addresses of its shard.
pub(crate) fn finalize<DB: DatabaseRef + Sync>(
    env: &ExecutionEnv,
    base: &DB,
    transactions: &[RecoveredTx],
    outputs: Vec<TxOutput>,
    policy: InvalidTxPolicy,
    pool: &ThreadPool,
) -> Result<EngineOutput, Fallback<DB::Error>> {
    let mut gas = BlockGas::new(env.block.gas_limit);
    let mut results = Vec::with_capacity(outputs.len());
    let mut included = Vec::with_capacity(outputs.len());
    for (index, (tx, output)) in transactions.iter().zip(outputs).enumerate() {
        if !gas.admits(tx) {
            results.push(skip(policy, index, BlockGas::deferred())?);
            continue;
        }
        match output.outcome {
            Outcome::Invalid(reason) => results.push(skip(policy, index, reason)?),
            Outcome::Executed(executed, changes) => {
                gas.charge(executed.gas_used);
                results.push(TxResult::Executed(executed));
                included.push(changes);
            }
        }
    }

    let shards = pool.current_num_threads().max(1);
    let diffs: Vec<Result<StateDiff, Fallback<DB::Error>>> = pool.install(|| {
        (0..shards)
            .into_par_iter()
            .map(|shard| shard_diff(env, base, &included, shard, shards))
            .collect()
    });
    let mut diff = StateDiff::default();
    for part in diffs {
        let part = part?;
        diff.accounts.extend(part.accounts);
        diff.code.extend(part.code);
    }
    Ok(EngineOutput { results, diff })
}

fn shard_of(address: &Address, shards: usize) -> usize {
    let b = address.0;
    (b[19] as usize ^ (b[18] as usize) << 3 ^ (b[0] as usize) << 5) % shards
}

/// The diff of the addresses of one shard: every included transaction's
/// changes to them, committed in order into a [`BlockState`].
fn shard_diff<DB: DatabaseRef>(
    env: &ExecutionEnv,
    base: &DB,
    included: &[Box<Changes>],
    shard: usize,
    shards: usize,
) -> Result<StateDiff, Fallback<DB::Error>> {
    let mine = |address: &Address| shard_of(address, shards) == shard;
    let beneficiary = env.block.beneficiary;
    let mut overlay = BlockState::new(base);
    for changes in included {
        match &**changes {
            Changes::Evm { state, owed_reward } => {
                for (address, account) in state {
                    if mine(address) {
                        overlay.commit_account(*address, account);
                    }
                }
                if let Some(reward) = owed_reward
                    && mine(&beneficiary)
                {
                    let current = overlay.basic(beneficiary).map_err(EngineError::Database)?;
                    overlay.commit_account(beneficiary, &reward_account(current, *reward));
                }
            }
            Changes::Transfer(plain) => {
                if mine(&plain.sender) {
                    overlay.commit_account(plain.sender, &computed(plain.sender_after));
                }
                if mine(&plain.to) {
                    let current = overlay.basic(plain.to).map_err(EngineError::Database)?;
                    let Some(recipient) = touched(current, plain.value) else {
                        return Err(Fallback::Sequential);
                    };
                    overlay.commit_account(plain.to, &recipient);
                }
                if plain.sender != beneficiary && mine(&beneficiary) {
                    let current = overlay.basic(beneficiary).map_err(EngineError::Database)?;
                    overlay.commit_account(beneficiary, &reward_account(current, plain.reward));
                }
            }
        }
    }
    overlay.into_diff().map_err(|e| Fallback::Error(EngineError::Database(e)))
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
