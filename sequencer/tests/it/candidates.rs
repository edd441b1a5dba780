//! Transactions that cannot run yet, at the front of the mempool, do not
//! keep later ones out of blocks, and run once their gap is filled.

use crate::common::signed_transfer;
use alloy::primitives::{Address, B256, U256, keccak256};
use rollup_executor::{
    ChainConfig,
    genesis::{ChainGenesis, funded_genesis},
};
use rollup_sequencer::{
    candidates::page_size, chain_view::ChainView, dev::dev_key, metrics::NodeMetrics,
    pool::PoolLimits, producer::BlockProducer,
};
use rollup_store::{MempoolStatus, NewTransaction, testing::TestDatabase};

/// Four transfers per block: a first page of five.
const BLOCK_GAS_LIMIT: u64 = 4 * 21_000;

fn transfer(config: &ChainConfig, sender: u32, nonce: u64) -> NewTransaction {
    let raw = signed_transfer(sender, config.chain_id, nonce, Address::with_last_byte(0xee));
    NewTransaction {
        hash: keccak256(&raw),
        sender: dev_key(sender).unwrap().address(),
        nonce,
        raw,
        replaces: None,
    }
}

#[tokio::test]
async fn waiting_transactions_at_the_front_do_not_keep_later_ones_out_of_blocks() {
    let mut config = ChainConfig::dev_defaults();
    config.block_gas_limit = BLOCK_GAS_LIMIT;
    let senders = (0..4).map(|i| dev_key(i).unwrap().address());
    let genesis = funded_genesis(&config, 1_700_000_000, senders, U256::from(10u128.pow(20)));
    let genesis = ChainGenesis::from_genesis(&config, &genesis);
    config.genesis.hash = genesis.hash;
    let db = TestDatabase::new().await;
    db.store.init_genesis(config.chain_id, &genesis).await.unwrap();

    // Three senders' nonces 1 to 10, each without nonce 0: 30 waiting
    // transactions, more than the first two pages (5 and 10), ahead of one
    // that can run.
    let waiting: Vec<NewTransaction> = (0..3)
        .flat_map(|sender| (1..=10).map(move |nonce| (sender, nonce)))
        .map(|(s, n)| transfer(&config, s, n))
        .collect();
    assert!(waiting.len() as i64 > 3 * page_size(&config));
    let runnable = transfer(&config, 3, 0);
    db.store.insert_transactions(&waiting).await.unwrap();
    db.store.insert_transactions(std::slice::from_ref(&runnable)).await.unwrap();

    let view = ChainView::load(&db.store, PoolLimits::default(), 16).await.unwrap();
    let metrics = NodeMetrics::new().unwrap();
    let mut producer =
        BlockProducer::new(config.clone(), db.store.clone(), view, metrics).await.unwrap();
    assert_eq!(producer.produce().await.unwrap(), Some(1));
    let included = db.store.transaction(runnable.hash).await.unwrap().expect("included");
    assert_eq!(included.block_number, 1);
    assert_eq!(producer.produce().await.unwrap(), None, "nothing else can run");
    assert_eq!(db.store.pending_count().await.unwrap(), 30, "the waiting ones stay pending");
    let (_, _, status) = db.store.mempool_transaction(waiting[0].hash).await.unwrap().unwrap();
    assert_eq!(status, MempoolStatus::Pending);

    // Sender 0's gap filled: its nonces run, a block's worth at a time.
    let filler = transfer(&config, 0, 0);
    db.store.insert_transactions(std::slice::from_ref(&filler)).await.unwrap();
    assert_eq!(producer.produce().await.unwrap(), Some(2));
    let block_of = |hash: B256| {
        let store = db.store.clone();
        async move { store.transaction(hash).await.unwrap().map(|t| t.block_number) }
    };
    assert_eq!(block_of(filler.hash).await, Some(2));
    for nonce_one_to_three in &waiting[..3] {
        assert_eq!(block_of(nonce_one_to_three.hash).await, Some(2));
    }
    assert_eq!(block_of(waiting[3].hash).await, None, "the block was full");
}
