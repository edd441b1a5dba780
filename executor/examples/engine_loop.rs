//! Runs one engine on one benchmark workload in a loop, for profilers
//! (`perf record -g`, `valgrind --tool=callgrind`): nothing else runs in the
//! process after the workload is built.
//!
//! ```text
//! cargo build --release -p rollup-executor --example engine_loop
//! W=erc20 T=2 N=30 perf record -g target/release/examples/engine_loop
//! ```
//!
//! Environment: `W` the workload (`raw`, `erc20`, `amm`, `chain`, `h10`,
//! `h50`, `h100`: ERC-20 hot spots, `t50`: a plain-transfer hot spot), `N`
//! iterations (default 30), `T` parallel engine threads (default 1), `SEQ`
//! set: the sequential engine instead. With `N=0` only the workload is
//! built (subtract it from an instruction count).

use rollup_executor::{Engine, InvalidTxPolicy, workload::Workload};
use std::time::Instant;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    rollup_executor::allocator::tune_mimalloc();
    let name: String = env_or("W", "raw".to_string());
    let iterations: usize = env_or("N", 30);
    let threads: usize = env_or("T", 1);
    let sequential = std::env::var_os("SEQ").is_some();
    let workload = match name.as_str() {
        "raw" => Workload::raw_transfers(10_000),
        "erc20" => Workload::erc20_transfers(10_000),
        "amm" => Workload::amm_swaps(10_000, 100),
        "chain" => Workload::dependent_chain(10_000),
        "h10" => Workload::erc20_hotspot(10_000, 10),
        "h50" => Workload::erc20_hotspot(10_000, 50),
        "h100" => Workload::erc20_hotspot(10_000, 100),
        "t50" => Workload::transfer_hotspot(10_000, 50),
        other => panic!("unknown workload {other}"),
    };
    // One worker: forced, as in the benchmark (the node would run such
    // blocks sequentially).
    let engine = match (sequential, threads) {
        (true, _) => Engine::Sequential,
        (false, 1) => Engine::parallel_forced(1),
        (false, t) => Engine::parallel(t),
    };
    let mut times = Vec::with_capacity(iterations);
    let start = Instant::now();
    for _ in 0..iterations {
        let run = Instant::now();
        let out = engine
            .execute(&workload.env, &workload.state, &workload.txs, InvalidTxPolicy::Skip)
            .expect("executes");
        times.push(run.elapsed().as_secs_f64() * 1_000.0);
        std::hint::black_box(out);
    }
    if iterations > 0 {
        let mean = start.elapsed().as_secs_f64() * 1_000.0 / iterations as f64;
        times.sort_by(f64::total_cmp);
        let (best, median) = (times[0], times[times.len() / 2]);
        eprintln!("{name} {engine:?}: mean {mean:.1} ms, median {median:.1} ms, best {best:.1} ms");
    }
}
