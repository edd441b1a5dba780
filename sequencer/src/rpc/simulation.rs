//! Where simulated calls run (`eth_call`, `eth_estimateGas`,
//! `eth_createAccessList`): on the blocking pool, a bounded number at once,
//! within a deadline, on one block's state read through the head view one
//! value at a time.
//!
//! One run may spend a whole block's gas (30M by default: up to about a
//! second of precompile calls on this machine), gas estimation runs up to
//! about 25 and an access list up to 8. Run on the runtime's workers (two
//! on a two-core node), a few such requests would stall every other
//! request, transactions included; holding the view's read lock through a
//! run would stall the producer's advance of the view (a write), and every
//! reader queued behind that write. Here a request's task only awaits: the
//! EVM runs on the blocking pool, at most [`RpcLimits::max_simulations`] at
//! once (by default one core fewer than the machine has), at most
//! [`WAITING_PER_SLOT`] requests per slot wait (more are refused at once),
//! and the read lock is taken for each account, slot, code or block-hash
//! read and released. The state stays exactly the pinned block's while the
//! head moves on: the later blocks' diffs are undone, as historical reads
//! are (the node keeps at least 64 blocks of history for this). A request's
//! runs stop at [`RpcLimits::simulation_timeout`] (5 s by default, waiting
//! included; zero: no limit) with geth's message; geth bounds `eth_call`
//! this way (`--rpc.evmtimeout`), here gas estimation and access lists
//! are bounded too. The deadline is checked before each run: a request
//! overruns it by one run at most.
//!
//! [`RpcLimits::max_simulations`]: super::limits::RpcLimits::max_simulations
//! [`RpcLimits::simulation_timeout`]: super::limits::RpcLimits::simulation_timeout

use super::error::{LIMIT_EXCEEDED, RpcError, SERVER_ERROR};
use crate::{chain_view::ChainView, metrics::NodeMetrics};
use alloy_primitives::{Address, B256, U256};
use prometheus::{IntCounter, IntGauge};
use revm::{DatabaseRef, bytecode::Bytecode, state::AccountInfo};
use rollup_executor::history::{HistoricalState, HistoryError};
use std::time::{Duration, Instant};
use std::{
    cell::Cell,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};
use tokio::sync::Semaphore;

/// The simulations a node runs at once, and how long a request's may take.
#[derive(Debug)]
pub struct Simulations {
    permits: Arc<Semaphore>,
    /// Requests waiting for a permit now, and how many may.
    waiting: Arc<AtomicUsize>,
    max_waiting: usize,
    timeout: Option<Duration>,
    running: IntGauge,
    timeouts: IntCounter,
}

/// Requests that may wait for a simulation slot, per slot: more are
/// refused at once (-32005) rather than holding a request slot each for up
/// to the deadline (one batch of estimations would otherwise queue ahead
/// of every other client's calls).
const WAITING_PER_SLOT: usize = 8;

impl Simulations {
    /// At most `max` at once (at least one), each request's within `timeout`
    /// (zero: no limit, as geth's); counted in `metrics`.
    pub fn new(max: usize, timeout: Duration, metrics: &NodeMetrics) -> Self {
        let max = max.max(1);
        Self {
            permits: Arc::new(Semaphore::new(max)),
            waiting: Arc::new(AtomicUsize::new(0)),
            max_waiting: max * WAITING_PER_SLOT,
            timeout: (!timeout.is_zero()).then_some(timeout),
            running: metrics.simulations_running.clone(),
            timeouts: metrics.simulation_timeouts.clone(),
        }
    }

    /// Runs `work` on the blocking pool once a permit is free; it must call
    /// [`Deadline::check`] before each EVM run. Waiting for the permit
    /// counts toward the deadline. If the request is dropped meanwhile
    /// (its HTTP timeout), the run in progress finishes, holding its permit.
    pub(super) async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Deadline) -> Result<T, RpcError> + Send + 'static,
    ) -> Result<T, RpcError> {
        let deadline = Deadline {
            at: self.timeout.map(|timeout| (Instant::now() + timeout, timeout)),
            timeouts: self.timeouts.clone(),
            missed: Cell::new(false),
        };
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                let _waiting = Waiting::enter(&self.waiting, self.max_waiting)?;
                let acquire = self.permits.clone().acquire_owned();
                let acquired = match deadline.at {
                    Some((at, _)) => tokio::time::timeout_at(at.into(), acquire)
                        .await
                        .map_err(|_| deadline.missed())?,
                    None => acquire.await,
                };
                acquired.map_err(RpcError::internal)?
            }
        };
        let running = Running::start(&self.running);
        tokio::task::spawn_blocking(move || {
            let _held = (permit, running);
            work(&deadline)
        })
        .await
        .map_err(RpcError::internal)?
    }
}

/// One request waiting for a simulation slot, for as long as it waits.
struct Waiting(Arc<AtomicUsize>);

impl Waiting {
    /// Counts a waiter in, unless `max` already wait.
    fn enter(count: &Arc<AtomicUsize>, max: usize) -> Result<Self, RpcError> {
        if count.fetch_add(1, Ordering::AcqRel) >= max {
            count.fetch_sub(1, Ordering::AcqRel);
            return Err(RpcError::new(
                LIMIT_EXCEEDED,
                "too many simulated calls waiting (eth_call, eth_estimateGas, eth_createAccessList); retry later",
            ));
        }
        Ok(Self(count.clone()))
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One running simulation in the gauge, for as long as it lives.
struct Running(IntGauge);

impl Running {
    fn start(gauge: &IntGauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// When a request's simulations must stop.
#[derive(Debug)]
pub(super) struct Deadline {
    /// The instant and the timeout it came from (`None`: no limit).
    at: Option<(Instant, Duration)>,
    timeouts: IntCounter,
    /// Whether the time was found up (counted once).
    missed: Cell<bool>,
}

impl Deadline {
    /// Whether another run may start: geth's answer once the time is up.
    pub(super) fn check(&self) -> Result<(), RpcError> {
        match self.at {
            Some((at, _)) if Instant::now() >= at => Err(self.missed()),
            _ => Ok(()),
        }
    }

    /// The time is up: counted in the metric (once), and geth's answer.
    fn missed(&self) -> RpcError {
        if !self.missed.replace(true) {
            self.timeouts.inc();
        }
        let timeout = self.at.map(|(_, timeout)| timeout).unwrap_or_default();
        RpcError::new(SERVER_ERROR, format!("execution aborted (timeout = {timeout:?})"))
    }
}

/// The state after block `number`, read through the view one value at a
/// time (the read lock held for one lookup).
#[derive(Debug, Clone)]
pub(super) struct PinnedState {
    view: ChainView,
    number: u64,
}

/// Why a pinned state could not be read.
#[derive(Debug, thiserror::Error)]
pub(super) enum PinnedError {
    /// The head moved past the state history window during the call
    /// ([`Head::state_unavailable`]'s message).
    ///
    /// [`Head::state_unavailable`]: crate::chain_view::Head::state_unavailable
    #[error("{0}")]
    Pruned(String),
    /// A value the history cannot give.
    #[error(transparent)]
    History(#[from] HistoryError),
}

impl revm::database_interface::DBErrorMarker for PinnedError {}

impl PinnedState {
    /// The state after block `number` of `view`.
    pub(super) const fn new(view: ChainView, number: u64) -> Self {
        Self { view, number }
    }

    fn read<T>(
        &self,
        f: impl FnOnce(&HistoricalState<'_>) -> Result<T, HistoryError>,
    ) -> Result<T, PinnedError> {
        let head = self.view.read();
        let state = head
            .state_at(self.number)
            .ok_or_else(|| PinnedError::Pruned(head.state_unavailable(self.number)))?;
        Ok(f(&state)?)
    }
}

impl DatabaseRef for PinnedState {
    type Error = PinnedError;

    fn basic_ref(&self, address: Address) -> Result<Option<AccountInfo>, Self::Error> {
        self.read(|state| state.basic_ref(address))
    }

    fn code_by_hash_ref(&self, code_hash: B256) -> Result<Bytecode, Self::Error> {
        self.read(|state| state.code_by_hash_ref(code_hash))
    }

    fn storage_ref(&self, address: Address, index: U256) -> Result<U256, Self::Error> {
        self.read(|state| state.storage_ref(address, index))
    }

    fn block_hash_ref(&self, number: u64) -> Result<B256, Self::Error> {
        self.read(|state| state.block_hash_ref(number))
    }
}
