//! `rollup-node dev`: the whole system on one machine from embedded defaults.
//!
//! Starts a private Postgres (unless `DATABASE_URL` is given) and anvil
//! (unless `L1_RPC_URL` is given), creates the chain on first run (genesis
//! funding the standard test mnemonic's accounts, settlement contract
//! deployed with the genesis hash, chain config written), then runs every role
//! in this process. Everything lives in the data folder, so running it again
//! resumes the same chain.

use crate::node::{self, NodeOptions, Roles};
use alloy::{
    primitives::U256,
    providers::Provider,
    signers::local::{MnemonicBuilder, PrivateKeySigner, coins_bip39::English},
};
use eyre::{WrapErr, bail};
use rollup_batcher::{l1, settlement::Settlement};
use rollup_devnet::{
    Anvil, AnvilOptions, DEV_MNEMONIC, Postgres, PostgresOptions, postgres_reachable_dir,
};
use rollup_executor::{
    ChainConfig,
    config::L1Config,
    genesis::{ChainGenesis, funded_genesis},
};
use sqlx::Connection;
use std::{net::SocketAddr, path::PathBuf, time::Duration};

/// Balance of every funded dev account (10,000 ETH).
pub const DEV_BALANCE_WEI: u128 = 10_000 * 10u128.pow(18);

/// Options of the dev network.
#[derive(Debug, Clone)]
pub struct DevOptions {
    /// Folder for the chain config, genesis, anvil state and (if reachable) Postgres.
    pub data_dir: PathBuf,
    /// Number of funded L2 accounts (m/44'/60'/0'/0/i of the test mnemonic).
    pub accounts: u32,
    /// JSON-RPC listen address.
    pub rpc_addr: SocketAddr,
    /// Metrics listen address.
    pub metrics_addr: SocketAddr,
    /// Port of the private Postgres.
    pub pg_port: u16,
    /// Port of anvil.
    pub l1_port: u16,
    /// Use this database instead of starting Postgres.
    pub database_url: Option<String>,
    /// Use this L1 instead of starting anvil.
    pub l1_rpc_url: Option<String>,
}

/// Runs the dev network until SIGINT/SIGTERM.
pub async fn run(options: DevOptions) -> eyre::Result<()> {
    std::fs::create_dir_all(&options.data_dir).wrap_err("create the data folder")?;
    let data_dir = std::fs::canonicalize(&options.data_dir)?;

    let (database_url, postgres) = match &options.database_url {
        Some(url) => (url.clone(), None),
        None => {
            let pg_dir = postgres_reachable_dir(&data_dir.join("postgres"))?;
            let pg_options = PostgresOptions::persistent(pg_dir.join("data"), options.pg_port);
            // Spawned from this (the main) thread: the parent-death signal fires when
            // the spawning thread ends, so never spawn from a pooled blocking thread.
            let postgres = Postgres::start(pg_options)?;
            create_database(&postgres.url("postgres"), "rollup").await?;
            (postgres.url("rollup"), Some(postgres))
        }
    };
    let (l1_rpc_url, anvil) = match &options.l1_rpc_url {
        Some(url) => (url.clone(), None),
        None => {
            let anvil_options = AnvilOptions {
                port: options.l1_port,
                block_time_secs: Some(1),
                state_file: Some(data_dir.join("anvil-state.json")),
                log_file: data_dir.join("anvil.log"),
                remove_log_on_drop: false,
            };
            let anvil = Anvil::spawn(&anvil_options)?;
            (anvil.url(), Some(anvil))
        }
    };

    let chain_path = data_dir.join("chain.toml");
    let (owner, batcher, proposer) = (dev_key(0)?, dev_key(1)?, dev_key(2)?);
    let config = if chain_path.is_file() {
        let config = ChainConfig::load(&chain_path)?;
        check_contract(&l1_rpc_url, &config).await?;
        config
    } else {
        create_chain(&chain_path, options.accounts, &l1_rpc_url, &owner, &batcher, &proposer)
            .await?
    };

    let shutdown = node::shutdown_on_signals();
    let node = node::start(
        NodeOptions {
            chain_config: chain_path.clone(),
            database_url: database_url.clone(),
            l1_rpc_url: l1_rpc_url.clone(),
            roles: Roles::ALL,
            rpc_addr: options.rpc_addr,
            metrics_addr: options.metrics_addr,
            batcher_key: Some(batcher),
            proposer_key: Some(proposer),
            proposal_interval: Duration::from_secs(2),
            batch_interval: Duration::from_secs(1),
            suggested_priority_fee: 1_000_000,
            pool_limits: crate::pool::PoolLimits::default(),
            state_history_blocks: crate::chain_view::DEFAULT_HISTORY_BLOCKS,
            diff_retention_blocks: None,
            dropped_retention: Some(Duration::from_secs(86_400)),
            executor: crate::producer::ExecutorOptions::default(),
            rpc_limits: crate::rpc::limits::RpcLimits::default(),
        },
        shutdown,
    )
    .await?;

    let rpc = node.addresses.rpc.map(|a| format!("http://{a}")).unwrap_or_default();
    let endpoints = serde_json::json!({
        "l2_rpc": rpc,
        "l1_rpc": l1_rpc_url,
        "chain_id": config.chain_id,
        "settlement_contract": config.l1.settlement_contract,
        "database_url": database_url,
        "metrics_url": format!("http://{}/metrics", node.addresses.metrics),
        "chain_config": chain_path,
    });
    let endpoints_path = data_dir.join("endpoints.json");
    std::fs::write(&endpoints_path, serde_json::to_string_pretty(&endpoints)? + "\n")?;
    println!("dev network is up (Ctrl-C stops it); endpoints in {}:", endpoints_path.display());
    println!("{}", serde_json::to_string_pretty(&endpoints)?);

    node.wait().await;
    // Stop the servers after the node: Postgres last.
    drop(anvil);
    drop(postgres);
    Ok(())
}

/// The dev mnemonic's key at m/44'/60'/0'/0/index.
pub fn dev_key(index: u32) -> eyre::Result<PrivateKeySigner> {
    Ok(MnemonicBuilder::<English>::default().phrase(DEV_MNEMONIC).index(index)?.build()?)
}

async fn create_database(admin_url: &str, name: &str) -> eyre::Result<()> {
    let mut admin = sqlx::PgConnection::connect(admin_url).await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(name)
            .fetch_one(&mut admin)
            .await?;
    if !exists {
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await?;
    }
    Ok(())
}

/// Creates a chain: genesis funding `accounts` dev accounts, the settlement
/// contract deployed by `owner`, and the chain config at `chain_path`.
pub async fn create_chain(
    chain_path: &std::path::Path,
    accounts: u32,
    l1_rpc_url: &str,
    owner: &PrivateKeySigner,
    batcher: &PrivateKeySigner,
    proposer: &PrivateKeySigner,
) -> eyre::Result<ChainConfig> {
    let mut config = ChainConfig::dev_defaults();
    let addresses = tokio::task::spawn_blocking(move || {
        MnemonicBuilder::<English>::default()
            .phrase(DEV_MNEMONIC)
            .into_iter()
            .take(accounts as usize)
            .map(|signer| signer.map(|s| s.address()))
            .collect::<Result<Vec<_>, _>>()
    })
    .await??;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    let genesis = funded_genesis(&config, now, addresses, U256::from(DEV_BALANCE_WEI));
    let genesis_path = chain_path.with_file_name("genesis.json");
    std::fs::write(&genesis_path, serde_json::to_string_pretty(&genesis)? + "\n")?;
    config.genesis.hash = ChainGenesis::from_genesis(&config, &genesis).hash;

    let provider = l1::signing_provider(l1_rpc_url, owner.clone())?;
    let l1_chain_id = provider.get_chain_id().await?;
    let receipt = Settlement::deploy_builder(
        &provider,
        config.genesis.hash,
        config.chain_id,
        batcher.address(),
        proposer.address(),
    )
    .send()
    .await?
    .with_timeout(Some(Duration::from_secs(60)))
    .get_receipt()
    .await?;
    let Some(contract) = receipt.contract_address else {
        bail!("settlement deployment created no contract")
    };
    config.l1 = L1Config {
        chain_id: l1_chain_id,
        settlement_contract: contract,
        start_block: receipt.block_number.unwrap_or_default(),
    };
    config.validate()?;
    let tmp = chain_path.with_extension("toml.tmp");
    config.save(&tmp)?;
    std::fs::rename(&tmp, chain_path)?;
    tracing::info!(%contract, genesis = %config.genesis.hash, "created the dev chain");
    Ok(config)
}

/// The contract must still be on L1 (anvil's state file may have been removed).
async fn check_contract(l1_rpc_url: &str, config: &ChainConfig) -> eyre::Result<()> {
    let provider = l1::read_provider(l1_rpc_url)?;
    let code = provider.get_code_at(config.l1.settlement_contract).await?;
    if code.is_empty() {
        bail!(
            "the settlement contract {} is not on L1 {l1_rpc_url}: the L1 state was lost; \
             remove the data folder to start a new chain",
            config.l1.settlement_contract
        );
    }
    let genesis =
        Settlement::new(config.l1.settlement_contract, provider).genesisHash().call().await?;
    if genesis != config.genesis.hash {
        bail!(
            "the settlement contract records genesis {genesis}, the chain config says {}",
            config.genesis.hash
        );
    }
    Ok(())
}
