//! `rollup-node`: the rollup's one binary.
//!
//! - `rollup-node dev`: the whole dev network (private Postgres, anvil, all roles).
//! - `rollup-node run`: chosen roles against a given database, L1 and chain config.
//! - `rollup-node migrate`: apply database migrations and exit.

use clap::{Parser, Subcommand};
use rollup_batcher::l1::parse_key;
use rollup_executor::Engine;
use rollup_sequencer::{
    dev::{self, DevOptions},
    node::{self, NodeOptions, Roles},
    pool::PoolLimits,
    producer::ExecutorOptions,
    rpc::limits::RpcLimits,
};
use std::{net::SocketAddr, path::PathBuf, time::Duration};
use tracing_subscriber::EnvFilter;

// glibc's malloc spent 11-18% of the node's CPU under ingress load (arena
// locking, consolidation and trimming of per-thread heaps); mimalloc keeps
// per-thread free lists. See docs/decisions.md, "Ingress: where the CPU goes".
// Its purge delay is raised at start (`tune_mimalloc`): with the default, the
// node's pages were returned and faulted in again under load, each fault
// zeroing a huge page (10-13% of the node's CPU under ingress load).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "rollup-node", version, about = "Optimistic rollup sequencer node")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole system locally on embedded defaults.
    Dev {
        /// Data folder (chain config, genesis, anvil state, Postgres when reachable).
        #[arg(long, default_value = ".dev")]
        data_dir: PathBuf,
        /// Funded L2 dev accounts.
        #[arg(long, env = "DEV_ACCOUNTS", default_value_t = 1_000)]
        accounts: u32,
        /// JSON-RPC listen address.
        #[arg(long, env = "RPC_ADDR", default_value = "127.0.0.1:8547")]
        rpc_addr: SocketAddr,
        /// Metrics listen address.
        #[arg(long, env = "METRICS_ADDR", default_value = "127.0.0.1:9547")]
        metrics_addr: SocketAddr,
        /// Port of the private Postgres.
        #[arg(long, env = "DEV_PG_PORT", default_value_t = 55_432)]
        pg_port: u16,
        /// Port of anvil.
        #[arg(long, env = "DEV_L1_PORT", default_value_t = 8_545)]
        l1_port: u16,
        /// Use this database instead of a private Postgres.
        #[arg(long, env = "DATABASE_URL")]
        database_url: Option<String>,
        /// Use this L1 instead of starting anvil.
        #[arg(long, env = "L1_RPC_URL")]
        l1_rpc_url: Option<String>,
    },
    /// Run chosen roles.
    Run {
        /// The chain config file.
        #[arg(long, env = "CHAIN_CONFIG")]
        chain_config: PathBuf,
        /// Postgres URL.
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
        /// L1 JSON-RPC URL.
        #[arg(long, env = "L1_RPC_URL")]
        l1_rpc_url: String,
        /// Roles: any of api,producer,batcher,proposer, or all.
        #[arg(long, env = "ROLES", default_value = "all", value_parser = Roles::parse)]
        roles: Roles,
        /// JSON-RPC listen address.
        #[arg(long, env = "RPC_ADDR", default_value = "127.0.0.1:8547")]
        rpc_addr: SocketAddr,
        /// Metrics listen address.
        #[arg(long, env = "METRICS_ADDR", default_value = "127.0.0.1:9547")]
        metrics_addr: SocketAddr,
        /// File holding the batcher's hex L1 key (or set BATCHER_KEY).
        #[arg(long, env = "BATCHER_KEY_FILE")]
        batcher_key_file: Option<PathBuf>,
        /// File holding the proposer's hex L1 key (or set PROPOSER_KEY).
        #[arg(long, env = "PROPOSER_KEY_FILE")]
        proposer_key_file: Option<PathBuf>,
        /// Seconds between state-root proposals.
        #[arg(long, env = "PROPOSAL_INTERVAL_SECS", default_value_t = 10)]
        proposal_interval_secs: u64,
        /// Seconds between batcher polls.
        #[arg(long, env = "BATCH_INTERVAL_SECS", default_value_t = 1)]
        batch_interval_secs: u64,
        /// Tip suggested to wallets, in wei.
        #[arg(long, env = "SUGGESTED_PRIORITY_FEE", default_value_t = 1_000_000)]
        suggested_priority_fee: u128,
        /// Most pooled transactions per sender.
        #[arg(long, env = "POOL_MAX_PER_SENDER", default_value_t = 64)]
        pool_max_per_sender: usize,
        /// Most pooled transactions in all.
        #[arg(long, env = "POOL_MAX_TOTAL", default_value_t = 200_000)]
        pool_max_total: usize,
        /// Seconds a transaction may wait before it is dropped as expired.
        #[arg(long, env = "POOL_LIFETIME_SECS", default_value_t = 3 * 3600)]
        pool_lifetime_secs: u64,
        /// Recent blocks whose state the read methods serve (history kept in
        /// memory as diffs); at least 64.
        #[arg(long, env = "STATE_HISTORY_BLOCKS", default_value_t = rollup_sequencer::chain_view::DEFAULT_HISTORY_BLOCKS)]
        state_history_blocks: usize,
        /// Keep the state diffs of this many recent blocks, prune older ones
        /// (unset: keep all). At least STATE_HISTORY_BLOCKS.
        #[arg(long, env = "DIFF_RETENTION_BLOCKS")]
        diff_retention_blocks: Option<u64>,
        /// Seconds a dropped transaction keeps its lifecycle (and reason)
        /// before it is deleted; 0 keeps them all.
        #[arg(long, env = "DROPPED_RETENTION_SECS", default_value_t = 86_400)]
        dropped_retention_secs: u64,
        /// JSON-RPC server limits.
        #[command(flatten)]
        rpc: Box<RpcArgs>,
        /// Execution engine of the block producer.
        #[arg(long, env = "EXECUTOR", value_enum, default_value_t = ExecutorKind::Parallel)]
        executor: ExecutorKind,
        /// Worker threads of the parallel engine (0: one per core).
        #[arg(long, env = "EXECUTOR_THREADS", default_value_t = 0)]
        executor_threads: usize,
        /// Also execute every block with the other engine; stop producing on
        /// any difference.
        #[arg(long, env = "VERIFY_EXECUTOR")]
        verify_executor: bool,
    },
    /// Apply database migrations and exit.
    Migrate {
        /// Postgres URL.
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
    },
}

/// The JSON-RPC server's limits and admin token.
#[derive(Debug, clap::Args)]
struct RpcArgs {
    /// Sustained JSON-RPC requests per second per client IP.
    #[arg(long, env = "RATE_LIMIT_PER_SECOND", default_value_t = 20_000)]
    rate_limit_per_second: u32,
    /// JSON-RPC requests per client IP in a burst.
    #[arg(long, env = "RATE_LIMIT_BURST", default_value_t = 40_000)]
    rate_limit_burst: u32,
    /// JSON-RPC requests served at once; more are shed (HTTP 503).
    #[arg(long, env = "MAX_IN_FLIGHT", default_value_t = 2_048)]
    max_in_flight: usize,
    /// Simulated calls (eth_call, eth_estimateGas, eth_createAccessList)
    /// run at once; eight per slot may wait, more are refused (default:
    /// one fewer than the cores, at least one).
    #[arg(long, env = "MAX_SIMULATIONS")]
    max_simulations: Option<usize>,
    /// Milliseconds one request's simulations may take, waiting included
    /// (as geth's --rpc.evmtimeout; 0: no limit).
    #[arg(long, env = "SIMULATION_TIMEOUT_MS", default_value_t = 5_000)]
    simulation_timeout_ms: u64,
    /// File holding the bearer token of the admin methods (or set ADMIN_TOKEN).
    #[arg(long, env = "ADMIN_TOKEN_FILE")]
    admin_token_file: Option<PathBuf>,
}

impl RpcArgs {
    /// The limits, with the admin token read from its file (or
    /// `ADMIN_TOKEN`).
    fn limits(self) -> eyre::Result<RpcLimits> {
        let admin_token = match self.admin_token_file {
            Some(path) => Some(
                std::fs::read_to_string(&path)
                    .map_err(|e| eyre::eyre!("read {}: {e}", path.display()))?
                    .trim()
                    .to_owned(),
            ),
            None => std::env::var("ADMIN_TOKEN").ok(),
        }
        .filter(|t| !t.is_empty());
        Ok(RpcLimits {
            rate_per_second: self.rate_limit_per_second,
            burst: self.rate_limit_burst,
            max_in_flight: self.max_in_flight,
            admin_token,
            max_simulations: self
                .max_simulations
                .unwrap_or_else(rollup_sequencer::rpc::limits::default_max_simulations),
            simulation_timeout: Duration::from_millis(self.simulation_timeout_ms),
        })
    }
}

/// A secret from a file or an environment variable; never logged.
fn load_key(
    file: Option<PathBuf>,
    env: &str,
) -> eyre::Result<Option<alloy::signers::local::PrivateKeySigner>> {
    let text = match file {
        Some(path) => Some(
            std::fs::read_to_string(&path)
                .map_err(|e| eyre::eyre!("read {}: {e}", path.display()))?,
        ),
        None => std::env::var(env).ok(),
    };
    Ok(text.map(|t| parse_key(&t)).transpose()?)
}

/// The block producer's execution engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ExecutorKind {
    /// Plain revm, one transaction after another (the reference).
    Sequential,
    /// Block-STM on a thread pool (same output as sequential).
    Parallel,
}

#[tokio::main]
async fn main() -> eyre::Result<()> {
    rollup_executor::allocator::tune_mimalloc();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn")),
        )
        .init();
    match Cli::parse().command {
        Command::Dev {
            data_dir,
            accounts,
            rpc_addr,
            metrics_addr,
            pg_port,
            l1_port,
            database_url,
            l1_rpc_url,
        } => {
            rollup_devnet::terminate_with_parent();
            dev::run(DevOptions {
                data_dir,
                accounts,
                rpc_addr,
                metrics_addr,
                pg_port,
                l1_port,
                database_url,
                l1_rpc_url,
            })
            .await
        }
        Command::Run {
            chain_config,
            database_url,
            l1_rpc_url,
            roles,
            rpc_addr,
            metrics_addr,
            batcher_key_file,
            proposer_key_file,
            proposal_interval_secs,
            batch_interval_secs,
            suggested_priority_fee,
            pool_max_per_sender,
            pool_max_total,
            pool_lifetime_secs,
            state_history_blocks,
            diff_retention_blocks,
            dropped_retention_secs,
            rpc,
            executor,
            executor_threads,
            verify_executor,
        } => {
            let options = NodeOptions {
                chain_config,
                database_url,
                l1_rpc_url,
                roles,
                rpc_addr,
                metrics_addr,
                batcher_key: load_key(batcher_key_file, "BATCHER_KEY")?,
                proposer_key: load_key(proposer_key_file, "PROPOSER_KEY")?,
                proposal_interval: Duration::from_secs(proposal_interval_secs),
                batch_interval: Duration::from_secs(batch_interval_secs),
                suggested_priority_fee,
                pool_limits: PoolLimits {
                    max_per_sender: pool_max_per_sender,
                    max_total: pool_max_total,
                    lifetime: Duration::from_secs(pool_lifetime_secs),
                    ..PoolLimits::default()
                },
                state_history_blocks,
                diff_retention_blocks,
                dropped_retention: (dropped_retention_secs > 0)
                    .then(|| Duration::from_secs(dropped_retention_secs)),
                rpc_limits: rpc.limits()?,
                executor: ExecutorOptions {
                    engine: match executor {
                        ExecutorKind::Sequential => Engine::Sequential,
                        ExecutorKind::Parallel => Engine::parallel(executor_threads),
                    },
                    verify: verify_executor,
                },
            };
            let running = node::start(options, node::shutdown_on_signals()).await?;
            running.wait().await;
            Ok(())
        }
        Command::Migrate { database_url } => {
            let store = rollup_store::Store::connect(&database_url, 2).await?;
            store.migrate().await?;
            println!("migrations applied");
            Ok(())
        }
    }
}
