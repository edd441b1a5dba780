//! A whole rollup for one test: a fresh database, an anvil L1, the settlement
//! contract, a chain config and a node running every role in-process.

use alloy::{
    consensus::{SignableTransaction, TxEip1559, TxEnvelope},
    eips::Encodable2718,
    primitives::{Address, B256, Bytes, TxKind, U256},
    providers::{DynProvider, Provider, ProviderBuilder},
    signers::{SignerSync, local::PrivateKeySigner},
};
use rollup_devnet::{Anvil, AnvilOptions, free_port};
use rollup_executor::ChainConfig;
use rollup_sequencer::{
    dev::{create_chain, dev_key},
    node::{self, NodeOptions, Roles, RunningNode},
    pool::PoolLimits,
    rpc::limits::RpcLimits,
};
use rollup_store::testing::TestDatabase;
use std::{future::Future, path::PathBuf, time::Duration};
use tokio::sync::watch;

pub(crate) struct TestNet {
    /// The test's own database (`None`: the caller's, at `database_url`).
    _db: Option<TestDatabase>,
    database_url: String,
    pub(crate) anvil: Anvil,
    pub(crate) config: ChainConfig,
    pub(crate) chain_path: PathBuf,
    pub(crate) rpc_url: String,
    pub(crate) metrics_url: String,
    node: Option<RunningNode>,
    shutdown: watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

impl TestNet {
    pub(crate) async fn start(accounts: u32) -> Self {
        Self::start_with_limits(accounts, RpcLimits::default()).await
    }

    /// Like [`TestNet::start`], with the given JSON-RPC limits on the first node.
    pub(crate) async fn start_with_limits(accounts: u32, limits: RpcLimits) -> Self {
        let db = TestDatabase::new().await;
        let url = db.url.clone();
        Self::start_on(Some(db), url, accounts, limits, PoolLimits::default()).await
    }

    /// Like [`TestNet::start`], with the given pool limits on the first node.
    pub(crate) async fn start_with_pool_limits(accounts: u32, pool: PoolLimits) -> Self {
        let db = TestDatabase::new().await;
        let url = db.url.clone();
        Self::start_on(Some(db), url, accounts, RpcLimits::default(), pool).await
    }

    /// Like [`TestNet::start`], on the database at `database_url` (an empty
    /// one: the node migrates it), for tests that run their own cluster.
    pub(crate) async fn start_on_database(database_url: String, accounts: u32) -> Self {
        Self::start_on(None, database_url, accounts, RpcLimits::default(), PoolLimits::default())
            .await
    }

    async fn start_on(
        db: Option<TestDatabase>,
        database_url: String,
        accounts: u32,
        limits: RpcLimits,
        pool: PoolLimits,
    ) -> Self {
        let port = free_port().unwrap();
        // On the test's own thread: the parent-death signal fires when the
        // spawning thread ends.
        let anvil = Anvil::spawn(&AnvilOptions::throwaway(port)).expect("start anvil");
        let dir = tempfile::tempdir().unwrap();
        let chain_path = dir.path().join("chain.toml");
        let [owner, batcher, proposer] = [0, 1, 2].map(|i| dev_key(i).unwrap());
        let config = create_chain(&chain_path, accounts, &anvil.url(), &owner, &batcher, &proposer)
            .await
            .expect("create chain");
        let (shutdown, receiver) = watch::channel(false);
        let mut options = node_options(&chain_path, &database_url, &anvil.url(), Roles::ALL);
        options.rpc_limits = limits;
        options.pool_limits = pool;
        let node = node::start(options, receiver).await.expect("start node");
        let rpc_url = format!("http://{}", node.addresses.rpc.unwrap());
        let metrics_url = format!("http://{}/metrics", node.addresses.metrics);
        Self {
            _db: db,
            database_url,
            anvil,
            config,
            chain_path,
            rpc_url,
            metrics_url,
            node: Some(node),
            shutdown,
            _dir: dir,
        }
    }

    /// An L2 provider signing as dev account `index`.
    pub(crate) fn l2_wallet(&self, index: u32) -> (DynProvider, PrivateKeySigner) {
        let signer = dev_key(index).unwrap();
        let provider = ProviderBuilder::new()
            .wallet(alloy::network::EthereumWallet::from(signer.clone()))
            .connect_http(self.rpc_url.parse().unwrap())
            .erased();
        (provider, signer)
    }

    pub(crate) fn l1(&self) -> DynProvider {
        ProviderBuilder::new().connect_http(self.anvil.url().parse().unwrap()).erased()
    }

    /// Starts another node with `roles` on the same database, chain and L1.
    pub(crate) async fn start_node(&self, roles: Roles) -> ExtraNode {
        self.start_node_with_pool_limits(roles, PoolLimits::default()).await
    }

    /// Like [`TestNet::start_node`], with the given pool limits.
    pub(crate) async fn start_node_with_pool_limits(
        &self,
        roles: Roles,
        pool: PoolLimits,
    ) -> ExtraNode {
        let (shutdown, receiver) = watch::channel(false);
        let mut options =
            node_options(&self.chain_path, &self.database_url, &self.anvil.url(), roles);
        options.pool_limits = pool;
        let node = node::start(options, receiver).await.expect("start node");
        let rpc_url = node.addresses.rpc.map(|a| format!("http://{a}"));
        let metrics_url = format!("http://{}/metrics", node.addresses.metrics);
        ExtraNode { node, shutdown, rpc_url, metrics_url }
    }

    /// The database URL the nodes use.
    pub(crate) fn database_url(&self) -> &str {
        &self.database_url
    }

    /// Stops the first node and waits for it.
    pub(crate) async fn stop_first_node(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(node) = self.node.take() {
            tokio::time::timeout(Duration::from_secs(30), node.wait()).await.expect("node stops");
        }
    }

    pub(crate) async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(node) = self.node.take() {
            tokio::time::timeout(Duration::from_secs(30), node.wait()).await.expect("node stops");
        }
    }
}

/// A further node on a [`TestNet`]'s database.
pub(crate) struct ExtraNode {
    node: RunningNode,
    shutdown: watch::Sender<bool>,
    pub(crate) rpc_url: Option<String>,
    pub(crate) metrics_url: String,
}

impl ExtraNode {
    pub(crate) async fn stop(self) {
        let _ = self.shutdown.send(true);
        tokio::time::timeout(Duration::from_secs(30), self.node.wait()).await.expect("node stops");
    }
}

fn node_options(
    chain_path: &std::path::Path,
    database_url: &str,
    l1_url: &str,
    roles: Roles,
) -> NodeOptions {
    NodeOptions {
        chain_config: chain_path.to_owned(),
        database_url: database_url.to_owned(),
        l1_rpc_url: l1_url.to_owned(),
        roles,
        rpc_addr: "127.0.0.1:0".parse().unwrap(),
        metrics_addr: "127.0.0.1:0".parse().unwrap(),
        batcher_key: Some(dev_key(1).unwrap()),
        proposer_key: Some(dev_key(2).unwrap()),
        proposal_interval: Duration::from_millis(500),
        batch_interval: Duration::from_millis(500),
        suggested_priority_fee: 1_000_000,
        pool_limits: PoolLimits::default(),
        state_history_blocks: rollup_sequencer::chain_view::DEFAULT_HISTORY_BLOCKS,
        diff_retention_blocks: None,
        dropped_retention: None,
        // Every block of every test also runs on the sequential engine.
        executor: rollup_sequencer::producer::ExecutorOptions {
            engine: rollup_executor::Engine::parallel(0),
            verify: true,
        },
        rpc_limits: RpcLimits::default(),
    }
}

/// Polls `check` until it yields a value or `seconds` pass.
pub(crate) async fn eventually<T, F, Fut>(seconds: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {seconds}s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Signs `tx` with `signer`; returns its EIP-2718 bytes.
pub(crate) fn sign_eip1559(signer: &PrivateKeySigner, tx: TxEip1559) -> Bytes {
    let signature = signer.sign_hash_sync(&tx.signature_hash()).unwrap();
    TxEnvelope::from(tx.into_signed(signature)).encoded_2718().into()
}

/// A transfer of 1 wei to `to` from dev account `account` (2 gwei fee cap).
pub(crate) fn signed_transfer(account: u32, chain_id: u64, nonce: u64, to: Address) -> Bytes {
    let tx = TxEip1559 {
        chain_id,
        nonce,
        gas_limit: 21_000,
        max_fee_per_gas: 2_000_000_000,
        max_priority_fee_per_gas: 1_000_000,
        to: TxKind::Call(to),
        value: U256::from(1),
        ..Default::default()
    };
    sign_eip1559(&dev_key(account).unwrap(), tx)
}

/// The value of the metric `name` (no labels) at `metrics_url`.
pub(crate) async fn metric(metrics_url: &str, name: &str) -> Option<f64> {
    let text = reqwest::get(metrics_url).await.ok()?.text().await.ok()?;
    text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Waits until the in-memory head of the node at `provider` reaches block
/// `number` (a receipt is read from the database, which the node's view
/// follows a moment later).
pub(crate) async fn head_reaches(provider: &DynProvider, number: u64) {
    eventually(30, "the node's head to reach the block", || async {
        (provider.get_block_number().await.ok()? >= number).then_some(())
    })
    .await;
}

/// Sends `raw` with `eth_sendRawTransaction`: the hash it was acknowledged
/// with, or the error's message (`None`: no answer, the connection or the
/// body failed).
pub(crate) async fn send_raw_transaction(
    client: &reqwest::Client,
    url: &str,
    raw: &Bytes,
) -> Option<Result<B256, String>> {
    let body = serde_json::json!({ "jsonrpc": "2.0", "id": 1,
                                   "method": "eth_sendRawTransaction", "params": [raw] });
    let answer: serde_json::Value =
        client.post(url).json(&body).send().await.ok()?.json().await.ok()?;
    Some(match answer["result"].as_str().and_then(|hash| hash.parse().ok()) {
        Some(hash) => Ok(hash),
        None => Err(answer["error"]["message"].as_str().unwrap_or("no message").to_owned()),
    })
}
