use alloy_consensus::{Header, SignableTransaction, TxEip1559};
use alloy_eips::Encodable2718;
use alloy_primitives::{Address, B256, TxKind, U256};
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;
use rollup_executor::{
    ChainConfig, Engine, InvalidTxPolicy, MemoryState, ParentBlock, RecoveredTx, SealedBlock,
    block::ExecutedBlock,
    execute_block,
    genesis::{ChainGenesis, funded_genesis},
};
use rollup_store::{MempoolStatus, NewTransaction, StoreError, testing::TestDatabase};

fn chain() -> (ChainConfig, PrivateKeySigner, ChainGenesis) {
    let mut config = ChainConfig::dev_defaults();
    let signer = PrivateKeySigner::from_bytes(&B256::repeat_byte(7)).unwrap();
    let genesis = funded_genesis(&config, 1_000, [signer.address()], U256::from(10u128.pow(20)));
    let chain = ChainGenesis::from_genesis(&config, &genesis);
    config.genesis.hash = chain.hash;
    (config, signer, chain)
}

fn transfer(config: &ChainConfig, signer: &PrivateKeySigner, nonce: u64) -> RecoveredTx {
    transfer_paying(config, signer, nonce, 1)
}

/// A transfer whose fee fields are `times` the usual ones.
fn transfer_paying(
    config: &ChainConfig,
    signer: &PrivateKeySigner,
    nonce: u64,
    times: u128,
) -> RecoveredTx {
    let tx = TxEip1559 {
        chain_id: config.chain_id,
        nonce,
        gas_limit: 21_000,
        max_fee_per_gas: 2_000_000_000 * times,
        max_priority_fee_per_gas: 1_000_000 * times,
        to: TxKind::Call(Address::repeat_byte(0xbb)),
        value: U256::from(1_000),
        ..Default::default()
    };
    let signature = signer.sign_hash_sync(&tx.signature_hash()).unwrap();
    RecoveredTx::new_unchecked(tx.into_signed(signature).into(), signer.address())
}

fn as_new(tx: &RecoveredTx) -> NewTransaction {
    NewTransaction {
        hash: *tx.inner().tx_hash(),
        sender: tx.signer(),
        nonce: alloy_consensus::Transaction::nonce(tx.inner()),
        raw: tx.inner().encoded_2718().into(),
        replaces: None,
    }
}

/// `txs` executed on `state` after the block `parent`/`parent_hash`.
fn execute(
    config: &ChainConfig,
    state: &MemoryState,
    parent: &Header,
    parent_hash: B256,
    timestamp: u64,
    txs: Vec<RecoveredTx>,
) -> ExecutedBlock {
    let parent = ParentBlock { header: parent, hash: parent_hash };
    execute_block(
        config,
        Engine::Sequential,
        state,
        parent,
        timestamp,
        txs,
        InvalidTxPolicy::Reject,
    )
    .unwrap()
}

/// `executed` applied to `state` and sealed with the new root.
fn seal(state: &mut MemoryState, executed: ExecutedBlock) -> SealedBlock {
    state.apply(&executed.diff);
    executed.seal(state.state_root())
}

#[tokio::test]
async fn genesis_is_written_once_and_guards_the_chain_identity() {
    let db = TestDatabase::new().await;
    let (config, _, genesis) = chain();
    db.store.init_genesis(config.chain_id, &genesis).await.unwrap();
    db.store.init_genesis(config.chain_id, &genesis).await.unwrap();
    let (mut state, header, hash) = db.store.load_head_state().await.unwrap();
    assert_eq!(hash, genesis.hash);
    assert_eq!(header.number, 0);
    assert_eq!(state.state_root(), genesis.header.state_root);

    let other = ChainGenesis::from_genesis(
        &config,
        &funded_genesis(&config, 2_000, [Address::repeat_byte(1)], U256::from(1)),
    );
    let err = db.store.init_genesis(config.chain_id, &other).await.unwrap_err();
    assert!(matches!(err, StoreError::WrongChain { .. }), "{err}");
}

#[tokio::test]
async fn mempool_insert_is_idempotent_and_ordered() {
    let db = TestDatabase::new().await;
    let (config, signer, _) = chain();
    let txs: Vec<_> = (0..3).map(|n| as_new(&transfer(&config, &signer, n))).collect();
    db.store.insert_transactions(&txs).await.unwrap();
    db.store.insert_transactions(&txs[..1]).await.unwrap();
    let pending = db.store.pending_transactions(0, 10).await.unwrap();
    assert_eq!(pending.len(), 3, "resubmitting identical bytes stores no second copy");
    assert_eq!(pending.iter().map(|p| p.nonce).collect::<Vec<_>>(), vec![0, 1, 2]);
    let after_first = db.store.pending_transactions(pending[0].seq, 10).await.unwrap();
    assert_eq!(after_first.iter().map(|p| p.nonce).collect::<Vec<_>>(), vec![1, 2], "next page");
    assert_eq!(db.store.pending_nonce(signer.address(), 0).await.unwrap(), 3);
    // A gap stops the count, as geth's pending nonce does.
    db.store.insert_transactions(&[as_new(&transfer(&config, &signer, 5))]).await.unwrap();
    assert_eq!(db.store.pending_nonce(signer.address(), 0).await.unwrap(), 3);
    assert_eq!(db.store.pending_nonce(signer.address(), 4).await.unwrap(), 4);
}

/// A group that races a stored hash (the same bytes twice in one group, or
/// already stored by another API process) stores its new transactions once
/// each and still applies its replacement.
#[tokio::test]
async fn a_group_holding_stored_hashes_stores_the_rest_once() {
    let db = TestDatabase::new().await;
    let (config, signer, _) = chain();
    let txs: Vec<_> = (0..4).map(|n| as_new(&transfer(&config, &signer, n))).collect();
    db.store.insert_transactions(&txs[..1]).await.unwrap();

    let bumped = transfer_paying(&config, &signer, 0, 2);
    let replacement = NewTransaction { replaces: Some(txs[0].hash), ..as_new(&bumped) };
    let group = [txs[0].clone(), txs[1].clone(), txs[1].clone(), txs[2].clone()];
    db.store.insert_transactions(&group).await.unwrap();
    let group = [txs[2].clone(), replacement.clone(), txs[3].clone(), txs[3].clone()];
    db.store.insert_transactions(&group).await.unwrap();

    let pending = db.store.pending_transactions(0, 10).await.unwrap();
    assert_eq!(
        pending.iter().map(|p| p.hash).collect::<Vec<_>>(),
        vec![txs[1].hash, txs[2].hash, replacement.hash, txs[3].hash],
        "one copy each, in arrival order, the replaced one dropped"
    );
    let (_, _, status) = db.store.mempool_transaction(txs[0].hash).await.unwrap().unwrap();
    assert_eq!(status, MempoolStatus::Dropped("replaced".into()));
}

#[tokio::test]
async fn replaced_and_expired_transactions_keep_their_reason_until_pruned() {
    let db = TestDatabase::new().await;
    let (config, signer, _) = chain();
    let txs: Vec<_> = (0..3).map(|n| as_new(&transfer(&config, &signer, n))).collect();
    db.store.insert_transactions(&txs).await.unwrap();

    // Nonce 0 again with both fees doubled: it replaces the first one.
    let bumped = transfer_paying(&config, &signer, 0, 2);
    let replacement = NewTransaction { replaces: Some(txs[0].hash), ..as_new(&bumped) };
    db.store.insert_transactions(std::slice::from_ref(&replacement)).await.unwrap();

    let status = |hash| {
        let store = db.store.clone();
        async move { store.mempool_transaction(hash).await.unwrap().unwrap().2 }
    };
    assert_eq!(status(txs[0].hash).await, MempoolStatus::Dropped("replaced".into()));
    assert_eq!(status(replacement.hash).await, MempoolStatus::Pending);

    // Expiry drops only what is still pending: the replaced one keeps its reason.
    let expired = db.store.expire_transactions(&[txs[0].hash, txs[2].hash]).await.unwrap();
    assert_eq!(expired, 1);
    assert_eq!(status(txs[0].hash).await, MempoolStatus::Dropped("replaced".into()));
    assert_eq!(status(txs[2].hash).await, MempoolStatus::Dropped("expired".into()));
    let pending = db.store.pending_transactions(0, 10).await.unwrap();
    assert_eq!(
        pending.iter().map(|p| p.hash).collect::<Vec<_>>(),
        vec![txs[1].hash, replacement.hash],
        "arrival order among what is left"
    );

    // Past their retention, dropped transactions are forgotten; pending
    // ones stay whatever their age.
    let day = std::time::Duration::from_secs(86_400);
    assert_eq!(db.store.prune_dropped_transactions(day).await.unwrap(), 0);
    let pruned = db.store.prune_dropped_transactions(std::time::Duration::ZERO).await.unwrap();
    assert_eq!(pruned, 2);
    assert!(db.store.mempool_transaction(txs[0].hash).await.unwrap().is_none());
    assert!(db.store.mempool_transaction(txs[2].hash).await.unwrap().is_none());
    assert_eq!(db.store.pending_transactions(0, 10).await.unwrap().len(), 2);
}

#[tokio::test]
async fn block_commit_is_atomic_fenced_and_reloads_to_the_same_root() {
    let db = TestDatabase::new().await;
    let (config, signer, genesis) = chain();
    db.store.init_genesis(config.chain_id, &genesis).await.unwrap();
    let txs: Vec<_> = (0..2).map(|n| transfer(&config, &signer, n)).collect();
    db.store.insert_transactions(&txs.iter().map(as_new).collect::<Vec<_>>()).await.unwrap();

    let mut state = genesis.state.clone();
    let executed = execute(&config, &state, &genesis.header, genesis.hash, 1_001, txs.clone());
    let block = seal(&mut state, executed);
    let senders = vec![signer.address(); 2];
    db.store.commit_block(&block, &senders, &[]).await.unwrap();

    // The same block again does not extend the head: fenced.
    let err = db.store.commit_block(&block, &senders, &[]).await.unwrap_err();
    assert!(matches!(err, StoreError::NotOnHead { number: 1, .. }), "{err}");

    assert_eq!(db.store.pending_count().await.unwrap(), 0);
    let stored = db.store.transaction(*txs[1].inner().tx_hash()).await.unwrap().unwrap();
    assert_eq!(stored.block_number, 1);
    assert_eq!(stored.index, 1);
    assert_eq!(stored.receipt.cumulative_gas_used(), 42_000);
    let (mut loaded, header, hash) = db.store.load_head_state().await.unwrap();
    assert_eq!(hash, block.hash);
    assert_eq!(header.state_root, block.block.header.state_root);
    assert_eq!(loaded.state_root(), block.block.header.state_root);
    assert_eq!(db.store.state_diff(1).await.unwrap().unwrap(), block.block.diff);
    let by_hash = db.store.block_by_hash(block.hash).await.unwrap().unwrap();
    assert_eq!(by_hash.transactions.len(), 2);

    // The body blob returns every transaction with its receipt, in order.
    let body = db.store.block_transactions(1).await.unwrap();
    assert_eq!(body.iter().map(|t| t.hash).collect::<Vec<_>>(), by_hash.transactions);
    for (stored, (tx, receipt)) in
        body.iter().zip(block.block.transactions.iter().zip(&block.block.receipts))
    {
        assert_eq!(stored.raw, tx.inner().encoded_2718());
        assert_eq!(stored.sender, signer.address());
        assert_eq!(&stored.receipt, receipt);
        assert_eq!(stored.block_hash, block.hash);
        assert_eq!(stored.gas_used, 21_000);
    }
    assert!(db.store.transaction(B256::repeat_byte(9)).await.unwrap().is_none());
    let batch = db.store.blocks_for_batch(0, 1).await.unwrap();
    assert_eq!(batch[0].2.len(), 0, "genesis has no transactions");
    assert_eq!(batch[1].2, body.iter().map(|t| t.raw.clone()).collect::<Vec<_>>());

    // Included transactions left the mempool and report their block; the
    // pending nonce counts from the caller's state nonce.
    assert!(db.store.mempool_transaction(*txs[0].inner().tx_hash()).await.unwrap().is_none());
    assert_eq!(db.store.pending_nonce(signer.address(), 2).await.unwrap(), 2);
    let lifecycle =
        db.store.transaction_lifecycle(*txs[0].inner().tx_hash()).await.unwrap().unwrap();
    assert_eq!((lifecycle.stage, lifecycle.block_number), ("sequenced", Some(1)));

    // Pruning keeps diffs at and above the given block, and every diff above
    // the state checkpoint (the tables do not hold those blocks yet).
    assert_eq!(db.store.state_checkpoint().await.unwrap(), 0);
    assert_eq!(db.store.prune_state_diffs(2).await.unwrap(), 0);
    assert_eq!(db.store.advance_state_checkpoint(64).await.unwrap(), 1);
    assert_eq!(db.store.advance_state_checkpoint(64).await.unwrap(), 1, "nothing new");
    let (mut from_tables, _, _) = db.store.load_head_state().await.unwrap();
    assert_eq!(from_tables.state_root(), block.block.header.state_root);
    assert_eq!(db.store.account(signer.address()).await.unwrap().unwrap().nonce, 2);
    // A caller whose view lags the checkpoint still gets the right nonce.
    assert_eq!(db.store.pending_nonce(signer.address(), 0).await.unwrap(), 2);
    assert_eq!(db.store.prune_state_diffs(1).await.unwrap(), 0);
    // ... and every diff above the newest state snapshot.
    db.store.save_state_snapshot(0, &genesis.state.clone().encode_snapshot()).await.unwrap();
    assert_eq!(db.store.prune_state_diffs(2).await.unwrap(), 0);
    db.store.save_state_snapshot(1, &state.encode_snapshot()).await.unwrap();
    assert_eq!(db.store.prune_state_diffs(2).await.unwrap(), 1);
    assert_eq!(db.store.state_diff(1).await.unwrap(), None);
}

#[tokio::test]
async fn a_diff_that_disagrees_with_the_head_state_tables_never_reaches_them() {
    let db = TestDatabase::new().await;
    let (config, signer, genesis) = chain();
    db.store.init_genesis(config.chain_id, &genesis).await.unwrap();
    let mut state = genesis.state.clone();
    let tx = transfer(&config, &signer, 0);
    let mut executed = execute(&config, &state, &genesis.header, genesis.hash, 1_001, vec![tx]);
    // Claim the fresh recipient existed before the block: the update finds no row.
    let recipient = executed.diff.accounts.get_mut(&Address::repeat_byte(0xbb)).unwrap();
    recipient.before = recipient.after;
    let block = seal(&mut state, executed);
    db.store.commit_block(&block, &[signer.address()], &[]).await.unwrap();
    let err = db.store.advance_state_checkpoint(64).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
    assert_eq!(db.store.state_checkpoint().await.unwrap(), 0, "the checkpoint did not move");
    assert!(db.store.account(Address::repeat_byte(0xbb)).await.unwrap().is_none());
}

#[tokio::test]
async fn a_state_snapshot_loads_without_the_tables_and_replays_later_blocks() {
    let db = TestDatabase::new().await;
    let (config, signer, genesis) = chain();
    db.store.init_genesis(config.chain_id, &genesis).await.unwrap();
    let mut state = genesis.state.clone();
    let (mut header, mut hash) = (genesis.header.clone(), genesis.hash);
    for nonce in 0..2 {
        let tx = transfer(&config, &signer, nonce);
        let executed = execute(&config, &state, &header, hash, 1_001 + nonce, vec![tx]);
        let block = seal(&mut state, executed);
        db.store.commit_block(&block, &[signer.address()], &[]).await.unwrap();
        if nonce == 0 {
            db.store.save_state_snapshot(1, &state.encode_snapshot()).await.unwrap();
        }
        (header, hash) = (block.block.header.clone(), block.hash);
    }
    // Tables emptied: only the snapshot (block 1) and diff 2 can give the root.
    sqlx::query("DELETE FROM accounts").execute(db.store.pool()).await.unwrap();
    let (mut loaded, head, _) = db.store.load_head_state().await.unwrap();
    assert_eq!(head.number, 2);
    assert_eq!(loaded.state_root(), header.state_root);
    assert_eq!(loaded.account(&signer.address()).unwrap().nonce, 2);

    // A snapshot whose root is not its block's is never trusted: loading
    // falls back to the (here emptied) tables.
    db.store.save_state_snapshot(2, &genesis.state.clone().encode_snapshot()).await.unwrap();
    let (mut fallback, _, _) = db.store.load_head_state().await.unwrap();
    let untouched = rollup_executor::genesis::MULTICALL3_ADDRESS;
    assert!(loaded.account(&untouched).is_some());
    assert!(fallback.account(&untouched).is_none(), "the tables, not the snapshot");
    assert_ne!(fallback.state_root(), header.state_root);
}

#[tokio::test]
async fn transactions_stored_in_the_old_layout_move_into_bodies() {
    let db = TestDatabase::new().await;
    let (config, signer, genesis) = chain();
    db.store.init_genesis(config.chain_id, &genesis).await.unwrap();
    let mut state = genesis.state.clone();
    let txs: Vec<_> = (0..3).map(|n| transfer(&config, &signer, n)).collect();
    let executed = execute(&config, &state, &genesis.header, genesis.hash, 1_001, txs);
    let block = seal(&mut state, executed);
    db.store.commit_block(&block, &[signer.address(); 3], &[]).await.unwrap();
    let expected = db.store.block_transactions(1).await.unwrap();

    // The block as migration 3 finds it in the old layout (renamed table).
    let pool = db.store.pool();
    for statement in [
        "DELETE FROM tx_lookup",
        "DELETE FROM block_bodies",
        "CREATE TABLE legacy_transactions (hash BYTEA PRIMARY KEY, block_number BIGINT NOT NULL,
             idx INTEGER NOT NULL, sender BYTEA NOT NULL, raw BYTEA NOT NULL, receipt BYTEA NOT NULL,
             gas_used BIGINT NOT NULL, effective_gas_price BYTEA NOT NULL, contract_address BYTEA,
             first_log_index INTEGER NOT NULL)",
    ] {
        sqlx::query(sqlx::AssertSqlSafe(statement)).execute(pool).await.unwrap();
    }
    for t in expected.iter() {
        sqlx::query(
            "INSERT INTO legacy_transactions VALUES ($1, 1, $2, $3, $4, $5, $6, $7, NULL, 0)",
        )
        .bind(t.hash.as_slice())
        .bind(t.index as i32)
        .bind(t.sender.as_slice())
        .bind(t.raw.as_ref())
        .bind(t.receipt.encoded_2718())
        .bind(t.gas_used as i64)
        .bind(U256::from(t.effective_gas_price).to_be_bytes::<32>().to_vec())
        .execute(pool)
        .await
        .unwrap();
    }

    let fresh = rollup_store::Store::connect(&db.url, 2).await.unwrap();
    fresh.migrate().await.unwrap();
    let moved = fresh.block_transactions(1).await.unwrap();
    assert_eq!(moved.len(), 3);
    for (moved, expected) in moved.iter().zip(expected.iter()) {
        assert_eq!(
            (
                moved.hash,
                &moved.raw,
                moved.sender,
                &moved.receipt,
                moved.gas_used,
                moved.effective_gas_price
            ),
            (
                expected.hash,
                &expected.raw,
                expected.sender,
                &expected.receipt,
                expected.gas_used,
                expected.effective_gas_price
            )
        );
    }
    let found = fresh.transaction(expected[2].hash).await.unwrap().unwrap();
    assert_eq!((found.block_number, found.index), (1, 2));
    let legacy: bool = sqlx::query_scalar("SELECT to_regclass('legacy_transactions') IS NOT NULL")
        .fetch_one(fresh.pool())
        .await
        .unwrap();
    assert!(!legacy, "the old table is dropped");
    fresh.migrate().await.unwrap();
}
