//! Transaction engines: run a block's ordered transactions against a
//! read-only state snapshot.
//!
//! An engine takes the execution environment (config and block fields), a
//! [`DatabaseRef`] snapshot and the ordered, sender-recovered transactions,
//! and returns one [`TxResult`] per transaction plus the block's
//! [`StateDiff`]. Every engine must produce exactly what [`sequential`] does:
//! it is the reference the others are tested against.
//!
//! Block-level semantics that are not transactions (system calls, withdrawals,
//! the header) live in [`crate::block`].
//!
//! Block gas limit rule (shared by every engine): a block ends at the first
//! transaction whose gas limit does not fit in what is left of the block gas
//! limit; it and every later transaction are [`SkipReason::Deferred`]. This
//! keeps a transaction's inclusion independent of what later ones do, which
//! lets a parallel engine decide inclusion in order after execution.

pub mod parallel;
pub mod sequential;

use crate::{block::SkipReason, state::StateDiff, tx::RecoveredTx};
use alloy_primitives::{Address, Log};
use revm::{
    DatabaseRef,
    context::{BlockEnv, CfgEnv},
};

/// Which engine runs a block's transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Engine {
    /// Plain revm, one transaction after another: the reference.
    #[default]
    Sequential,
    /// Block-STM on a rayon pool (see [`parallel`]); output identical to
    /// [`Engine::Sequential`].
    Parallel {
        /// Worker threads (0: one per available core).
        threads: usize,
        /// Blocks with fewer transactions run sequentially, where parallelism
        /// cannot pay; so do blocks found too contended while running. 0
        /// forces Block-STM for every block to the end (conformance tests).
        min_txs: usize,
    },
}

impl Engine {
    /// The parallel engine with `threads` workers (0: one per core) and the
    /// default sequential fallback for blocks under
    /// [`Engine::DEFAULT_MIN_PARALLEL_TXS`] transactions.
    pub const fn parallel(threads: usize) -> Self {
        Self::Parallel { threads, min_txs: Self::DEFAULT_MIN_PARALLEL_TXS }
    }

    /// The parallel engine even for one-transaction blocks.
    pub const fn parallel_forced(threads: usize) -> Self {
        Self::Parallel { threads, min_txs: 0 }
    }

    /// Below this many transactions a block runs sequentially by default.
    pub const DEFAULT_MIN_PARALLEL_TXS: usize = 4;

    /// Runs `transactions` in order on top of `state`.
    pub fn execute<DB: DatabaseRef + Sync>(
        self,
        env: &ExecutionEnv,
        state: &DB,
        transactions: &[RecoveredTx],
        policy: crate::InvalidTxPolicy,
    ) -> Result<EngineOutput, EngineError<DB::Error>> {
        match self {
            Self::Sequential => sequential::execute(env, state, transactions, policy),
            Self::Parallel { min_txs, .. } if transactions.len() < min_txs => {
                sequential::execute(env, state, transactions, policy)
            }
            Self::Parallel { threads, min_txs } => {
                parallel::execute(env, state, transactions, policy, threads, min_txs > 0)
            }
        }
    }
}

/// The block gas-limit rule of the module docs: once one transaction's gas
/// limit does not fit in what is left, it and every later one are deferred.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BlockGas {
    limit: u64,
    used: u64,
    full: bool,
}

impl BlockGas {
    /// An empty block with gas limit `limit`.
    pub(crate) const fn new(limit: u64) -> Self {
        Self { limit, used: 0, full: false }
    }

    /// Whether `tx` may still run; `false` for it and every later one once
    /// the block is full.
    pub(crate) fn admits(&mut self, tx: &RecoveredTx) -> bool {
        let tx_gas_limit = alloy_consensus::Transaction::gas_limit(tx.inner());
        if self.full || self.used.saturating_add(tx_gas_limit) > self.limit {
            self.full = true;
        }
        !self.full
    }

    /// Records the gas an included transaction used.
    pub(crate) const fn charge(&mut self, gas_used: u64) {
        self.used += gas_used;
    }

    /// Why a transaction the block has no room for is left out.
    pub(crate) fn deferred() -> SkipReason {
        SkipReason::Deferred("block gas limit reached".into())
    }
}

/// The environment every transaction of a block executes under.
#[derive(Debug, Clone)]
pub struct ExecutionEnv {
    /// Spec (fork) and chain id.
    pub cfg: CfgEnv,
    /// Block number, timestamp, beneficiary, base fee, gas limit, ...
    pub block: BlockEnv,
}

impl ExecutionEnv {
    /// A mainnet EVM for this block over `db`.
    pub fn evm<DB: revm::Database>(
        &self,
        db: DB,
    ) -> revm::handler::MainnetEvm<revm::handler::MainnetContext<DB>> {
        use revm::{Context, MainBuilder, MainContext};
        Context::mainnet()
            .with_cfg(self.cfg.clone())
            .with_block(self.block.clone())
            .with_db(db)
            .build_mainnet()
    }
}

/// What happened to one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxResult {
    /// Included in the block (successful or reverted).
    Executed(ExecutedTx),
    /// Left out (only with [`crate::InvalidTxPolicy::Skip`]).
    Skipped(SkipReason),
}

/// An included transaction's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutedTx {
    /// Whether it succeeded (false: reverted or halted).
    pub success: bool,
    /// Gas it used (after refunds).
    pub gas_used: u64,
    /// Logs it emitted (empty unless it succeeded).
    pub logs: Vec<Log>,
    /// The contract it created, if any.
    pub contract_address: Option<Address>,
}

/// What an engine returns for a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineOutput {
    /// One result per input transaction, in order.
    pub results: Vec<TxResult>,
    /// Everything the block's transactions changed, against the snapshot.
    pub diff: StateDiff,
}

/// Errors that stop an engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError<DbError> {
    /// The state snapshot failed.
    #[error("state read failed: {0}")]
    Database(DbError),
    /// A transaction is invalid and the policy is reject.
    #[error("transaction {index} is invalid: {reason}")]
    InvalidTransaction {
        /// Position in the block.
        index: usize,
        /// Why.
        reason: String,
    },
    /// revm failed for a reason that is not the transaction's fault.
    #[error("evm failure: {0}")]
    Evm(String),
}
