//! The rollup's execution layer: chain config, chain types, state and block
//! building.
//!
//! This crate is the bottom of the workspace: it knows nothing of HTTP, SQL or
//! L1. The sequencer's block producer and the verifier share it, so a block
//! rebuilt from L1 data is executed by exactly the code that produced it.
//!
//! - [`config`]: the versioned chain config every role reads.
//! - [`genesis`]: genesis block and state from a geth-style genesis file.
//! - [`state`]: the in-memory state snapshot (a revm `DatabaseRef`), the
//!   per-block overlay and the state diff.
//! - [`engine`]: runs a block's ordered transactions (sequential reference,
//!   parallel).
//! - [`block`]: executes an ordered list of transactions into a block.
//! - [`tx`]: signed transactions into revm's `TxEnv`.
//! - [`allocator`]: settings of the mimalloc allocator the binaries use.
//! - [`workload`]: synthetic blocks over the compiled test contracts, for
//!   differential tests and benchmarks.
//!
//! ```
//! use rollup_executor::{ChainConfig, genesis::{ChainGenesis, funded_genesis}};
//! use alloy_primitives::{Address, U256};
//!
//! let config = ChainConfig::dev_defaults();
//! let genesis = funded_genesis(&config, 0, [Address::repeat_byte(1)], U256::from(1));
//! let chain = ChainGenesis::from_genesis(&config, &genesis);
//! assert_eq!(chain.header.number, 0);
//! ```

pub mod allocator;
pub mod block;
pub mod config;
mod diff_codec;
pub mod engine;
pub mod genesis;
pub mod history;
pub mod snapshot;
pub mod state;
pub mod trie;
pub mod tx;
pub mod workload;

pub use block::{
    BlockEnvironment, ExecutedBlock, InvalidTxPolicy, ParentBlock, SealedBlock, execute_block,
    execute_block_in,
};
pub use config::ChainConfig;
pub use engine::Engine;
pub use state::{MemoryState, StateDiff};
pub use tx::RecoveredTx;
