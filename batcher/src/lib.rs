//! The rollup's L1 side: batch format, batch poster, state-root proposer and
//! derivation of the L2 chain from L1.
//!
//! - [`codec`]: the versioned, compressed batch format.
//! - [`settlement`]: bindings of the L1 settlement contract (from its artifact).
//! - [`poster`]: builds batches from stored blocks and appends them exactly once.
//! - [`proposer`]: proposes state roots of blocks whose batches are on L1.
//! - [`derive`]: reads batches back from L1 and re-executes them (the verifier's core).
//! - [`l1`]: L1 providers and errors.
//!
//! Progress lives in Postgres (`rollup-store`), so a restart neither skips
//! nor repeats L1 work.

pub mod codec;
pub mod derive;
pub mod l1;
mod metrics;
pub mod poster;
pub mod proposer;
pub mod settlement;

pub use l1::L1Error;
pub use metrics::L1Metrics;
pub use poster::{BatchPoster, BatcherConfig};
pub use proposer::Proposer;
