//! Prometheus metrics of the L1-facing roles.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// Counters of the batcher and the proposer.
#[derive(Debug, Clone)]
pub struct L1Metrics {
    /// Batches appended on L1.
    pub batches_posted: IntCounter,
    /// Compressed bytes of batches appended on L1.
    pub batch_bytes_posted: IntCounter,
    /// State roots proposed on L1.
    pub proposals_posted: IntCounter,
    /// Failed L1 operations, by role.
    pub l1_errors: IntCounterVec,
    /// L2 blocks not yet in a batch on L1.
    pub unbatched_blocks: IntGauge,
}

impl L1Metrics {
    /// Creates the metrics and registers them.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let metrics = Self {
            batches_posted: IntCounter::new(
                "rollup_batches_posted_total",
                "Batches appended on L1.",
            )?,
            batch_bytes_posted: IntCounter::new(
                "rollup_batch_bytes_posted_total",
                "Compressed batch bytes appended on L1.",
            )?,
            proposals_posted: IntCounter::new(
                "rollup_state_root_proposals_total",
                "State roots proposed on L1.",
            )?,
            l1_errors: IntCounterVec::new(
                Opts::new("rollup_l1_errors_total", "Failed L1 operations, by role."),
                &["role"],
            )?,
            unbatched_blocks: IntGauge::new(
                "rollup_unbatched_blocks",
                "L2 blocks not yet in a batch on L1.",
            )?,
        };
        registry.register(Box::new(metrics.batches_posted.clone()))?;
        registry.register(Box::new(metrics.batch_bytes_posted.clone()))?;
        registry.register(Box::new(metrics.proposals_posted.clone()))?;
        registry.register(Box::new(metrics.l1_errors.clone()))?;
        registry.register(Box::new(metrics.unbatched_blocks.clone()))?;
        Ok(metrics)
    }

    /// Unregistered metrics, for tests and tools.
    pub fn unregistered() -> Self {
        Self::new(&Registry::new()).expect("fresh registry")
    }
}
