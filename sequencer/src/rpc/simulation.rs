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
//! once (the others wait for a permit within their deadline), and the read
//! lock is taken for each account, slot, code or block-hash read and
//! released. The state stays exactly the pinned block's while the head
//! moves on: the later blocks' diffs are undone, as historical reads are.
//! A request's runs stop at [`RpcLimits::simulation_timeout`] (geth's
//! `--rpc.evmtimeout`, 5 s by default, with geth's message).
//!
//! [`RpcLimits::max_simulations`]: super::limits::RpcLimits::max_simulations
//! [`RpcLimits::simulation_timeout`]: super::limits::RpcLimits::simulation_timeout

use super::error::{RpcError, SERVER_ERROR};
use crate::{chain_view::ChainView, metrics::NodeMetrics};
use alloy_primitives::{Address, B256, U256};
use prometheus::{IntCounter, IntGauge};
use revm::{DatabaseRef, bytecode::Bytecode, state::AccountInfo};
use rollup_executor::history::{HistoricalState, HistoryError};
use std::time::{Duration, Instant};
use std::{cell::Cell, sync::Arc};
use tokio::sync::Semaphore;

/// The simulations a node runs at once, and how long a request's may take.
#[derive(Debug)]
pub struct Simulations {
    permits: Arc<Semaphore>,
    timeout: Duration,
    running: IntGauge,
    timeouts: IntCounter,
}

impl Simulations {
    /// At most `max` at once (at least one), each request's within
    /// `timeout`; counted in `metrics`.
    pub fn new(max: usize, timeout: Duration, metrics: &NodeMetrics) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max.max(1))),
            timeout,
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
            at: Instant::now() + self.timeout,
            timeout: self.timeout,
            missed: Cell::new(false),
        };
        let acquired =
            tokio::time::timeout_at(deadline.at.into(), self.permits.clone().acquire_owned()).await;
        let Ok(permit) = acquired else {
            self.timeouts.inc();
            return Err(deadline.expired());
        };
        let permit = permit.map_err(RpcError::internal)?;
        let running = Running::start(&self.running);
        let (result, missed) = tokio::task::spawn_blocking(move || {
            let _held = (permit, running);
            let result = work(&deadline);
            (result, deadline.missed.get())
        })
        .await
        .map_err(RpcError::internal)?;
        if missed {
            self.timeouts.inc();
        }
        result
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
    at: Instant,
    timeout: Duration,
    /// Whether a check found the time up.
    missed: Cell<bool>,
}

impl Deadline {
    /// Whether another run may start: geth's answer once the time is up.
    pub(super) fn check(&self) -> Result<(), RpcError> {
        if Instant::now() < self.at {
            return Ok(());
        }
        self.missed.set(true);
        Err(self.expired())
    }

    fn expired(&self) -> RpcError {
        RpcError::new(SERVER_ERROR, format!("execution aborted (timeout = {:?})", self.timeout))
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
    /// The head moved past the state history window during the call.
    #[error(
        "historical state is not available for block {number}; this node serves blocks {oldest} to {head}"
    )]
    Pruned {
        /// The pinned block.
        number: u64,
        /// The oldest block the view can serve now.
        oldest: u64,
        /// The head now.
        head: u64,
    },
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
        let state = head.state_at(self.number).ok_or_else(|| PinnedError::Pruned {
            number: self.number,
            oldest: head.oldest_state(),
            head: head.number(),
        })?;
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
