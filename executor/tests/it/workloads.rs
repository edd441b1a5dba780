//! The benchmark workloads, small, under both engines.

use crate::common::assert_engines_agree;
use rollup_executor::{InvalidTxPolicy, engine::TxResult, workload::Workload};

fn check(w: &Workload) {
    let out = assert_engines_agree(&w.env, &w.state, &w.txs, InvalidTxPolicy::Skip)
        .unwrap_or_else(|e| panic!("{}: {e}", w.name));
    let failed: Vec<_> = out
        .results
        .iter()
        .enumerate()
        .filter(|(_, r)| !matches!(r, TxResult::Executed(e) if e.success))
        .collect();
    assert!(failed.is_empty(), "{}: every transaction succeeds: {failed:?}", w.name);
}

#[test]
fn raw_transfers() {
    check(&Workload::raw_transfers(200));
}

#[test]
fn erc20_transfers_and_hot_spots() {
    for hot in [0, 10, 50, 100] {
        check(&Workload::erc20_hotspot(150, hot));
        check(&Workload::transfer_hotspot(150, hot));
    }
}

#[test]
fn amm_swaps() {
    check(&Workload::amm_swaps(300, 10));
}

#[test]
fn dependent_chain() {
    check(&Workload::dependent_chain(100));
}

#[test]
fn the_adaptive_engine_matches_on_contended_blocks() {
    use rollup_executor::Engine;
    for w in [Workload::dependent_chain(400), Workload::erc20_hotspot(400, 100)] {
        let reference =
            Engine::Sequential.execute(&w.env, &w.state, &w.txs, InvalidTxPolicy::Skip).unwrap();
        for threads in [1, 2, 4] {
            let out = Engine::parallel(threads)
                .execute(&w.env, &w.state, &w.txs, InvalidTxPolicy::Skip)
                .unwrap();
            assert!(out == reference, "{} at {threads} threads", w.name);
        }
    }
}

/// A snapshot that fails to read one account.
#[derive(Debug)]
struct Failing {
    inner: rollup_executor::MemoryState,
    broken: alloy_primitives::Address,
}

#[derive(Debug, thiserror::Error)]
#[error("snapshot unavailable for {0}")]
struct Unavailable(alloy_primitives::Address);

impl revm::database_interface::DBErrorMarker for Unavailable {}

impl revm::DatabaseRef for Failing {
    type Error = Unavailable;

    fn basic_ref(
        &self,
        address: alloy_primitives::Address,
    ) -> Result<Option<revm::state::AccountInfo>, Self::Error> {
        if address == self.broken {
            return Err(Unavailable(address));
        }
        Ok(self.inner.basic_ref(address).unwrap_or_else(|e| match e {}))
    }

    fn code_by_hash_ref(
        &self,
        code_hash: alloy_primitives::B256,
    ) -> Result<revm::bytecode::Bytecode, Self::Error> {
        Ok(self.inner.code_by_hash_ref(code_hash).unwrap_or_else(|e| match e {}))
    }

    fn storage_ref(
        &self,
        address: alloy_primitives::Address,
        index: alloy_primitives::U256,
    ) -> Result<alloy_primitives::U256, Self::Error> {
        Ok(self.inner.storage_ref(address, index).unwrap_or_else(|e| match e {}))
    }

    fn block_hash_ref(&self, number: u64) -> Result<alloy_primitives::B256, Self::Error> {
        Ok(self.inner.block_hash_ref(number).unwrap_or_else(|e| match e {}))
    }
}

#[test]
fn snapshot_errors_are_the_sequential_engine_s() {
    use rollup_executor::{Engine, engine::EngineError, workload};
    let w = Workload::raw_transfers(50);
    let db = Failing { inner: w.state.clone(), broken: workload::fresh(20) };
    let reference = Engine::Sequential.execute(&w.env, &db, &w.txs, InvalidTxPolicy::Skip);
    let Err(EngineError::Database(expected)) = reference else {
        panic!("the sequential engine reports the snapshot error");
    };
    for threads in [1, 2, 4] {
        match Engine::parallel_forced(threads).execute(&w.env, &db, &w.txs, InvalidTxPolicy::Skip) {
            Err(EngineError::Database(e)) => assert_eq!(e.to_string(), expected.to_string()),
            other => panic!("expected the snapshot error, got {other:?}"),
        }
    }
}
