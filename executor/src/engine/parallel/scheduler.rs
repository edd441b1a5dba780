//! The collaborative Block-STM scheduler (Gelashvili et al., algorithm 4).
//!
//! Two shared indices hand out work: `execution_idx` (the next transaction to
//! execute) and `validation_idx` (the next one to validate); a worker takes a
//! validation task whenever one is available below the execution frontier,
//! so validations run as early as possible. Each transaction has its own
//! small lock over `(incarnation, status)` and its own dependency list; the
//! indices and counters are atomics. Nothing on the hot path is global.
//!
//! A worker that reads an [`Estimate`](super::memory::Entry::Estimate) of a
//! lower transaction registers a dependency and parks that transaction; the
//! blocking transaction resumes it when its re-execution finishes.

use super::TxIdx;
use std::sync::{
    Mutex, MutexGuard,
    atomic::{AtomicBool, AtomicUsize, Ordering},
};

/// An incarnation of a transaction: its index and how many times it was
/// started before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Version {
    /// Transaction index.
    pub(crate) tx: TxIdx,
    /// Incarnation number.
    pub(crate) incarnation: usize,
}

/// Work for a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Task {
    /// Execute this incarnation.
    Execute(Version),
    /// Validate this incarnation's read set.
    Validate(Version),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    ReadyToExecute,
    Executing,
    Executed,
    Aborting,
}

#[derive(Debug)]
struct TxStatus {
    incarnation: usize,
    status: Status,
}

/// One transaction's scheduling state, on its own cache line: workers busy
/// with neighbouring transactions do not contend for it.
#[derive(Debug)]
#[repr(align(64))]
struct TxSlot {
    status: Mutex<TxStatus>,
    dependencies: Mutex<Vec<TxIdx>>,
}

/// The shared scheduler of one block.
#[derive(Debug)]
pub(crate) struct Scheduler {
    len: usize,
    execution_idx: Padded<AtomicUsize>,
    validation_idx: Padded<AtomicUsize>,
    decrease_cnt: Padded<AtomicUsize>,
    num_active_tasks: Padded<AtomicUsize>,
    /// Polled by every idle worker: apart from the counters that change.
    done: Padded<AtomicBool>,
    txs: Vec<TxSlot>,
}

/// A value on its own cache line (the shared counters change on every
/// task; a worker reading one should not have to fetch the line again
/// because another changed).
#[derive(Debug, Default)]
#[repr(align(64))]
struct Padded<T>(T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Scheduler {
    /// A scheduler for `len` transactions.
    pub(crate) fn new(len: usize) -> Self {
        Self {
            len,
            execution_idx: Padded::default(),
            validation_idx: Padded::default(),
            decrease_cnt: Padded::default(),
            num_active_tasks: Padded::default(),
            done: Padded(AtomicBool::new(len == 0)),
            txs: (0..len)
                .map(|_| TxSlot {
                    status: Mutex::new(TxStatus { incarnation: 0, status: Status::ReadyToExecute }),
                    dependencies: Mutex::new(Vec::new()),
                })
                .collect(),
        }
    }

    /// Whether every transaction is executed and validated (or the run was
    /// halted).
    pub(crate) fn done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    /// Stops every worker (a fatal error).
    pub(crate) fn halt(&self) {
        self.done.store(true, Ordering::Release);
    }

    fn decrease_execution_idx(&self, target: TxIdx) {
        self.execution_idx.fetch_min(target, Ordering::SeqCst);
        self.decrease_cnt.fetch_add(1, Ordering::SeqCst);
    }

    fn decrease_validation_idx(&self, target: TxIdx) {
        self.validation_idx.fetch_min(target, Ordering::SeqCst);
        self.decrease_cnt.fetch_add(1, Ordering::SeqCst);
    }

    fn check_done(&self) {
        let observed = self.decrease_cnt.load(Ordering::SeqCst);
        let execution = self.execution_idx.load(Ordering::SeqCst);
        let validation = self.validation_idx.load(Ordering::SeqCst);
        if execution.min(validation) >= self.len
            && self.num_active_tasks.load(Ordering::SeqCst) == 0
            && observed == self.decrease_cnt.load(Ordering::SeqCst)
        {
            self.done.store(true, Ordering::Release);
        }
    }

    /// Moves a ready transaction to executing; `None` if it is not ready.
    /// Does not touch the active-task count.
    fn try_incarnate(&self, tx: TxIdx) -> Option<Version> {
        if tx >= self.len {
            return None;
        }
        let mut status = lock(&self.txs[tx].status);
        if status.status == Status::ReadyToExecute {
            status.status = Status::Executing;
            Some(Version { tx, incarnation: status.incarnation })
        } else {
            None
        }
    }

    fn next_version_to_execute(&self) -> Option<Version> {
        if self.execution_idx.load(Ordering::SeqCst) >= self.len {
            self.check_done();
            return None;
        }
        self.num_active_tasks.fetch_add(1, Ordering::SeqCst);
        let tx = self.execution_idx.fetch_add(1, Ordering::SeqCst);
        let version = self.try_incarnate(tx);
        if version.is_none() {
            self.num_active_tasks.fetch_sub(1, Ordering::SeqCst);
        }
        version
    }

    fn next_version_to_validate(&self) -> Option<Version> {
        if self.validation_idx.load(Ordering::SeqCst) >= self.len {
            self.check_done();
            return None;
        }
        self.num_active_tasks.fetch_add(1, Ordering::SeqCst);
        let tx = self.validation_idx.fetch_add(1, Ordering::SeqCst);
        if tx < self.len {
            let status = lock(&self.txs[tx].status);
            if status.status == Status::Executed {
                return Some(Version { tx, incarnation: status.incarnation });
            }
        }
        self.num_active_tasks.fetch_sub(1, Ordering::SeqCst);
        None
    }

    /// The next task, if any is available now.
    pub(crate) fn next_task(&self) -> Option<Task> {
        if self.validation_idx.load(Ordering::SeqCst) < self.execution_idx.load(Ordering::SeqCst) {
            self.next_version_to_validate().map(Task::Validate)
        } else {
            self.next_version_to_execute().map(Task::Execute)
        }
    }

    /// Parks `tx` until `blocking` is executed again. Returns false if
    /// `blocking` is already executed (then `tx` should simply retry).
    pub(crate) fn add_dependency(&self, tx: TxIdx, blocking: TxIdx) -> bool {
        let mut deps = lock(&self.txs[blocking].dependencies);
        if lock(&self.txs[blocking].status).status == Status::Executed {
            return false;
        }
        lock(&self.txs[tx].status).status = Status::Aborting;
        deps.push(tx);
        drop(deps);
        self.num_active_tasks.fetch_sub(1, Ordering::SeqCst);
        true
    }

    fn set_ready_status(&self, tx: TxIdx) {
        let mut status = lock(&self.txs[tx].status);
        status.incarnation += 1;
        status.status = Status::ReadyToExecute;
    }

    /// Marks an incarnation executed; returns a validation task for it if it
    /// can be validated right away.
    ///
    /// If validation has already passed the transaction, the paper sends it
    /// back to the transaction whenever the incarnation wrote a location the
    /// previous one did not (a higher transaction validated meanwhile may
    /// have read that location below it). `affects_validated(end)` narrows
    /// that down: it says whether any transaction in `tx + 1..end` that has
    /// an output read one of the new locations; if none did, only this
    /// transaction is validated. (One whose output is not there yet has not
    /// finished executing: it is validated after it finishes, and then
    /// reads the new writes.) Without the narrowing, the first transaction
    /// of a block, slower than the next ones (cold caches), sends back
    /// every transaction validated while it ran: about 0.9 extra
    /// validations per transaction of an independent block at two threads.
    pub(crate) fn finish_execution(
        &self,
        version: Version,
        affects_validated: impl FnOnce(TxIdx) -> bool,
    ) -> Option<Task> {
        let tx = version.tx;
        let deps = {
            let mut deps = lock(&self.txs[tx].dependencies);
            lock(&self.txs[tx].status).status = Status::Executed;
            std::mem::take(&mut *deps)
        };
        if let Some(min) = deps.iter().copied().min() {
            for dep in deps {
                self.set_ready_status(dep);
            }
            self.decrease_execution_idx(min);
        }
        let validated = self.validation_idx.load(Ordering::SeqCst);
        if validated > tx {
            if affects_validated(validated.min(self.len)) {
                self.decrease_validation_idx(tx);
            } else {
                return Some(Task::Validate(version));
            }
        }
        self.num_active_tasks.fetch_sub(1, Ordering::SeqCst);
        None
    }

    /// Claims the right to abort a failed incarnation (only one validator
    /// wins).
    pub(crate) fn try_validation_abort(&self, version: Version) -> bool {
        let mut status = lock(&self.txs[version.tx].status);
        if status.incarnation == version.incarnation && status.status == Status::Executed {
            status.status = Status::Aborting;
            true
        } else {
            false
        }
    }

    /// Ends a validation; after an abort, returns the re-execution task.
    pub(crate) fn finish_validation(&self, tx: TxIdx, aborted: bool) -> Option<Task> {
        if aborted {
            self.set_ready_status(tx);
            self.decrease_validation_idx(tx + 1);
            if self.execution_idx.load(Ordering::SeqCst) > tx
                && let Some(version) = self.try_incarnate(tx)
            {
                return Some(Task::Execute(version));
            }
        }
        self.num_active_tasks.fetch_sub(1, Ordering::SeqCst);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_worker_executes_then_validates_every_transaction_once() {
        let scheduler = Scheduler::new(3);
        let mut log = Vec::new();
        let mut task = None;
        while !scheduler.done() {
            let Some(current) = task.take().or_else(|| scheduler.next_task()) else { continue };
            log.push(current);
            task = match current {
                Task::Execute(v) => scheduler.finish_execution(v, |_| true),
                Task::Validate(v) => scheduler.finish_validation(v.tx, false),
            };
        }
        let executions = log.iter().filter(|t| matches!(t, Task::Execute(_))).count();
        let validations = log.iter().filter(|t| matches!(t, Task::Validate(_))).count();
        assert_eq!(executions, 3);
        assert!(validations >= 3);
    }

    #[test]
    fn an_abort_schedules_the_next_incarnation() {
        let scheduler = Scheduler::new(1);
        let Some(Task::Execute(v)) = scheduler.next_task() else { panic!("expected execution") };
        assert_eq!(scheduler.finish_execution(v, |_| true), None);
        let Some(Task::Validate(v)) = scheduler.next_task() else { panic!("expected validation") };
        assert!(scheduler.try_validation_abort(v));
        assert_eq!(
            scheduler.finish_validation(0, true),
            Some(Task::Execute(Version { tx: 0, incarnation: 1 }))
        );
    }
}
