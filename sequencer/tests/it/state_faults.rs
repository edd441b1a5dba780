//! The block producer crashes (process abort, no cleanup) at every step of a
//! block commit; after a restart the chain of state roots equals an
//! uninterrupted run on the same input, and every transaction is included
//! exactly once.
//!
//! The input is fixed before the producer starts (a mempool of interleaved
//! transfers and a small block gas limit), so each block's transactions are
//! the same in every run and are compared with a run that never crashed.
//! Block timestamps come from the wall clock (and the EIP-4788 system call
//! stores them in the state), so the roots are compared with an uninterrupted
//! re-execution of the same blocks (transactions and timestamps) from
//! genesis. `FAULT_ROUNDS` (default 1) repeats the crashes at later blocks.

use crate::common::signed_transfer;
use alloy::primitives::{Address, B256, U256, keccak256};
use rollup_batcher::{codec::BatchBlock, derive::replay};
use rollup_devnet::free_port;
use rollup_executor::{
    ChainConfig,
    genesis::{ChainGenesis, funded_genesis},
};
use rollup_sequencer::dev::dev_key;
use rollup_store::{NewTransaction, Store, testing::TestDatabase};
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

/// Every step of `Store::commit_block`, in order, and the commit of
/// `Store::advance_state_checkpoint`.
const COMMIT_STEPS: &[&str] = &[
    "commit:begin",
    "commit:after_block",
    "commit:after_body",
    "commit:after_diff",
    "commit:before_commit",
    "commit:after_commit",
    "checkpoint:before_commit",
];
const SENDERS: u32 = 6;
const TXS_PER_SENDER: u64 = 12;
/// Eight transfers per block: 72 transfers make nine blocks.
const BLOCK_GAS_LIMIT: u64 = 8 * 21_000;

/// A chain config and genesis with a small block gas limit.
fn write_chain(dir: &Path) -> (PathBuf, ChainConfig) {
    let mut config = ChainConfig::dev_defaults();
    config.block_gas_limit = BLOCK_GAS_LIMIT;
    let senders = (0..SENDERS).map(|i| dev_key(i).unwrap().address());
    let genesis = funded_genesis(&config, 1_700_000_000, senders, U256::from(10u128.pow(20)));
    let chain_path = dir.join("chain.toml");
    std::fs::write(
        chain_path.with_file_name("genesis.json"),
        serde_json::to_string_pretty(&genesis).unwrap(),
    )
    .unwrap();
    config.genesis.hash = ChainGenesis::from_genesis(&config, &genesis).hash;
    config.save(&chain_path).unwrap();
    (chain_path, config)
}

/// The same transactions for every run, interleaved across senders.
fn input(config: &ChainConfig) -> Vec<NewTransaction> {
    let mut txs = Vec::new();
    for nonce in 0..TXS_PER_SENDER {
        for sender in 0..SENDERS {
            let to = Address::with_last_byte(0xa0 + sender as u8);
            let raw = signed_transfer(sender, config.chain_id, nonce, to);
            txs.push(NewTransaction {
                hash: keccak256(&raw),
                sender: dev_key(sender).unwrap().address(),
                nonce,
                raw,
                replaces: None,
            });
        }
    }
    txs
}

/// Runs a producer-only node until it exits (a failpoint fired) or, with no
/// failpoint, until the mempool is empty.
async fn run_producer(chain_path: &Path, db: &TestDatabase, failpoint: Option<String>) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rollup-node"));
    command
        .arg("run")
        .arg("--chain-config")
        .arg(chain_path)
        .args(["--database-url", &db.url])
        .args(["--l1-rpc-url", "http://127.0.0.1:9"])
        .args(["--roles", "producer"])
        .args(["--metrics-addr", &format!("127.0.0.1:{}", free_port().unwrap())])
        .env_remove("ROLLUP_FAILPOINT")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(point) = &failpoint {
        command.env("ROLLUP_FAILPOINT", point);
    }
    let mut child = command.spawn().expect("spawn rollup-node run");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(failpoint.is_some(), "the producer exited by itself: {status}");
            return;
        }
        if failpoint.is_none() && db.store.pending_count().await.unwrap() == 0 {
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            child.wait().unwrap();
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "producer run with {failpoint:?} timed out"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What a run produced: each block's transactions, and each block's
/// (hash, state root) as stored and as an uninterrupted replay computes them.
struct Chain {
    transactions: Vec<Vec<B256>>,
    stored: Vec<(B256, B256)>,
    replayed: Vec<(B256, B256)>,
}

async fn read_chain(store: &Store, config: &ChainConfig, chain_path: &Path) -> Chain {
    let head = store.head_number().await.unwrap();
    let mut transactions = Vec::new();
    let mut stored = Vec::new();
    let mut blocks = Vec::new();
    for number in 1..=head {
        let block = store.block_by_number(number).await.unwrap().unwrap();
        let txs = store.block_transactions(number).await.unwrap();
        transactions.push(txs.iter().map(|t| t.hash).collect());
        stored.push((block.hash, block.header.state_root));
        blocks.push(BatchBlock {
            number,
            timestamp: block.header.timestamp,
            transactions: txs.iter().map(|t| t.raw.clone()).collect(),
        });
    }
    let genesis = ChainGenesis::load(config, &config.genesis_path(chain_path)).unwrap();
    let replayed = replay(config, genesis, blocks)
        .expect("the stored blocks re-execute")
        .into_iter()
        .map(|b| (b.hash, b.state_root))
        .collect();
    Chain { transactions, stored, replayed }
}

async fn fresh_run(dir: &Path, failpoint: Option<String>) -> Chain {
    let (chain_path, config) = write_chain(dir);
    let db = TestDatabase::new().await;
    let genesis = ChainGenesis::load(&config, &config.genesis_path(&chain_path)).unwrap();
    db.store.init_genesis(config.chain_id, &genesis).await.unwrap();
    db.store.insert_transactions(&input(&config)).await.unwrap();
    if failpoint.is_some() {
        run_producer(&chain_path, &db, failpoint).await;
    }
    run_producer(&chain_path, &db, None).await;
    // The head-state tables catch up with every diff, in one step, to the
    // head's state root.
    let head = db.store.head_number().await.unwrap();
    assert_eq!(db.store.advance_state_checkpoint(u64::MAX).await.unwrap(), head);
    let (mut state, header, _) = db.store.load_head_state().await.unwrap();
    assert_eq!(state.state_root(), header.state_root, "the checkpoint reloads to the head's root");
    read_chain(&db.store, &config, &chain_path).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_crashes_at_every_commit_step_change_no_state_root() {
    let rounds: u64 = std::env::var("FAULT_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    let dir = tempfile::tempdir().unwrap();
    let reference = fresh_run(dir.path(), None).await;
    let expected_txs = (u64::from(SENDERS) * TXS_PER_SENDER) as usize;
    assert_eq!(reference.transactions.iter().map(Vec::len).sum::<usize>(), expected_txs);
    assert_eq!(reference.transactions.len(), expected_txs.div_ceil(8), "eight per block");
    assert_eq!(reference.stored, reference.replayed);

    for round in 0..rounds {
        for step in COMMIT_STEPS {
            // Crash while committing the second block (then later ones); the
            // checkpoint at its first advance (it runs twice a second).
            let nth = if step.starts_with("checkpoint") { 1 } else { 2 + round * 3 };
            let point = format!("{step}:{nth}");
            let run = fresh_run(dir.path(), Some(point.clone())).await;
            assert_eq!(
                run.transactions, reference.transactions,
                "the same blocks, every transaction once, after a crash at {point}"
            );
            assert_eq!(
                run.stored, run.replayed,
                "hashes and state roots equal an uninterrupted run after a crash at {point}"
            );
        }
    }
}
