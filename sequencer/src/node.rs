//! Wiring of the roles into one process: any set of API, block producer,
//! batcher and proposer, over one database and one chain config.

use crate::{
    chain_view::{self, ChainView},
    metrics::{NodeMetrics, ops_router},
    producer::BlockProducer,
    rpc::{self, RpcContext},
};
use alloy::signers::local::PrivateKeySigner;
use eyre::WrapErr;
use rollup_batcher::{BatchPoster, BatcherConfig, L1Metrics, Proposer, l1};
use rollup_executor::{ChainConfig, genesis::ChainGenesis};
use rollup_store::Store;
use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};
use tokio::{net::TcpListener, sync::watch, task::JoinSet};

/// The roles a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Roles {
    /// JSON-RPC front door.
    pub api: bool,
    /// Block producer.
    pub producer: bool,
    /// Batch poster.
    pub batcher: bool,
    /// State-root proposer.
    pub proposer: bool,
}

impl Roles {
    /// Every role.
    pub const ALL: Self = Self { api: true, producer: true, batcher: true, proposer: true };

    /// Parses a comma-separated list (`api,producer,batcher,proposer` or `all`).
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut roles = Self::default();
        for role in list.split(',').map(str::trim).filter(|r| !r.is_empty()) {
            match role {
                "all" => roles = Self::ALL,
                "api" => roles.api = true,
                "producer" => roles.producer = true,
                "batcher" => roles.batcher = true,
                "proposer" => roles.proposer = true,
                other => return Err(format!("unknown role {other:?}")),
            }
        }
        Ok(roles)
    }
}

/// Fewest blocks of state history a node keeps: a simulated call reads its
/// block's state through the history while the head moves on (a call may
/// take `--simulation-timeout-ms`, 5 s or 20 blocks of 250 ms, by default;
/// one that outlives the window answers the historical-state error).
pub const MIN_STATE_HISTORY_BLOCKS: usize = 64;

/// Everything a node process needs.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// Path of the chain config file.
    pub chain_config: PathBuf,
    /// Postgres URL.
    pub database_url: String,
    /// L1 JSON-RPC URL.
    pub l1_rpc_url: String,
    /// Roles to run.
    pub roles: Roles,
    /// JSON-RPC listen address.
    pub rpc_addr: SocketAddr,
    /// Metrics/health listen address.
    pub metrics_addr: SocketAddr,
    /// The batcher's L1 key (required with the batcher role).
    pub batcher_key: Option<PrivateKeySigner>,
    /// The proposer's L1 key (required with the proposer role).
    pub proposer_key: Option<PrivateKeySigner>,
    /// How often the proposer proposes.
    pub proposal_interval: Duration,
    /// How often the batcher looks for new blocks.
    pub batch_interval: Duration,
    /// Tip suggested to wallets (wei).
    pub suggested_priority_fee: u128,
    /// Mempool limits.
    pub pool_limits: crate::pool::PoolLimits,
    /// Recent blocks whose state the read methods serve.
    pub state_history_blocks: usize,
    /// Keep the state diffs of this many recent blocks and prune older ones
    /// (`None`: keep all). At least `state_history_blocks`, and at least the
    /// challenge window once the settlement contract has one.
    pub diff_retention_blocks: Option<u64>,
    /// How long dropped transactions keep their lifecycle (reason) before
    /// they are deleted (`None`: keep them).
    pub dropped_retention: Option<Duration>,
    /// JSON-RPC server limits and admin token.
    pub rpc_limits: crate::rpc::limits::RpcLimits,
    /// The block producer's execution engine and verification mode.
    pub executor: crate::producer::ExecutorOptions,
}

/// Addresses a running node listens on.
#[derive(Debug, Clone, Copy)]
pub struct NodeAddresses {
    /// JSON-RPC.
    pub rpc: Option<SocketAddr>,
    /// Metrics and health.
    pub metrics: SocketAddr,
}

/// A started node: its addresses and its tasks.
#[derive(Debug)]
pub struct RunningNode {
    /// Where it listens.
    pub addresses: NodeAddresses,
    tasks: JoinSet<()>,
}

impl RunningNode {
    /// Waits until every task has stopped (after shutdown fired).
    pub async fn wait(mut self) {
        while let Some(result) = self.tasks.join_next().await {
            if let Err(error) = result {
                tracing::error!(%error, "a node task panicked");
            }
        }
    }
}

/// Connects, migrates, writes or checks genesis and starts the roles.
pub async fn start(
    options: NodeOptions,
    shutdown: watch::Receiver<bool>,
) -> eyre::Result<RunningNode> {
    let config = ChainConfig::load(&options.chain_config)?;
    let genesis = ChainGenesis::load(&config, &config.genesis_path(&options.chain_config))?;
    let store =
        Store::connect(&options.database_url, 32).await.wrap_err("connect to the database")?;
    store.migrate().await?;
    store.init_genesis(config.chain_id, &genesis).await?;
    drop(genesis);

    let metrics = NodeMetrics::new()?;
    let l1_metrics = L1Metrics::new(&metrics.registry)?;
    if options.state_history_blocks < MIN_STATE_HISTORY_BLOCKS {
        eyre::bail!(
            "the state history window ({} blocks) is below {MIN_STATE_HISTORY_BLOCKS} blocks: \
             simulated calls read their block's state through it while the head moves on",
            options.state_history_blocks
        );
    }
    let view = ChainView::load(&store, options.pool_limits, options.state_history_blocks).await?;
    metrics.head_block.set(view.number() as i64);
    let mut tasks = JoinSet::new();

    if options.roles.producer {
        let producer =
            BlockProducer::new(config.clone(), store.clone(), view.clone(), metrics.clone())
                .await?
                .with_executor(options.executor);
        tasks.spawn(producer.run(shutdown.clone()));
        tasks.spawn(advance_state_checkpoint(store.clone(), metrics.clone(), shutdown.clone()));
        if let Some(retention) = options.diff_retention_blocks {
            if retention < options.state_history_blocks as u64 {
                eyre::bail!(
                    "diff retention ({retention} blocks) is shorter than the state history \
                     window ({} blocks)",
                    options.state_history_blocks
                );
            }
            tasks.spawn(prune_diffs(store.clone(), retention, shutdown.clone()));
        }
        if let Some(retention) = options.dropped_retention {
            tasks.spawn(prune_dropped(store.clone(), retention, shutdown.clone()));
        }
    }
    if options.roles.api {
        // Also with a producer: it may be a standby while another process leads.
        tasks.spawn(chain_view::follow(view.clone(), store.clone(), shutdown.clone()));
        tasks.spawn(expire_pooled(view.clone(), store.clone(), shutdown.clone()));
        tasks.spawn(census_pool(
            view.clone(),
            store.clone(),
            metrics.clone(),
            !options.roles.producer,
            shutdown.clone(),
        ));
    }
    if options.roles.batcher {
        let key = options
            .batcher_key
            .clone()
            .ok_or_else(|| eyre::eyre!("the batcher role needs a batcher key"))?;
        let provider = l1::signing_provider(&options.l1_rpc_url, key)?;
        let batcher_config = BatcherConfig {
            poll_interval: options.batch_interval,
            l1_start_block: config.l1.start_block,
            ..BatcherConfig::default()
        };
        let poster = BatchPoster::new(
            store.clone(),
            provider,
            config.l1.settlement_contract,
            batcher_config,
            l1_metrics.clone(),
        );
        tasks.spawn(poster.run(shutdown.clone()));
    }
    if options.roles.proposer {
        let key = options
            .proposer_key
            .clone()
            .ok_or_else(|| eyre::eyre!("the proposer role needs a proposer key"))?;
        let provider = l1::signing_provider(&options.l1_rpc_url, key)?;
        let proposer = Proposer::new(
            store.clone(),
            provider,
            config.l1.settlement_contract,
            options.proposal_interval,
            l1_metrics,
        );
        tasks.spawn(proposer.run(shutdown.clone()));
    }

    let metrics_listener =
        TcpListener::bind(options.metrics_addr).await.wrap_err("bind the metrics address")?;
    let metrics_addr = metrics_listener.local_addr()?;
    let ops = ops_router(metrics.registry.clone(), store.clone());
    tasks.spawn(serve(metrics_listener, ops, shutdown.clone()));

    let mut rpc_addr = None;
    if options.roles.api {
        let context = Arc::new(RpcContext {
            config: config.clone(),
            store: store.clone(),
            view: view.clone(),
            metrics: metrics.clone(),
            suggested_priority_fee: options.suggested_priority_fee,
            intake: crate::intake::Intake::spawn(intake_store(&options.database_url).await?),
            limiter: Arc::new(crate::rpc::limits::RateLimiter::new(
                options.rpc_limits.rate_per_second,
                options.rpc_limits.burst,
            )),
            limits: options.rpc_limits.clone(),
            filters: Default::default(),
            simulations: crate::rpc::simulation::Simulations::new(
                options.rpc_limits.max_simulations,
                options.rpc_limits.simulation_timeout,
                &metrics,
            ),
        });
        let listener =
            TcpListener::bind(options.rpc_addr).await.wrap_err("bind the JSON-RPC address")?;
        rpc_addr = Some(listener.local_addr()?);
        tasks.spawn(serve(listener, rpc::router(context), shutdown.clone()));
    }
    tracing::info!(rpc = ?rpc_addr, metrics = %metrics_addr, roles = ?options.roles, "node started");
    Ok(RunningNode { addresses: NodeAddresses { rpc: rpc_addr, metrics: metrics_addr }, tasks })
}

/// The group commit's own connections, one per commit in flight: never
/// queued behind the producer's or the readers' queries, and not pinged
/// before each use (sqlx's default, a round trip more per group commit; a
/// broken connection fails its group, whose submitters get an error, and is
/// replaced).
async fn intake_store(database_url: &str) -> eyre::Result<Store> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(crate::intake::COMMITS_IN_FLIGHT as u32)
        .test_before_acquire(false)
        .acquire_timeout(Duration::from_secs(10))
        .connect(database_url)
        .await
        .wrap_err("connect the group commit to the database")?;
    Ok(Store::from_pool(pool))
}

/// Drops transactions that waited longer than the pool's lifetime.
async fn expire_pooled(view: ChainView, store: Store, mut shutdown: watch::Receiver<bool>) {
    while sleep_unless_stopped(Duration::from_secs(30), &mut shutdown).await {
        let expired = view.pool().expire();
        if expired.is_empty() {
            continue;
        }
        if let Err(error) = store.expire_transactions(&expired).await {
            tracing::warn!(%error, count = expired.len(), "cannot mark expired transactions");
        } else {
            tracing::info!(count = expired.len(), "expired pooled transactions");
        }
    }
}

/// How often an API process counts the database's pending transactions
/// for the pool-wide cap (see [`crate::pool::TxPool::census`]).
const POOL_CENSUS_INTERVAL: Duration = Duration::from_secs(1);

/// Counts the database's pending transactions, every API process's, so
/// that the pool-wide cap holds across processes; sets the pending gauge
/// too when no producer in this process does.
async fn census_pool(
    view: ChainView,
    store: Store,
    metrics: NodeMetrics,
    set_pending_gauge: bool,
    mut shutdown: watch::Receiver<bool>,
) {
    while sleep_unless_stopped(POOL_CENSUS_INTERVAL, &mut shutdown).await {
        let own = view.pool().len();
        match store.pending_count().await {
            Ok(pending) => {
                let elsewhere = view.pool().census(usize::try_from(pending).unwrap_or(0), own);
                metrics.mempool_pending_elsewhere.set(elsewhere as i64);
                if set_pending_gauge {
                    metrics.mempool_pending.set(pending);
                }
            }
            Err(error) => tracing::warn!(%error, "cannot count the pending transactions"),
        }
    }
}

/// Blocks folded into the head-state tables per database transaction.
const CHECKPOINT_BLOCKS: u64 = 64;

/// Keeps the head-state tables following the committed diffs: every
/// `CHECKPOINT_INTERVAL`, folds the new blocks' diffs in (a standby runs it
/// too; the checkpoint row serializes them).
async fn advance_state_checkpoint(
    store: Store,
    metrics: NodeMetrics,
    mut shutdown: watch::Receiver<bool>,
) {
    // Each fold rewrites every account its blocks touched once, so a longer
    // interval writes a hot account (a busy sender) once per interval
    // instead of once per 500 ms; start-up replays at most this much more.
    const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(2);
    while sleep_unless_stopped(CHECKPOINT_INTERVAL, &mut shutdown).await {
        let started = std::time::Instant::now();
        match store.advance_state_checkpoint(CHECKPOINT_BLOCKS).await {
            Ok(through) => {
                metrics.state_checkpoint_block.set(through as i64);
                metrics.state_checkpoint_seconds.observe(started.elapsed().as_secs_f64());
            }
            Err(error) => tracing::warn!(%error, "cannot advance the state checkpoint"),
        }
    }
}

/// Deletes state diffs older than the retention window, once a minute.
async fn prune_diffs(store: Store, retention: u64, mut shutdown: watch::Receiver<bool>) {
    while sleep_unless_stopped(Duration::from_secs(60), &mut shutdown).await {
        let result = match store.head_number().await {
            Ok(head) => store.prune_state_diffs(head.saturating_sub(retention)).await,
            Err(error) => Err(error),
        };
        match result {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, retention, "pruned old state diffs"),
            Err(error) => tracing::warn!(%error, "cannot prune state diffs"),
        }
    }
}

/// Deletes dropped transactions past their retention, every ten minutes
/// (a seq scan of the mempool table: its rows are the pending and the
/// recently dropped transactions).
async fn prune_dropped(store: Store, retention: Duration, mut shutdown: watch::Receiver<bool>) {
    while sleep_unless_stopped(Duration::from_secs(600), &mut shutdown).await {
        match store.prune_dropped_transactions(retention).await {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, ?retention, "pruned dropped transactions"),
            Err(error) => tracing::warn!(%error, "cannot prune dropped transactions"),
        }
    }
}

/// Sleeps for `period`; false if the shutdown signal came first.
pub(crate) async fn sleep_unless_stopped(
    period: Duration,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(period) => true,
        _ = shutdown.wait_for(|stop| *stop) => false,
    }
}

async fn serve(listener: TcpListener, router: axum::Router, mut shutdown: watch::Receiver<bool>) {
    use axum::serve::ListenerExt;
    // Responses go out whole in one write: nothing is gained by Nagle's
    // algorithm holding a small one back for an acknowledgement.
    let listener = listener.tap_io(|connection| {
        if let Err(error) = connection.set_nodelay(true) {
            tracing::trace!(%error, "cannot set TCP_NODELAY on a connection");
        }
    });
    let service = router.into_make_service_with_connect_info::<SocketAddr>();
    let result = axum::serve(listener, service)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await;
    if let Err(error) = result {
        tracing::error!(%error, "server failed");
    }
}

/// A channel that flips to `true` on SIGINT or SIGTERM.
pub fn shutdown_on_signals() -> watch::Receiver<bool> {
    let (sender, receiver) = watch::channel(false);
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("install the SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down");
        let _ = sender.send(true);
    });
    receiver
}
