//! Prometheus metrics of the node and the `/metrics`, `/healthz` and
//! `/readyz` endpoints. Labels are low-cardinality: method names come from a
//! fixed list, never from the request.

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};
use rollup_store::Store;

/// The node's metrics.
#[derive(Debug, Clone)]
pub struct NodeMetrics {
    /// Registry every metric of the process is in.
    pub registry: Registry,
    /// JSON-RPC requests by method and outcome.
    pub rpc_requests: IntCounterVec,
    /// JSON-RPC latency by method.
    pub rpc_duration: HistogramVec,
    /// Transactions accepted into the mempool.
    pub transactions_accepted: IntCounter,
    /// Pending transactions the producer saw last (in a process without
    /// the producer role: the last pool census).
    pub mempool_pending: IntGauge,
    /// Pending transactions other API processes pooled, as of the last
    /// pool census (they count toward this process's pool-wide cap).
    pub mempool_pending_elsewhere: IntGauge,
    /// Blocks committed by this producer.
    pub blocks_produced: IntCounter,
    /// Transactions included in committed blocks.
    pub transactions_included: IntCounter,
    /// Number of the newest block.
    pub head_block: IntGauge,
    /// 1 while this process leads block production.
    pub is_leader: IntGauge,
    /// The block the head-state tables reflect (the state checkpoint).
    pub state_checkpoint_block: IntGauge,
    /// Time to advance the state checkpoint once.
    pub state_checkpoint_seconds: Histogram,
    /// Simulated calls running now (on the blocking pool).
    pub simulations_running: IntGauge,
    /// Requests whose simulations ran out of time (waiting included).
    pub simulation_timeouts: IntCounter,
}

impl NodeMetrics {
    /// Creates and registers the metrics in a fresh registry.
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new_custom(Some("rollup".into()), None)?;
        let metrics = Self {
            rpc_requests: IntCounterVec::new(
                Opts::new("rpc_requests_total", "JSON-RPC requests by method and outcome."),
                &["method", "outcome"],
            )?,
            rpc_duration: HistogramVec::new(
                HistogramOpts::new("rpc_request_duration_seconds", "JSON-RPC latency by method.")
                    .buckets(vec![
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
                    ]),
                &["method"],
            )?,
            transactions_accepted: IntCounter::new(
                "transactions_accepted_total",
                "Transactions accepted into the mempool.",
            )?,
            mempool_pending: IntGauge::new(
                "mempool_pending",
                "Pending transactions in the mempool.",
            )?,
            mempool_pending_elsewhere: IntGauge::new(
                "mempool_pending_elsewhere",
                "Pending transactions other API processes pooled, as of the last pool census.",
            )?,
            blocks_produced: IntCounter::new(
                "blocks_produced_total",
                "Blocks committed by this producer.",
            )?,
            transactions_included: IntCounter::new(
                "transactions_included_total",
                "Transactions included in committed blocks.",
            )?,
            head_block: IntGauge::new("head_block_number", "Number of the newest block.")?,
            is_leader: IntGauge::new(
                "producer_is_leader",
                "1 while this process leads block production.",
            )?,
            state_checkpoint_block: IntGauge::new(
                "state_checkpoint_block",
                "The block the head-state tables reflect.",
            )?,
            state_checkpoint_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "state_checkpoint_seconds",
                    "Time to fold new blocks' diffs into the head-state tables.",
                )
                .buckets(vec![0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0]),
            )?,
            simulations_running: IntGauge::new(
                "rpc_simulations_running",
                "Simulated calls (eth_call, eth_estimateGas, eth_createAccessList) running now.",
            )?,
            simulation_timeouts: IntCounter::new(
                "rpc_simulation_timeouts_total",
                "Requests whose simulations ran out of time, waiting for a slot included.",
            )?,
            registry,
        };
        let r = &metrics.registry;
        r.register(Box::new(metrics.rpc_requests.clone()))?;
        r.register(Box::new(metrics.rpc_duration.clone()))?;
        r.register(Box::new(metrics.transactions_accepted.clone()))?;
        r.register(Box::new(metrics.mempool_pending.clone()))?;
        r.register(Box::new(metrics.mempool_pending_elsewhere.clone()))?;
        r.register(Box::new(metrics.blocks_produced.clone()))?;
        r.register(Box::new(metrics.transactions_included.clone()))?;
        r.register(Box::new(metrics.head_block.clone()))?;
        r.register(Box::new(metrics.is_leader.clone()))?;
        r.register(Box::new(metrics.state_checkpoint_block.clone()))?;
        r.register(Box::new(metrics.state_checkpoint_seconds.clone()))?;
        r.register(Box::new(metrics.simulations_running.clone()))?;
        r.register(Box::new(metrics.simulation_timeouts.clone()))?;
        Ok(metrics)
    }
}

#[derive(Debug, Clone)]
struct OpsState {
    registry: Registry,
    store: Store,
}

/// `/metrics`, `/healthz` (the process runs) and `/readyz` (the database answers).
pub fn ops_router(registry: Registry, store: Store) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .with_state(OpsState { registry, store })
}

async fn metrics(State(state): State<OpsState>) -> impl IntoResponse {
    let mut buffer = Vec::new();
    let encoder = TextEncoder::new();
    if encoder.encode(&state.registry.gather(), &mut buffer).is_err() {
        return (StatusCode::INTERNAL_SERVER_ERROR, String::new());
    }
    (StatusCode::OK, String::from_utf8_lossy(&buffer).into_owned())
}

async fn ready(State(state): State<OpsState>) -> impl IntoResponse {
    if state.store.ping().await {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "database unreachable")
    }
}
