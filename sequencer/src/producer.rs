//! The block producer: every block time, takes pending transactions in
//! arrival order, executes them into the next block and commits block,
//! receipts, state and mempool status in one database transaction.

use crate::{
    candidates::{self, Candidates},
    chain_view::ChainView,
    leader::Leadership,
    metrics::NodeMetrics,
};
use alloy_consensus::Header;
use alloy_primitives::{Address, B256};
use rollup_executor::{
    BlockEnvironment, ChainConfig, Engine, ExecutedBlock, InvalidTxPolicy, MemoryState,
    ParentBlock, RecoveredTx,
    block::{SkipReason, SkippedTx},
    execute_block,
};
use rollup_store::{Store, StoreError};
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

/// How often the leader checks that its lock's session is alive.
const LEADERSHIP_CHECK: Duration = Duration::from_secs(1);

/// Errors of block production.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProducerError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Execution failed for a reason that is not a transaction's fault.
    #[error("execution: {0}")]
    Execution(String),
    /// `--verify-executor`: the two engines disagreed on a block (fatal:
    /// the producer stops).
    #[error("executors disagree on block {number}: {what} differs")]
    ExecutorMismatch {
        /// The block number.
        number: u64,
        /// The first part that differs.
        what: &'static str,
    },
}

/// How the producer executes blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecutorOptions {
    /// The engine blocks are built with.
    pub engine: Engine,
    /// Also execute every block with the other engine and stop producing on
    /// any difference.
    pub verify: bool,
}

impl Default for ExecutorOptions {
    /// The parallel engine on every core, without verification.
    fn default() -> Self {
        Self { engine: Engine::parallel(0), verify: false }
    }
}

/// The first part of two executions of the same block that differs.
fn first_difference(a: &ExecutedBlock, b: &ExecutedBlock) -> Option<&'static str> {
    if a.header != b.header {
        Some("header")
    } else if a.receipts != b.receipts {
        Some("receipts")
    } else if a.outcomes != b.outcomes {
        Some("outcomes")
    } else if a.skipped != b.skipped {
        Some("skipped transactions")
    } else if a.diff != b.diff {
        Some("state diff")
    } else {
        None
    }
}

/// Produces blocks; owns its copy of the head state.
#[derive(Debug)]
pub struct BlockProducer {
    config: ChainConfig,
    store: Store,
    view: ChainView,
    state: MemoryState,
    head: Header,
    head_hash: B256,
    metrics: NodeMetrics,
    executor: ExecutorOptions,
    /// False from applying a block to `state` until its commit succeeds: a
    /// state that may be ahead of `head` is reloaded before any other use.
    state_matches_head: bool,
    last_snapshot: Instant,
    /// When the pending gauge was last set from a full count.
    last_pending_count: Option<Instant>,
}

/// How often the leader stores a state snapshot (and always at shutdown).
const SNAPSHOT_INTERVAL: Duration = Duration::from_secs(600);

/// How often a backlog (more pending than one read takes) is counted for
/// the pending gauge. Counting walks every pending row (4 ms per block with
/// 20,000 pending): worth it for a gauge once a second, not on every block.
const PENDING_COUNT_INTERVAL: Duration = Duration::from_secs(1);

impl BlockProducer {
    /// Loads the head from the store.
    pub async fn new(
        config: ChainConfig,
        store: Store,
        view: ChainView,
        metrics: NodeMetrics,
    ) -> Result<Self, ProducerError> {
        let (state, head, head_hash) = store.load_head_state().await?;
        Ok(Self {
            config,
            store,
            view,
            state,
            head,
            head_hash,
            metrics,
            executor: ExecutorOptions::default(),
            state_matches_head: true,
            last_snapshot: Instant::now(),
            last_pending_count: None,
        })
    }

    /// Sets the execution engine and verification mode.
    pub fn with_executor(mut self, executor: ExecutorOptions) -> Self {
        self.executor = executor;
        self
    }

    /// Produces blocks while this process leads (see [`Leadership`]), until
    /// `shutdown` fires; stands by while another producer leads.
    pub async fn run(mut self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let block_time = Duration::from_millis(self.config.block_time_ms);
        loop {
            let mut leadership = tokio::select! {
                leadership = Leadership::acquire(&self.store, Duration::from_secs(1)) => leadership,
                _ = shutdown.wait_for(|stop| *stop) => return,
            };
            tracing::info!("leading block production");
            self.metrics.is_leader.set(1);
            // Another leader may have moved the chain since we loaded it.
            if let Err(error) = self.reload().await {
                tracing::warn!(%error, "cannot load the head state; giving up leadership");
                self.metrics.is_leader.set(0);
                continue;
            }
            let mut ticker = tokio::time::interval(block_time);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last_check = Instant::now();
            loop {
                let stopping = tokio::select! {
                    _ = ticker.tick() => false,
                    _ = shutdown.wait_for(|stop| *stop) => true,
                };
                if stopping {
                    return self.stand_down().await;
                }
                if last_check.elapsed() >= LEADERSHIP_CHECK && !leadership.still_held().await {
                    tracing::warn!("lost the producer lock's database session; standing by");
                    break;
                }
                last_check = Instant::now();
                // Cancelling mid-commit is safe: an unfinished database
                // transaction rolls back, and the process is stopping anyway.
                let result = tokio::select! {
                    result = self.produce() => result,
                    _ = shutdown.wait_for(|stop| *stop) => return,
                };
                if let Err(error @ ProducerError::ExecutorMismatch { .. }) = &result {
                    tracing::error!(%error, "stopping block production");
                    self.metrics.is_leader.set(0);
                    return;
                }
                if let Err(error) = result {
                    tracing::warn!(%error, "block production failed; reloading head state");
                    let reloaded = tokio::select! {
                        reloaded = self.reload() => reloaded,
                        _ = shutdown.wait_for(|stop| *stop) => return,
                    };
                    if let Err(error) = reloaded {
                        tracing::error!(%error, "cannot reload the head state");
                    }
                }
            }
            self.metrics.is_leader.set(0);
        }
    }

    async fn reload(&mut self) -> Result<(), ProducerError> {
        if self.state_matches_head && self.store.head().await? == (self.head.number, self.head_hash)
        {
            return Ok(());
        }
        let (state, head, head_hash) = self.store.load_head_state().await?;
        (self.state, self.head, self.head_hash) = (state, head, head_hash);
        self.state_matches_head = true;
        Ok(())
    }

    /// Stops leading at shutdown: saves a state snapshot so the next start
    /// loads the state without rehashing it.
    async fn stand_down(&mut self) {
        if self.state_matches_head {
            self.save_snapshot().await;
        }
        self.metrics.is_leader.set(0);
    }

    /// Stores a snapshot of the head state (see `Store::save_state_snapshot`).
    async fn save_snapshot(&mut self) {
        let started = Instant::now();
        let state = &mut self.state;
        let snapshot = off_the_runtime(|| state.encode_snapshot());
        let encoded_at = started.elapsed();
        match self.store.save_state_snapshot(self.head.number, &snapshot).await {
            Ok(()) => tracing::info!(
                number = self.head.number,
                bytes = snapshot.len(),
                encode_ms = encoded_at.as_millis() as u64,
                total_ms = started.elapsed().as_millis() as u64,
                "saved a state snapshot"
            ),
            Err(error) => tracing::warn!(%error, "cannot save a state snapshot"),
        }
        self.last_snapshot = Instant::now();
    }

    /// Builds and commits one block from the pending transactions, if any.
    /// Returns the new block number.
    pub async fn produce(&mut self) -> Result<Option<u64>, ProducerError> {
        if self.store.sequencing_paused().await? {
            return Ok(None);
        }
        if !self.state_matches_head {
            self.reload().await?;
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let timestamp = self.config.next_timestamp(self.head.timestamp, now);
        let parent = ParentBlock { header: &self.head, hash: self.head_hash };
        let base_fee = BlockEnvironment::for_chain(&self.config, parent, timestamp).base_fee;
        let read = candidates::read(&self.store, &self.config, &self.state, base_fee).await?;
        if read.exhausted {
            self.metrics.mempool_pending.set(read.read as i64);
            self.last_pending_count = None;
        } else if self.last_pending_count.is_none_or(|at| at.elapsed() >= PENDING_COUNT_INTERVAL) {
            self.metrics.mempool_pending.set(self.store.pending_count().await?);
            self.last_pending_count = Some(Instant::now());
        }
        let Candidates { runnable: candidates, undecodable, waiting, .. } = read;
        if candidates.is_empty() && undecodable.is_empty() {
            if waiting > 0 {
                tracing::debug!(waiting, "no pending transaction can run yet");
            }
            return Ok(None);
        }
        let started = std::time::Instant::now();
        let execute = |engine: Engine, candidates: Vec<RecoveredTx>| {
            execute_block(
                &self.config,
                engine,
                &self.state,
                parent,
                timestamp,
                candidates,
                InvalidTxPolicy::Skip,
            )
            .map_err(|e| ProducerError::Execution(e.to_string()))
        };
        let check = self.executor.verify.then(|| candidates.clone());
        let executed = off_the_runtime(|| execute(self.executor.engine, candidates))?;
        if let Some(candidates) = check {
            let other = match self.executor.engine {
                Engine::Sequential => Engine::parallel_forced(0),
                _ => Engine::Sequential,
            };
            let again = off_the_runtime(|| execute(other, candidates))?;
            if let Some(what) = first_difference(&executed, &again) {
                return Err(ProducerError::ExecutorMismatch {
                    number: executed.header.number,
                    what,
                });
            }
        }
        let mut dropped: Vec<SkippedTx> = executed
            .skipped
            .iter()
            .filter(|s| matches!(s.reason, SkipReason::Invalid(_)))
            .cloned()
            .collect();
        dropped.extend(undecodable);
        if executed.transactions.is_empty() {
            if !dropped.is_empty() {
                self.store.drop_transactions(&dropped).await?;
            }
            return Ok(None);
        }
        let executed_at = started.elapsed();
        self.state_matches_head = false;
        let state = &mut self.state;
        let root = off_the_runtime(|| {
            state.apply(&executed.diff);
            state.state_root()
        });
        let mut sealed = executed.seal(root);
        let rooted_at = started.elapsed();
        let senders: Vec<Address> = sealed.block.transactions.iter().map(|t| t.signer()).collect();
        if let Err(error) = self.store.commit_block(&sealed, &senders, &dropped).await {
            // The in-memory state already moved: the caller reloads it.
            return Err(error.into());
        }
        let number = sealed.block.header.number;
        self.state_matches_head = true;
        self.state.insert_block_hash(number, sealed.hash);
        self.head = sealed.block.header.clone();
        self.head_hash = sealed.hash;
        let diff = Arc::new(std::mem::take(&mut sealed.block.diff));
        self.view.advance(sealed.block.header.clone(), sealed.hash, diff);
        self.metrics.blocks_produced.inc();
        self.metrics.transactions_included.inc_by(sealed.block.transactions.len() as u64);
        self.metrics.head_block.set(number as i64);
        if self.last_snapshot.elapsed() >= SNAPSHOT_INTERVAL {
            self.save_snapshot().await;
        }
        tracing::info!(
            number,
            hash = %sealed.hash,
            txs = sealed.block.transactions.len(),
            gas = sealed.block.header.gas_used,
            dropped = dropped.len(),
            execute_ms = executed_at.as_millis() as u64,
            root_ms = (rooted_at - executed_at).as_millis() as u64,
            commit_ms = (started.elapsed() - rooted_at).as_millis() as u64,
            "block committed"
        );
        Ok(Some(number))
    }
}

/// Runs CPU-bound work (a block's execution, its state root, a snapshot)
/// without stalling the tasks queued on this runtime worker: on the
/// multi-threaded runtime the worker hands its queue to another thread for
/// the duration (`block_in_place`), so JSON-RPC intake keeps being served
/// while a block executes. On a current-thread runtime (some tests) it
/// just runs `f`.
fn off_the_runtime<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}
