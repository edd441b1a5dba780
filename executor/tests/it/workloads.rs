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
