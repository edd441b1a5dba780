//! End-to-end tests of the node with real Postgres and a real anvil L1.

mod api_kill;
mod candidates;
mod common;
mod crash;
mod db_restart;
mod e2e;
mod failover;
mod fuzz;
mod pool_cap;
mod protection;
mod rpc_input;
mod simulations;
mod state_faults;
mod transaction_tests;
