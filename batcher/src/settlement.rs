//! Rust bindings of the L1 settlement contract, generated from the committed
//! artifact in `contracts/artifacts/` (so the bindings can never drift from
//! the bytecode that is deployed).

alloy::sol!(
    #[sol(rpc)]
    #[allow(missing_docs)]
    #[derive(Debug)]
    Settlement,
    "../contracts/artifacts/Settlement.json"
);
