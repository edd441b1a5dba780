//! `rollup-node dev` killed with SIGKILL after acknowledging a transaction:
//! after a restart the transaction is included and no batch is posted twice.

use crate::common::eventually;
use alloy::{
    network::{EthereumWallet, TransactionBuilder},
    primitives::{Address, U256},
    providers::{Provider, ProviderBuilder},
    rpc::types::TransactionRequest,
};
use rollup_batcher::derive::read_batches;
use rollup_devnet::free_port;
use rollup_sequencer::dev::dev_key;
use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

struct DevProcess(Child);

impl DevProcess {
    fn spawn(data_dir: &Path, ports: [u16; 4], log: &Path) -> Self {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_rollup-node"))
            .arg("dev")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--accounts", "5"])
            .args(["--rpc-addr", &format!("127.0.0.1:{}", ports[0])])
            .args(["--metrics-addr", &format!("127.0.0.1:{}", ports[1])])
            .args(["--pg-port", &ports[2].to_string()])
            .args(["--l1-port", &ports[3].to_string()])
            .env_remove("DATABASE_URL")
            .env_remove("L1_RPC_URL")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn rollup-node dev");
        Self(child)
    }

    fn kill_hard(&mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }

    fn terminate(&mut self) {
        // SAFETY: kill(2) on our own child.
        unsafe {
            libc::kill(self.0.id() as i32, libc::SIGTERM);
        }
        let _ = self.0.wait();
    }
}

impl Drop for DevProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            self.terminate();
        }
    }
}

async fn wait_for_endpoints(data_dir: &Path, log: &Path) -> serde_json::Value {
    let path = data_dir.join("endpoints.json");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    loop {
        if let Ok(text) = std::fs::read_to_string(&path)
            && let Ok(value) = serde_json::from_str(&text)
        {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "dev network did not come up; log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_dev_loses_no_acknowledged_transaction_and_posts_no_batch_twice() {
    let dir = tempfile::Builder::new().prefix("rollup-crash-").tempdir_in("/tmp").unwrap();
    let data_dir = dir.path().join("dev");
    let log = dir.path().join("dev.log");
    let ports =
        [free_port().unwrap(), free_port().unwrap(), free_port().unwrap(), free_port().unwrap()];

    let mut dev = DevProcess::spawn(&data_dir, ports, &log);
    let endpoints = wait_for_endpoints(&data_dir, &log).await;
    let l2_url: String = endpoints["l2_rpc"].as_str().unwrap().into();
    let l1_url: String = endpoints["l1_rpc"].as_str().unwrap().into();
    let contract: Address = endpoints["settlement_contract"].as_str().unwrap().parse().unwrap();

    let signer = dev_key(3).unwrap();
    let l2 = ProviderBuilder::new()
        .wallet(EthereumWallet::from(signer.clone()))
        .connect_http(l2_url.parse().unwrap());
    let recipient = Address::repeat_byte(0x77);
    // A first transfer, so a batch exists before the crash.
    let first = l2
        .send_transaction(
            TransactionRequest::default().with_to(recipient).with_value(U256::from(1)),
        )
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let l1 = ProviderBuilder::new().connect_http(l1_url.parse().unwrap()).erased();
    let first_block = first.block_number.unwrap();
    eventually(90, "the first batch on L1", || async {
        let batches = read_batches(&l1, contract, 0).await.ok()?;
        batches.iter().any(|b| b.last_block >= first_block).then_some(())
    })
    .await;

    // Acknowledged, then the whole process dies at once.
    let pending = l2
        .send_transaction(
            TransactionRequest::default().with_to(recipient).with_value(U256::from(2)),
        )
        .await
        .unwrap();
    let acknowledged = *pending.tx_hash();
    dev.kill_hard();
    std::fs::remove_file(data_dir.join("endpoints.json")).unwrap();
    // Give the orphaned Postgres and anvil their parent-death signal.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut dev = DevProcess::spawn(&data_dir, ports, &log);
    let endpoints = wait_for_endpoints(&data_dir, &log).await;
    assert_eq!(
        endpoints["settlement_contract"].as_str().unwrap().parse::<Address>().unwrap(),
        contract
    );
    let receipt = eventually(60, "the acknowledged transaction's receipt", || async {
        l2.get_transaction_receipt(acknowledged).await.ok().flatten()
    })
    .await;
    assert!(receipt.status());
    assert_eq!(l2.get_balance(recipient).await.unwrap(), U256::from(3));

    let last = receipt.block_number.unwrap();
    let batches = eventually(90, "a batch covering the acknowledged transaction", || async {
        let batches = read_batches(&l1, contract, 0).await.ok()?;
        batches.iter().any(|b| b.last_block >= last).then_some(batches)
    })
    .await;
    let mut next_block = 1;
    for (i, batch) in batches.iter().enumerate() {
        assert_eq!(batch.index, i as u64, "one batch per index");
        assert_eq!(batch.first_block, next_block, "no block posted twice or skipped");
        next_block = batch.last_block + 1;
    }
    dev.terminate();
}
