//! `make bench-state`: state-root update time per block against state size,
//! block commit time to Postgres (fsync on) and start-up time. Prints one
//! JSON line per case with the median of the repetitions:
//!
//! ```text
//! {"case":"root","touched":10000,"total":1000000,"ms":..}
//! {"case":"commit","txs":10000,"ms":..}
//! {"case":"checkpoint","txs":10000,"ms":..}
//! {"case":"startup","total":1000000,"ms":..}
//! {"case":"startup_rebuild","total":1000000,"ms":..}
//! ```
//!
//! `startup` loads from the state snapshot (the normal start); `startup_rebuild`
//! reads the state tables and rebuilds both tries (no usable snapshot).
//!
//! Knobs (environment): `BENCH_RUNS` (repetitions, default 5),
//! `BENCH_TOTALS` (state sizes, default `10000,100000,1000000`),
//! `BENCH_TOUCHED` (default `1000,10000`), `BENCH_COMMIT_TXS` (default 10000),
//! `BENCH_CASES` (default `root,commit,startup`).

use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy_primitives::{Address, TxKind, U256, keccak256};
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;
use rayon::prelude::*;
use rollup_devnet::{Postgres, PostgresOptions, free_port};
use rollup_executor::{
    ChainConfig, Engine, InvalidTxPolicy, MemoryState, ParentBlock, RecoveredTx, StateDiff,
    execute_block,
    genesis::{ChainGenesis, funded_genesis},
    state::{AccountDiff, BasicAccount},
};
use rollup_store::{NewTransaction, Store};
use sqlx::{Connection, PgConnection};
use std::time::Instant;

fn knob(name: &str, default: &str) -> Vec<u64> {
    std::env::var(name)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .map(|v| v.trim().parse().unwrap_or_else(|_| panic!("{name}: bad number {v:?}")))
        .collect()
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn address(i: u64) -> Address {
    Address::from_word(keccak256(i.to_be_bytes()))
}

/// A state of `total` funded accounts with its trie built.
fn state_of(total: u64) -> MemoryState {
    let mut state = MemoryState::new();
    for i in 0..total {
        state.insert_account(address(i), BasicAccount::with_balance(U256::from(10u64.pow(18))));
    }
    state.state_root();
    state
}

/// A diff moving the balance of `touched` accounts spread over the state.
fn touch(state: &MemoryState, total: u64, touched: u64, round: u64) -> StateDiff {
    let mut diff = StateDiff::default();
    let step = (total / touched).max(1);
    for k in 0..touched {
        let address = address((k * step + round) % total);
        let before = state.account(&address);
        let after = before.map(|b| BasicAccount { balance: b.balance + U256::from(1), ..b });
        diff.accounts.insert(address, AccountDiff { before, after, ..Default::default() });
    }
    diff
}

fn bench_root(runs: u64, totals: &[u64], touched: &[u64]) {
    for &total in totals {
        let mut state = state_of(total);
        for &touched in touched.iter().filter(|&&t| t <= total) {
            let samples = (0..runs)
                .map(|round| {
                    let diff = touch(&state, total, touched, round);
                    state.apply(&diff);
                    let started = Instant::now();
                    state.state_root();
                    started.elapsed().as_secs_f64() * 1e3
                })
                .collect();
            println!(
                r#"{{"case":"root","touched":{touched},"total":{total},"ms":{:.2}}}"#,
                median(samples)
            );
        }
    }
}

fn signer(i: u64) -> PrivateKeySigner {
    PrivateKeySigner::from_bytes(&keccak256((i + 1).to_be_bytes())).expect("valid key")
}

/// One signed transfer per sender at `nonce`, to fresh recipients.
fn transfers(config: &ChainConfig, signers: &[PrivateKeySigner], nonce: u64) -> Vec<RecoveredTx> {
    signers
        .par_iter()
        .enumerate()
        .map(|(i, signer)| {
            let tx = TxEip1559 {
                chain_id: config.chain_id,
                nonce,
                gas_limit: 21_000,
                max_fee_per_gas: 10_000_000_000,
                max_priority_fee_per_gas: 1_000_000,
                to: TxKind::Call(address(1_000_000_000 + nonce * 1_000_000 + i as u64)),
                value: U256::from(1),
                ..Default::default()
            };
            let signature = signer.sign_hash_sync(&tx.signature_hash()).expect("sign");
            let envelope: TxEnvelope = tx.into_signed(signature).into();
            RecoveredTx::new_unchecked(envelope, signer.address())
        })
        .collect()
}

async fn bench_commit(runs: u64, txs: u64, store: &Store) {
    let mut config = ChainConfig::dev_defaults();
    config.block_gas_limit = (txs + 1) * 21_000;
    let signers: Vec<_> = (0..txs).into_par_iter().map(signer).collect();
    let genesis =
        funded_genesis(&config, 0, signers.iter().map(|s| s.address()), U256::from(10u128.pow(20)));
    let mut chain = ChainGenesis::from_genesis(&config, &genesis);
    store.init_genesis(config.chain_id, &chain).await.expect("genesis");
    let (mut head, mut head_hash) = (chain.header.clone(), chain.hash);
    let (mut samples, mut checkpoints) = (Vec::new(), Vec::new());
    for round in 0..runs {
        let block = transfers(&config, &signers, round);
        let pending: Vec<NewTransaction> = block
            .iter()
            .map(|tx| NewTransaction {
                hash: *tx.inner().tx_hash(),
                sender: tx.signer(),
                nonce: round,
                raw: alloy_eips::Encodable2718::encoded_2718(tx.inner()).into(),
                replaces: None,
            })
            .collect();
        for chunk in pending.chunks(2_000) {
            store.insert_transactions(chunk).await.expect("mempool");
        }
        let parent = ParentBlock { header: &head, hash: head_hash };
        let executed = execute_block(
            &config,
            Engine::Sequential,
            &chain.state,
            parent,
            head.timestamp + 1,
            block,
            InvalidTxPolicy::Reject,
        )
        .expect("block executes");
        chain.state.apply(&executed.diff);
        let sealed = executed.seal(chain.state.state_root());
        let senders: Vec<Address> = sealed.block.transactions.iter().map(|t| t.signer()).collect();
        let started = Instant::now();
        store.commit_block(&sealed, &senders, &[]).await.expect("commit");
        samples.push(started.elapsed().as_secs_f64() * 1e3);
        let started = Instant::now();
        store.advance_state_checkpoint(1).await.expect("checkpoint");
        checkpoints.push(started.elapsed().as_secs_f64() * 1e3);
        (head, head_hash) = (sealed.block.header.clone(), sealed.hash);
    }
    println!(r#"{{"case":"commit","txs":{txs},"ms":{:.2}}}"#, median(samples));
    // Folding the same block's diff into the head-state tables, which the
    // node does in the background (`Store::advance_state_checkpoint`).
    println!(r#"{{"case":"checkpoint","txs":{txs},"ms":{:.2}}}"#, median(checkpoints));
}

async fn bench_startup(runs: u64, total: u64, admin_url: &str) {
    let store = fresh_database(admin_url, &format!("startup_{total}")).await;
    let config = ChainConfig::dev_defaults();
    let genesis = funded_genesis(&config, 0, (0..total).map(address), U256::from(1));
    let mut chain = ChainGenesis::from_genesis(&config, &genesis);
    store.init_genesis(config.chain_id, &chain).await.expect("genesis");
    let load = || async {
        let started = Instant::now();
        let (mut state, header, _) = store.load_head_state().await.expect("load");
        assert_eq!(state.state_root(), header.state_root, "reloaded root");
        started.elapsed().as_secs_f64() * 1e3
    };
    // Without a snapshot (after a crash before the first one): the tables
    // are read and both tries rebuilt.
    let mut rebuilt = Vec::new();
    for _ in 0..runs {
        rebuilt.push(load().await);
    }
    // With the snapshot a leader stores at shutdown and every ten minutes.
    store.save_state_snapshot(0, &chain.state.encode_snapshot()).await.expect("snapshot");
    let mut from_snapshot = Vec::new();
    for _ in 0..runs {
        from_snapshot.push(load().await);
    }
    println!(r#"{{"case":"startup","total":{total},"ms":{:.2}}}"#, median(from_snapshot));
    println!(r#"{{"case":"startup_rebuild","total":{total},"ms":{:.2}}}"#, median(rebuilt));
}

async fn fresh_database(admin_url: &str, name: &str) -> Store {
    let mut admin = PgConnection::connect(admin_url).await.expect("connect");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("create database");
    let url = format!("{}/{name}", admin_url.rsplit_once('/').expect("url has a database").0);
    let store = Store::connect(&url, 4).await.expect("connect");
    store.migrate().await.expect("migrate");
    store
}

fn main() {
    let runs = knob("BENCH_RUNS", "5")[0];
    let totals = knob("BENCH_TOTALS", "10000,100000,1000000");
    let touched = knob("BENCH_TOUCHED", "1000,10000");
    let commit_txs = knob("BENCH_COMMIT_TXS", "10000")[0];

    let cases = std::env::var("BENCH_CASES").unwrap_or_else(|_| "root,commit,startup".into());
    if cases.contains("root") {
        bench_root(runs, &totals, &touched);
    }
    if !cases.contains("commit") && !cases.contains("startup") {
        return;
    }

    // Durable Postgres (fsync on), private to this run, on this thread (the
    // parent-death signal follows the spawning thread).
    let port = free_port().expect("free port");
    let mut options = PostgresOptions::throwaway(port);
    options.fsync = true;
    let cluster = Postgres::start(options).expect("start Postgres");
    let admin_url = cluster.url("postgres");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio");
    runtime.block_on(async {
        if cases.contains("commit") {
            let store = fresh_database(&admin_url, "commit").await;
            bench_commit(runs, commit_txs, &store).await;
        }
        if cases.contains("startup") {
            for &total in &totals {
                bench_startup(runs, total, &admin_url).await;
            }
        }
    });
    drop(cluster);
}
