//! Load generator for the rollup's JSON-RPC ingress (`eth_sendRawTransaction`).
//!
//! The `loadgen` binary reads the chain id and the pending nonces of a range
//! of dev accounts (the test mnemonic, `m/44'/60'/0'/0/i`), signs every
//! EIP-1559 transfer ahead of time, serializes the request bodies (single
//! requests or JSON-RPC batches), then sends them with a fixed number of
//! concurrent HTTP/1.1 keep-alive connections and reports accepted
//! transactions per second and request latency percentiles as one JSON line.
//!
//! The modules hold the parts that do not need a network and are unit tested:
//! [`plan`] (the order of transactions and the order constraints between
//! requests), [`sign`] (keys, transfers, request bodies), [`report`]
//! (response classification, error tallies, latency summary); [`rpc`] and
//! [`send`] talk to the node.

pub mod plan;
pub mod report;
pub mod rpc;
pub mod send;
pub mod sign;
