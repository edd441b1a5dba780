//! Integration tests of the batcher and proposer against real Postgres and anvil.

mod backlog;
mod common;
mod reorg;
