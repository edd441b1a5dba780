//! Postgres restarted under load: while it is down, submissions get an
//! error; once it is back, the same node accepts again, its producer leads
//! again and its batcher posts again, and every transaction it ever
//! acknowledged is included.

use crate::common::{TestNet, eventually, send_raw_transaction, signed_transfer};
use alloy::primitives::{Address, B256, Bytes, keccak256};
use rollup_devnet::{Postgres, PostgresOptions, free_port};
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};
use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::sync::watch;

const SENDERS: u32 = 8;
const TXS_PER_SENDER: u64 = 60;

fn signed(sender: u32, nonce: u64, chain_id: u64) -> Bytes {
    signed_transfer(10 + sender, chain_id, nonce, Address::repeat_byte(0x32))
}

/// What the senders saw.
#[derive(Default)]
struct Seen {
    acknowledged: Mutex<Vec<B256>>,
    /// Error answers by message (transport failures under "transport"):
    /// a group commit cut by the shutdown fails; later submissions wait for
    /// a connection (up to the pool's acquire timeout, longer than this
    /// outage) and go through once the database is back.
    errors: Mutex<BTreeMap<String, usize>>,
}

impl Seen {
    fn error(&self, message: String) {
        *self.errors.lock().unwrap().entry(message).or_default() += 1;
    }
}

/// Sends `sender`'s transactions in nonce order; a transaction that is not
/// acknowledged is sent again, identical, until it is (a wallet's retry).
/// A quarter of the way it waits for `gate` to open: the restart then comes
/// mid-load however fast the machine is.
async fn send_all(
    client: reqwest::Client,
    url: String,
    sender: u32,
    chain_id: u64,
    seen: Arc<Seen>,
    mut gate: watch::Receiver<bool>,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    for nonce in 0..TXS_PER_SENDER {
        if nonce == TXS_PER_SENDER / 4 {
            gate.wait_for(|open| *open).await.unwrap();
        }
        let raw = signed(sender, nonce, chain_id);
        loop {
            assert!(
                tokio::time::Instant::now() < deadline,
                "sender {sender} stuck at nonce {nonce}"
            );
            let message = match send_raw_transaction(&client, &url, &raw).await {
                Some(Ok(hash)) => {
                    seen.acknowledged.lock().unwrap().push(hash);
                    break;
                }
                Some(Err(message)) => message,
                None => "transport".to_owned(),
            };
            // A commit whose reply the shutdown cut may have stored it after
            // all, and the block producer included it since.
            if message == "nonce too low" && known(&client, &url, &raw).await {
                seen.acknowledged.lock().unwrap().push(keccak256(&raw));
                break;
            }
            seen.error(message);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Whether the node knows the transaction `raw`.
async fn known(client: &reqwest::Client, url: &str, raw: &Bytes) -> bool {
    let body = json!({ "jsonrpc": "2.0", "id": 1, "method": "eth_getTransactionByHash",
                       "params": [keccak256(raw)] });
    let answer = match client.post(url).json(&body).send().await {
        Ok(response) => response.json::<Value>().await.ok(),
        Err(_) => None,
    };
    answer.is_some_and(|answer| answer["result"].is_object())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_under_load_loses_no_acknowledged_transaction() {
    // A cluster of the test's own (the shared test cluster cannot restart),
    // started on the test's thread: the parent-death signal is per thread.
    let port = free_port().unwrap();
    let options = PostgresOptions { remove_on_drop: false, ..PostgresOptions::throwaway(port) };
    let cluster = Postgres::start(options.clone()).expect("start Postgres");
    let mut admin = PgConnection::connect(&cluster.url("postgres")).await.unwrap();
    sqlx::query("CREATE DATABASE rollup").execute(&mut admin).await.unwrap();
    admin.close().await.unwrap();
    let net = TestNet::start_on_database(cluster.url("rollup"), 10 + SENDERS).await;
    let chain_id = net.config.chain_id;

    let client = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
    let seen = Arc::new(Seen::default());
    let (open, gate) = watch::channel(false);
    let senders: Vec<_> = (0..SENDERS)
        .map(|sender| {
            let (client, url, seen) = (client.clone(), net.rpc_url.clone(), seen.clone());
            tokio::spawn(send_all(client, url, sender, chain_id, seen, gate.clone()))
        })
        .collect();

    let total = u64::from(SENDERS) * TXS_PER_SENDER;
    let quarter = u64::from(SENDERS) * (TXS_PER_SENDER / 4);
    eventually(60, "a quarter of the load acknowledged", || async {
        (seen.acknowledged.lock().unwrap().len() as u64 >= quarter).then_some(())
    })
    .await;
    // The senders go on, and the database stops under them (fast shutdown:
    // every session ends, the producer's lock with it).
    open.send(true).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(cluster);
    let before_restart = seen.acknowledged.lock().unwrap().len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let cluster = Postgres::start(PostgresOptions { remove_on_drop: true, ..options })
        .expect("restart Postgres");

    for sender in senders {
        sender.await.unwrap();
    }
    let acknowledged = seen.acknowledged.lock().unwrap().clone();
    assert_eq!(acknowledged.len() as u64, total, "every transaction is acknowledged in the end");
    assert!((before_restart as u64) < total, "the restart came too late to test anything");

    // Every acknowledged transaction is included: the producer led again.
    for hash in &acknowledged {
        eventually(90, "an acknowledged transaction's receipt", || async {
            let body = json!({ "jsonrpc": "2.0", "id": 1, "method": "eth_getTransactionReceipt",
                               "params": [hash] });
            let answer: Value =
                client.post(&net.rpc_url).json(&body).send().await.ok()?.json().await.ok()?;
            (answer["result"]["status"] == "0x1").then_some(())
        })
        .await;
    }
    // The batcher went on too: the last one is posted to L1.
    let last = acknowledged.last().unwrap();
    eventually(90, "the last transaction posted to L1", || async {
        let body = json!({ "jsonrpc": "2.0", "id": 1, "method": "rollup_getTransactionStatus",
                           "params": [last] });
        let answer: Value =
            client.post(&net.rpc_url).json(&body).send().await.ok()?.json().await.ok()?;
        matches!(answer["result"]["status"].as_str(), Some("posted" | "finalized")).then_some(())
    })
    .await;
    let errors = seen.errors.lock().unwrap().clone();
    assert!(
        errors.keys().all(|message| message == rollup_sequencer::rpc::error::NOT_STORED),
        "a failed commit is reported as not stored, and nothing else fails: {errors:?}"
    );
    println!(
        "{} acknowledged ({before_restart} before the restart), all included; errors: {:?}",
        acknowledged.len(),
        seen.errors.lock().unwrap()
    );
    net.stop().await;
    drop(cluster);
}
