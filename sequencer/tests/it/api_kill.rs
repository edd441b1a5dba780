//! A separate API process killed with SIGKILL under load loses no
//! acknowledged transaction: every hash it answered is durable and included.

use crate::common::{TestNet, eventually, send_raw_transaction, signed_transfer};
use alloy::primitives::{Address, B256, Bytes};
use rollup_devnet::free_port;
use serde_json::{Value, json};
use std::{
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

const SENDERS: u32 = 16;
const TXS_PER_SENDER: u64 = 40;

fn signed(sender: u32, nonce: u64, chain_id: u64) -> Bytes {
    signed_transfer(10 + sender, chain_id, nonce, Address::repeat_byte(0x31))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_an_api_process_under_load_loses_no_acknowledged_transaction() {
    let net = TestNet::start(10 + SENDERS).await;
    let chain_id = net.config.chain_id;
    let port = free_port().unwrap();
    let api_url = format!("http://127.0.0.1:{port}");
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut api = Command::new(env!("CARGO_BIN_EXE_rollup-node"))
        .arg("run")
        .arg("--chain-config")
        .arg(&net.chain_path)
        .args(["--database-url", net.database_url()])
        .args(["--l1-rpc-url", &net.anvil.url()])
        .args(["--roles", "api"])
        .args(["--rpc-addr", &format!("127.0.0.1:{port}")])
        .args(["--metrics-addr", &format!("127.0.0.1:{}", free_port().unwrap())])
        .stdin(Stdio::null())
        .stdout(log.reopen().unwrap())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    eventually(60, "the API process to answer", || async {
        let body = json!({ "jsonrpc": "2.0", "id": 1, "method": "eth_chainId" });
        client.post(&api_url).json(&body).send().await.ok().map(|_| ())
    })
    .await;

    // Each sender sends its transactions one after another; all senders at once.
    let acknowledged: Arc<Mutex<Vec<B256>>> = Arc::default();
    let mut senders = Vec::new();
    for sender in 0..SENDERS {
        let (client, url, acknowledged) = (client.clone(), api_url.clone(), acknowledged.clone());
        senders.push(tokio::spawn(async move {
            for nonce in 0..TXS_PER_SENDER {
                let raw = signed(sender, nonce, chain_id);
                match send_raw_transaction(&client, &url, &raw).await {
                    Some(Ok(hash)) => acknowledged.lock().unwrap().push(hash),
                    _ => return,
                }
            }
        }));
    }
    // Kill the API process mid-load.
    let total = u64::from(SENDERS) * TXS_PER_SENDER;
    eventually(60, "a third of the load acknowledged", || async {
        (acknowledged.lock().unwrap().len() as u64 >= total / 3).then_some(())
    })
    .await;
    api.kill().unwrap();
    api.wait().unwrap();
    for sender in senders {
        sender.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!((acknowledged.len() as u64) < total, "the kill came too late to test anything");

    // Every acknowledged transaction is included (through the other node).
    for hash in &acknowledged {
        eventually(60, "an acknowledged transaction's receipt", || async {
            let body = json!({ "jsonrpc": "2.0", "id": 1, "method": "eth_getTransactionReceipt", "params": [hash] });
            let answer: Value = client.post(&net.rpc_url).json(&body).send().await.ok()?.json().await.ok()?;
            (answer["result"]["status"] == "0x1").then_some(())
        })
        .await;
    }
    println!("{} acknowledged before SIGKILL, all included", acknowledged.len());
    net.stop().await;
}
