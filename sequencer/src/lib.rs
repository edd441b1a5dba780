//! The rollup node: the JSON-RPC front door, transaction admission into the
//! durable Postgres mempool, the block producer, and the wiring that runs any
//! set of roles (API, producer, batcher, proposer) in one process, including
//! the all-in-one dev network.
//!
//! - [`admission`]: decode, recover, validate raw transactions (geth's errors);
//!   [`pool`]: the in-memory mempool index admission checks against.
//! - [`rpc`]: JSON-RPC 2.0 over HTTP (single and batch).
//! - [`intake`]: group commit of admitted transactions.
//! - [`producer`]: builds and commits blocks with the shared executor;
//!   [`leader`]: one producer leads (Postgres advisory lock).
//! - [`chain_view`]: the in-memory head the API reads.
//! - [`node`]: starts roles; [`dev`]: the dev network.
//! - [`metrics`]: Prometheus metrics, health and readiness.

pub mod admission;
pub mod candidates;
pub mod chain_view;
pub mod dev;
pub mod intake;
pub mod leader;
pub mod metrics;
pub mod node;
pub mod pool;
pub mod producer;
pub mod rpc;
