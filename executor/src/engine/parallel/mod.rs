//! The parallel engine: Block-STM (Gelashvili et al., 2022) on revm and rayon.
//!
//! Transactions execute optimistically on a rayon pool, each incarnation
//! against a [`view::TxView`] that reads the snapshot through the
//! [`memory::MvMemory`] (multi-version memory) and records its reads. The
//! [`scheduler::Scheduler`] hands out execution and validation tasks; a
//! validation that finds a changed read aborts the incarnation (its writes
//! become estimates) and schedules the next one. When every transaction is
//! executed and validated, [`finalize`] applies the block gas-limit rule and
//! builds the results and the diff in order, exactly as the sequential
//! engine does.
//!
//! Modules, one job each:
//! - [`memory`]: locations, versions, estimates, lazy balance credits;
//! - [`view`]: the recording `Database` revm executes against, validation;
//! - [`scheduler`]: the collaborative scheduler;
//! - [`handler`]: the revm handler that defers the beneficiary's fee;
//! - [`transfer`]: the plain-transfer fast path;
//! - [`execute`]: one incarnation, and its write set;
//! - [`finalize`]: results and diff, in order.
//!
//! Conflicts that are not real are avoided: the beneficiary's fee and the
//! credit of a plain transfer are lazy (commutative) balance additions, so
//! they only conflict with a transaction that reads that balance.
//!
//! Whenever something fails that the sequential engine reports (a snapshot
//! error, an EVM failure) or a fast-path assumption does not hold at
//! finalization (a credit overflows), the block is executed again by the
//! sequential engine, which returns exactly what it returns.

mod execute;
mod finalize;
mod handler;
mod memory;
mod scheduler;
mod transfer;
mod view;

use super::{EngineError, EngineOutput, ExecutionEnv, sequential};
use crate::{InvalidTxPolicy, tx::RecoveredTx};
use execute::{ExecContext, Execution, TxOutput, WorkerEvm};
use memory::{Location, MvMemory, Write};
use rayon::{ThreadPool, ThreadPoolBuilder};
use revm::{
    DatabaseRef,
    precompile::{PrecompileSpecId, Precompiles},
};
use scheduler::{Scheduler, Task, Version};
use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
};

/// Index of a transaction in the block.
pub(crate) type TxIdx = usize;

/// Executes `transactions` with Block-STM on `threads` workers (0: one per
/// available core). With `adaptive`, a block whose conflict rate shows that
/// Block-STM would re-execute most transactions (a dependent chain) is
/// executed sequentially instead, and so is every block when there is only
/// one worker (nothing runs alongside, so Block-STM's bookkeeping cannot
/// pay: 1.15x the reference's instructions on ERC-20); without it every
/// block goes through Block-STM to the end.
pub fn execute<DB: DatabaseRef + Sync>(
    env: &ExecutionEnv,
    state: &DB,
    transactions: &[RecoveredTx],
    policy: InvalidTxPolicy,
    threads: usize,
    adaptive: bool,
) -> Result<EngineOutput, EngineError<DB::Error>> {
    let pool = pool(threads);
    let workers = pool.current_num_threads();
    if adaptive && workers < 2 {
        return sequential::execute(env, state, transactions, policy);
    }
    let memory = MvMemory::new(transactions.len(), workers, env.block.beneficiary);
    let code = view::NewCode::default();
    let spec = PrecompileSpecId::from_spec_id(env.cfg.spec);
    let ctx = ExecContext {
        env,
        base: state,
        memory: &memory,
        code: &code,
        precompiles: Precompiles::new(spec),
    };
    let run = Run {
        ctx,
        transactions,
        scheduler: Scheduler::new(transactions.len()),
        outputs: (0..transactions.len()).map(|_| Mutex::new(None)).collect(),
        fatal: AtomicBool::new(false),
        contended: AtomicBool::new(false),
        scheduler_workers: if adaptive { workers } else { 1 },
        executions: AtomicUsize::new(0),
        conflicts: AtomicUsize::new(0),
        close_dependencies: AtomicUsize::new(0),
    };
    pool.broadcast(|_| run.work());
    if run.fatal.load(Ordering::Acquire) {
        tracing::debug!("parallel execution hit a fatal error; running the block sequentially");
        return sequential::execute(env, state, transactions, policy);
    }
    if run.contended.load(Ordering::Acquire) {
        tracing::debug!("block too contended for parallel execution; running it sequentially");
        return sequential::execute(env, state, transactions, policy);
    }
    let Run { outputs, .. } = run;
    let outputs: Option<Vec<TxOutput>> =
        outputs.into_iter().map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner())).collect();
    let Some(outputs) = outputs else {
        return Err(EngineError::Evm("parallel engine left a transaction unexecuted".into()));
    };
    let finalized = finalize::finalize(env, state, transactions, outputs, &memory, policy, &pool);
    // The multi-version memory is freed on the pool, in the background,
    // once finalization no longer needs every worker.
    pool.spawn(move || drop((memory, code)));
    match finalized {
        Ok(output) => Ok(output),
        Err(finalize::Fallback::Error(e)) => Err(e),
        Err(finalize::Fallback::Sequential) => {
            tracing::debug!("a lazy credit overflowed; running the block sequentially");
            sequential::execute(env, state, transactions, policy)
        }
    }
}

/// Stack of each worker thread. Deep call chains (1,024 nested calls) overflow
/// the 2 MiB default, most of all in unoptimized builds; the size is
/// reserved virtual memory, only the pages used are backed.
const WORKER_STACK_BYTES: usize = 64 * 1024 * 1024;

/// The rayon pool for a number of workers (built once per size).
fn pool(threads: usize) -> Arc<ThreadPool> {
    static POOLS: OnceLock<Mutex<HashMap<usize, Arc<ThreadPool>>>> = OnceLock::new();
    let threads = if threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        threads
    };
    let mut pools = POOLS.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    pools
        .entry(threads)
        .or_insert_with(|| {
            Arc::new(
                ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .thread_name(|i| format!("block-stm-{i}"))
                    .stack_size(WORKER_STACK_BYTES)
                    .build()
                    .expect("building a rayon pool"),
            )
        })
        .clone()
}

/// The shared state of one block's run.
struct Run<'a, DB> {
    ctx: ExecContext<'a, DB>,
    transactions: &'a [RecoveredTx],
    scheduler: Scheduler,
    /// Each transaction's last incarnation's output.
    outputs: Vec<Mutex<Option<TxOutput>>>,
    fatal: AtomicBool,
    /// Worker threads (1 when the contention fallback is off).
    scheduler_workers: usize,
    /// Set when conflicts make parallel execution slower than sequential.
    contended: AtomicBool,
    /// Incarnations executed so far.
    executions: AtomicUsize,
    /// Aborts and dependency waits so far.
    conflicts: AtomicUsize,
    /// Executions that read a write of one of the `workers` transactions
    /// just before.
    close_dependencies: AtomicUsize,
}

/// Windows of executions over which a block's contention is judged.
const JUDGED_WINDOWS: usize = 4;

/// Executions seen before the block's contention is judged: a sixteenth of
/// the block, at least 16 and at most 64 (a block found contended has
/// wasted at most that much work).
fn contention_window(len: usize) -> usize {
    (len / 16).clamp(16, 64)
}

impl<DB> Run<'_, DB> {
    /// Counts a conflict (an abort or a dependency wait).
    fn conflict(&self) {
        if self.scheduler_workers < 2 {
            return;
        }
        self.conflicts.fetch_add(1, Ordering::Relaxed);
        self.judge();
    }

    /// Counts a finished execution of `tx` that read a write of
    /// `depends_on`.
    fn executed(&self, tx: TxIdx, depends_on: Option<TxIdx>) {
        if self.scheduler_workers < 2 {
            return;
        }
        self.executions.fetch_add(1, Ordering::Relaxed);
        // A transaction that reads what one of the previous `workers` ones
        // wrote cannot run alongside them.
        if depends_on.is_some_and(|writer| tx - writer <= self.scheduler_workers) {
            self.close_dependencies.fetch_add(1, Ordering::Relaxed);
            self.judge();
        }
    }

    /// Stops the parallel run when the block is too contended for it to beat
    /// sequential execution: three quarters of the transactions depend on
    /// one just before (a dependent chain), or conflicts re-execute 40% of
    /// them. The block is then executed sequentially instead. It is judged
    /// only over its first [`JUDGED_WINDOWS`] windows of executions, so
    /// little is ever wasted: a block that ran further finishes in
    /// parallel. (Judged throughout, with the chain rule at one half, a
    /// block with every other transaction to one hot account hovered at
    /// the threshold and was sometimes handed over half-way through, at
    /// 1.5x sequential's time; run to the end in parallel, it takes 0.8x.)
    fn judge(&self) {
        let executions = self.executions.load(Ordering::Relaxed);
        let window = contention_window(self.transactions.len());
        if executions < window || executions > window * JUDGED_WINDOWS {
            return;
        }
        let close = self.close_dependencies.load(Ordering::Relaxed);
        let conflicts = self.conflicts.load(Ordering::Relaxed);
        if close * 4 > executions * 3 || conflicts * 5 > executions * 2 {
            self.contended.store(true, Ordering::Release);
            self.scheduler.halt();
        }
    }
}

impl<'a, DB: DatabaseRef + Sync> Run<'a, DB> {
    /// One worker's loop: take tasks until the block is done.
    fn work(&self) {
        let mut evm = None;
        let mut writes = Vec::new();
        let mut task = None;
        let mut idle = 0u32;
        while !self.scheduler.done() {
            task = match task.take().or_else(|| self.scheduler.next_task()) {
                Some(Task::Execute(version)) => {
                    let evm = evm.get_or_insert_with(|| self.ctx.worker_evm());
                    self.execute(evm, &mut writes, version)
                }
                Some(Task::Validate(version)) => self.validate(version),
                None => {
                    idle += 1;
                    if idle < 64 {
                        std::hint::spin_loop();
                    } else {
                        std::thread::yield_now();
                    }
                    continue;
                }
            };
            idle = 0;
        }
    }

    fn execute(
        &self,
        evm: &mut WorkerEvm<'a, DB>,
        writes: &mut Vec<(Location, Write)>,
        version: Version,
    ) -> Option<Task> {
        loop {
            let tx_env = crate::tx::tx_env(&self.transactions[version.tx]);
            match self.ctx.execute(evm, version.tx, tx_env, writes) {
                Execution::Blocked(blocking) => {
                    if self.scheduler.add_dependency(version.tx, blocking) {
                        self.conflict();
                        return None;
                    }
                }
                Execution::Fatal => {
                    self.fatal.store(true, Ordering::Release);
                    self.scheduler.halt();
                    return None;
                }
                Execution::Done(output) => {
                    self.executed(version.tx, output.depends_on);
                    let mut slot =
                        self.outputs[version.tx].lock().unwrap_or_else(|e| e.into_inner());
                    let previous = slot.as_ref().map_or(&[][..], |o| &o.writes[..]);
                    let new =
                        self.ctx.memory.record(version.tx, &output.writes, previous, &output.reads);
                    let previous = slot.replace(output);
                    drop(slot);
                    drop(previous);
                    return self.scheduler.finish_execution(version, |end| {
                        !new.is_empty() && self.read_by_any(version.tx + 1..end, &new)
                    });
                }
            }
        }
    }

    /// Whether any transaction of `txs` that has an output read one of
    /// `locations` (in that output's read set).
    fn read_by_any(&self, txs: std::ops::Range<TxIdx>, locations: &[Location]) -> bool {
        txs.into_iter().any(|tx| {
            let output = self.outputs[tx].lock().unwrap_or_else(|e| e.into_inner());
            output.as_ref().is_some_and(|o| view::reads_any(&o.reads, locations))
        })
    }

    fn validate(&self, version: Version) -> Option<Task> {
        let output = self.outputs[version.tx].lock().unwrap_or_else(|e| e.into_inner());
        let valid = output
            .as_ref()
            .is_some_and(|o| view::validate(self.ctx.memory, self.ctx.base, version.tx, &o.reads));
        let aborted = !valid && self.scheduler.try_validation_abort(version);
        if aborted && let Some(o) = output.as_ref() {
            self.ctx.memory.mark_estimates(version.tx, &o.writes);
        }
        drop(output);
        if aborted {
            self.conflict();
        }
        self.scheduler.finish_validation(version.tx, aborted)
    }
}
