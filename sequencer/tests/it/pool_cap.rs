//! The pool-wide cap holds across API processes on one database: each one
//! counts what the others pooled (the pool census, once a second).

use crate::common::{TestNet, eventually, metric, send_raw_transaction, signed_transfer};
use alloy::primitives::{Address, B256, Bytes};
use rollup_sequencer::{node::Roles, pool::PoolLimits};

const CAP: usize = 12;

/// A transfer with a nonce gap (nonce 1 and up, the sender's state nonce is
/// 0): it stays pending, queued, however many blocks pass.
fn queued(sender: u32, nonce: u64, chain_id: u64) -> Bytes {
    assert!(nonce >= 1);
    signed_transfer(10 + sender, chain_id, nonce, Address::repeat_byte(0x33))
}

/// Sends `raw`; the hash, or the error message.
async fn send(client: &reqwest::Client, url: &str, raw: Bytes) -> Result<B256, String> {
    send_raw_transaction(client, url, &raw).await.expect("an answer")
}

/// Waits until the process with metrics at `metrics_url` has counted
/// `count` pending transactions of other processes in a census.
async fn census_counts(metrics_url: &str, count: f64) {
    eventually(30, "a census that counts the other process's transactions", || async {
        let elsewhere = metric(metrics_url, "rollup_mempool_pending_elsewhere").await?;
        (elsewhere == count).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_wide_cap_holds_across_api_processes() {
    let limits = PoolLimits { max_total: CAP, ..PoolLimits::default() };
    let net = TestNet::start_with_pool_limits(20, limits).await;
    let chain_id = net.config.chain_id;
    let other =
        net.start_node_with_pool_limits(Roles { api: true, ..Roles::default() }, limits).await;
    let other_url = other.rpc_url.clone().unwrap();
    let client = reqwest::Client::new();

    // Two thirds of the cap through the first process.
    for sender in 0..2 {
        for nonce in 1..=4 {
            send(&client, &net.rpc_url, queued(sender, nonce, chain_id)).await.unwrap();
        }
    }
    census_counts(&other.metrics_url, 8.0).await;

    // The other process has room for the last third only.
    for nonce in 1..=4 {
        send(&client, &other_url, queued(2, nonce, chain_id)).await.unwrap();
    }
    // The first process's census sees all twelve; the other's next one (its
    // own four committed, a second apart) counts the first's eight again.
    census_counts(&net.metrics_url, 4.0).await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let refused = send(&client, &other_url, queued(3, 1, chain_id)).await;
    assert_eq!(refused, Err("txpool is full".to_owned()), "the other process counts the first's");
    // And the first counts the other's.
    let refused = send(&client, &net.rpc_url, queued(4, 1, chain_id)).await;
    assert_eq!(refused, Err("txpool is full".to_owned()), "the first process counts the other's");

    other.stop().await;
    net.stop().await;
}
