//! `loadgen`: sends pre-signed EIP-1559 transfers from dev accounts to a
//! JSON-RPC endpoint and prints one JSON line with the accepted transactions
//! per second and request latency percentiles.
//!
//! ```text
//! loadgen --rpc-url http://127.0.0.1:8547 --accounts 1000 --txs-per-account 30 --mode batch
//! ```
//!
//! Accounts `m/44'/60'/0'/0/i` of the dev mnemonic for `i` in
//! `first-account..first-account + accounts` send `txs-per-account` transfers
//! each, starting at their pending nonce, so running it again continues where
//! the last run stopped. Progress and the most frequent errors go to stderr,
//! the result line to stdout.

use clap::{Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rollup_loadgen::{
    plan, report, rpc,
    send::{self, Request},
    sign,
};
use std::time::Instant;

/// How transactions are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// One `eth_sendRawTransaction` per HTTP request.
    Single,
    /// JSON-RPC batch arrays of `--batch-size` requests.
    Batch,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Self::Single => "single",
            Self::Batch => "batch",
        }
    }
}

/// Load generator for `eth_sendRawTransaction`.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// JSON-RPC endpoint.
    #[arg(long)]
    rpc_url: String,
    /// Sending accounts.
    #[arg(long)]
    accounts: u32,
    /// Transfers per account.
    #[arg(long)]
    txs_per_account: u32,
    /// Single requests or JSON-RPC batches.
    #[arg(long, value_enum)]
    mode: Mode,
    /// Requests in flight at once (one connection each).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Transactions per JSON-RPC batch (batch mode).
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    /// Index of the first account (accounts 0-9 are left to other tools).
    #[arg(long, default_value_t = 10)]
    first_account: u32,
    /// Label copied into the result line.
    #[arg(long, default_value = "loadgen")]
    label: String,
    /// `maxFeePerGas` in gwei (the tip is 0.001 gwei).
    #[arg(long, default_value_t = 10.0)]
    fee_gwei: f64,
    /// Threads sending requests. One (a single-threaded runtime) costs the
    /// least CPU, which matters when the node under test runs on the same
    /// machine; signing always uses every core.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

fn main() -> eyre::Result<()> {
    let args = Args::parse();
    if args.accounts == 0 || args.txs_per_account == 0 {
        eyre::bail!("--accounts and --txs-per-account must be at least 1");
    }
    if args.batch_size == 0 || args.concurrency == 0 {
        eyre::bail!("--batch-size and --concurrency must be at least 1");
    }
    let fees = sign::Fees::from_gwei(args.fee_gwei)?;
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()?
    };

    let started = Instant::now();
    let signers = sign::dev_signers(args.first_account, args.accounts)?;
    let addresses: Vec<_> = signers.iter().map(|s| s.address()).collect();
    let client = reqwest::Client::builder().timeout(send::REQUEST_TIMEOUT).build()?;
    let (chain_id, nonces) = runtime.block_on(async {
        let chain_id = rpc::chain_id(&client, &args.rpc_url).await?;
        let nonces = rpc::pending_nonces(&client, &args.rpc_url, &addresses).await?;
        eyre::Ok((chain_id, nonces))
    })?;
    drop(client);
    let read_secs = started.elapsed().as_secs_f64();

    let signing = Instant::now();
    let slots = plan::interleave(args.accounts, args.txs_per_account);
    let raws = sign::sign_all(&signers, &nonces, &slots, chain_id, fees)?;
    let batch = args.mode == Mode::Batch;
    let per_request = if batch { args.batch_size } else { 1 };
    let deps = plan::dependencies(args.accounts, &slots, per_request);
    drop(slots);
    let requests: Vec<Request> = raws
        .chunks(per_request)
        .zip(deps)
        .enumerate()
        .map(|(i, (chunk, deps))| Request {
            body: sign::request_body((i * per_request) as u64, chunk, batch),
            txs: chunk.len() as u32,
            deps,
        })
        .collect();
    let txs = raws.len() as u64;
    drop(raws);
    eprintln!(
        "loadgen: chain {chain_id}, {} accounts from index {} (pending nonces {}..={}, read in \
         {read_secs:.2} s), {txs} txs in {} requests signed in {:.2} s; sending with {} workers",
        args.accounts,
        args.first_account,
        nonces.iter().min().copied().unwrap_or_default(),
        nonces.iter().max().copied().unwrap_or_default(),
        requests.len(),
        signing.elapsed().as_secs_f64(),
        args.concurrency,
    );

    let bar = ProgressBar::with_draw_target(Some(txs), ProgressDrawTarget::stderr());
    bar.set_style(ProgressStyle::with_template(
        "{elapsed_precise} [{bar:40}] {pos}/{len} txs {per_sec} eta {eta}",
    )?);
    let cpu_before = report::process_cpu();
    let outcome =
        runtime.block_on(send::send_all(&args.rpc_url, requests, batch, args.concurrency, bar))?;
    let send_cpu = report::process_cpu().saturating_sub(cpu_before);

    let seconds = outcome.elapsed.as_secs_f64();
    let tally = &outcome.tally;
    let latency = report::summarize(&outcome.latency);
    let errors = tally.error_count();
    eprintln!(
        "loadgen: {} accepted, {errors} errors in {seconds:.3} s ({:.0} accepted tx/s)",
        tally.accepted,
        report::per_second(tally.accepted, seconds),
    );
    for (message, count) in tally.top_errors(5) {
        eprintln!("loadgen: {count:>8} × {message}");
    }
    let line = serde_json::json!({
        "label": args.label,
        "mode": args.mode.name(),
        "txs": txs,
        "accepted": tally.accepted,
        "errors": errors,
        "seconds": report::round(seconds, 3),
        "tx_per_s": report::round(report::per_second(tally.accepted, seconds), 1),
        "p50_ms": latency.p50_ms,
        "p90_ms": latency.p90_ms,
        "p99_ms": latency.p99_ms,
        "concurrency": args.concurrency,
        "batch_size": per_request,
        // This process's CPU while sending (signing excluded), per accepted
        // transaction: the load generator's share of a machine it shares.
        "loadgen_cpu_us_per_tx": report::cpu_us_per_tx(send_cpu, tally.accepted),
    });
    println!("{line}");
    Ok(())
}
