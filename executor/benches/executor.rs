//! `make bench-executor`: sequential against parallel execution of the
//! benchmark workloads, with 1 and 2 threads, and the machine's ceiling (the
//! block split in two halves, each run sequentially on its own thread: two
//! long-lived threads, like the parallel engine's pool, so that neither
//! pays for a fresh thread and heap in every run).
//!
//! Prints one JSON line per workload and thread count (at one thread,
//! Block-STM forced: the node's engine would run such blocks sequentially,
//! so the line is the engine's own overhead). Execution only:
//! senders are recovered up front, no state root or receipts root.
//!
//! Times are medians over the runs; `speedup`, `ceiling` and `of_ceiling`
//! are medians of the ratios within each run (sequential, parallel and
//! ceiling timed back to back), which this machine's drifting speed
//! disturbs less than ratios of medians taken minutes apart.
//!
//! Knobs (environment): `BENCH_TXS` (transactions per block, default 10000),
//! `BENCH_RUNS` (repetitions, medians reported, default 7), `BENCH_POOLS`
//! (AMM pools, default 100), `BENCH_THREADS` (comma-separated thread counts,
//! default `1,2`), `BENCH_ONLY` (run workloads whose name contains it).

use rollup_executor::{
    Engine, InvalidTxPolicy,
    engine::{EngineOutput, sequential},
    workload::Workload,
};
use std::time::{Duration, Instant};

// Both engines run under mimalloc: glibc's allocator trims and regrows the
// worker threads' heaps between blocks, which costs the parallel engine (it
// keeps every transaction's write set until the block is finalized) more
// than the sequential one.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_unstable_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn ms(elapsed: Duration) -> f64 {
    elapsed.as_secs_f64() * 1_000.0
}

fn run(engine: Engine, w: &Workload) -> (Duration, EngineOutput) {
    let start = Instant::now();
    let out = engine.execute(&w.env, &w.state, &w.txs, InvalidTxPolicy::Skip).expect("executes");
    (start.elapsed(), out)
}

/// Two threads that run one half of a block each, with no coordination.
fn ceiling_pool() -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .thread_name(|i| format!("ceiling-{i}"))
        .stack_size(64 * 1024 * 1024)
        .build()
        .expect("building the ceiling's threads")
}

fn ceiling_run(pool: &rayon::ThreadPool, a: &Workload, b: &Workload) -> Duration {
    let start = Instant::now();
    let (left, right) = pool.join(
        || sequential::execute(&a.env, &a.state, &a.txs, InvalidTxPolicy::Skip),
        || sequential::execute(&b.env, &b.state, &b.txs, InvalidTxPolicy::Skip),
    );
    left.expect("executes");
    right.expect("executes");
    start.elapsed()
}

fn bench(w: &Workload, runs: usize, threads: &[usize], pool: &rayon::ThreadPool) {
    let (_, reference) = run(Engine::Sequential, w);
    let gas = w.total_gas(&reference.results);
    let (left, right) = w.split(w.txs.len() / 2);
    // With one worker the node's engine runs blocks sequentially; forced,
    // the line shows Block-STM's own overhead instead.
    let engine = |t: usize| if t == 1 { Engine::parallel_forced(1) } else { Engine::parallel(t) };
    // One untimed run of each configuration first (the reference above is
    // the sequential one's): a first run faults in its heap's pages, which
    // on a VM costs milliseconds per huge page.
    for t in threads {
        run(engine(*t), w);
    }
    ceiling_run(pool, &left, &right);
    // Each run times every configuration once, back to back; ratios are
    // taken within a run (this machine's speed drifts between runs), and
    // their medians reported.
    let mut sequential = Vec::new();
    let mut ceiling = Vec::new();
    let mut parallel: Vec<Vec<f64>> = vec![Vec::new(); threads.len()];
    for _ in 0..runs {
        sequential.push(ms(run(Engine::Sequential, w).0));
        for (i, t) in threads.iter().enumerate() {
            let (elapsed, out) = run(engine(*t), w);
            assert!(out == reference, "{}: parallel output differs from sequential", w.name);
            parallel[i].push(ms(elapsed));
        }
        ceiling.push(ms(ceiling_run(pool, &left, &right)));
    }
    let paired = |f: &dyn Fn(usize) -> f64| median((0..runs).map(f).collect());
    let ceiling_speedup = paired(&|run| sequential[run] / ceiling[run]);
    let sequential_ms = median(sequential.clone());
    for (t, samples) in threads.iter().zip(parallel) {
        let speedup = paired(&|run| sequential[run] / samples[run]);
        let of_ceiling = paired(&|run| ceiling[run] / samples[run]);
        let parallel_ms = median(samples);
        let line = serde_json::json!({
            "workload": w.name,
            "txs": w.txs.len(),
            "threads": t,
            "sequential_ms": round(sequential_ms),
            "parallel_ms": round(parallel_ms),
            "speedup": round(speedup),
            "ceiling": round(ceiling_speedup),
            "of_ceiling": round(of_ceiling),
            "sequential_tx_per_s": (w.txs.len() as f64 / sequential_ms * 1_000.0).round(),
            "parallel_tx_per_s": (w.txs.len() as f64 / parallel_ms * 1_000.0).round(),
            "sequential_mgas_per_s": round(gas as f64 / sequential_ms / 1_000.0),
            "parallel_mgas_per_s": round(gas as f64 / parallel_ms / 1_000.0),
        });
        println!("{line}");
    }
}

fn round(x: f64) -> f64 {
    (x * 1_000.0).round() / 1_000.0
}

fn main() {
    rollup_executor::allocator::tune_mimalloc();
    // `cargo bench` passes `--bench`; there are no other arguments.
    let txs = env_or("BENCH_TXS", 10_000usize);
    let runs = env_or("BENCH_RUNS", 7usize).max(1);
    let pools = env_or("BENCH_POOLS", 100usize);
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let threads: Vec<usize> = std::env::var("BENCH_THREADS")
        .unwrap_or_else(|_| "1,2".into())
        .split(',')
        .filter_map(|t| t.trim().parse().ok())
        .collect();
    type Make = Box<dyn Fn() -> Workload>;
    let workloads: Vec<(String, Make)> = vec![
        ("raw_transfers".into(), Box::new(move || Workload::raw_transfers(txs))),
        ("erc20_transfers".into(), Box::new(move || Workload::erc20_transfers(txs))),
        (format!("amm_swaps_{pools}_pools"), Box::new(move || Workload::amm_swaps(txs, pools))),
        ("erc20_hotspot_0pct".into(), Box::new(move || Workload::erc20_hotspot(txs, 0))),
        ("erc20_hotspot_10pct".into(), Box::new(move || Workload::erc20_hotspot(txs, 10))),
        ("erc20_hotspot_50pct".into(), Box::new(move || Workload::erc20_hotspot(txs, 50))),
        ("erc20_hotspot_100pct".into(), Box::new(move || Workload::erc20_hotspot(txs, 100))),
        ("transfer_hotspot_10pct".into(), Box::new(move || Workload::transfer_hotspot(txs, 10))),
        ("transfer_hotspot_50pct".into(), Box::new(move || Workload::transfer_hotspot(txs, 50))),
        ("transfer_hotspot_100pct".into(), Box::new(move || Workload::transfer_hotspot(txs, 100))),
        ("dependent_chain".into(), Box::new(move || Workload::dependent_chain(txs))),
    ];
    let pool = ceiling_pool();
    for (name, make) in workloads {
        if name.contains(&only) {
            bench(&make(), runs, &threads, &pool);
        }
    }
}
