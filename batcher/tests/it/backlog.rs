//! The poster working through a backlog: it gathers blocks a few at a time
//! (not the whole backlog) and shrinks each batch to the byte limit. Every
//! batch must fit the limit, the batches must cover the chain in order with
//! no gap or overlap, a batch must be able to span several read chunks, and
//! L1 data alone must rebuild the chain to its head.

use crate::common::{chain_with_blocks, settlement_on_anvil};
use alloy::providers::{Provider, ProviderBuilder};
use rollup_batcher::{
    BatchPoster, BatcherConfig, L1Metrics,
    derive::{read_batches, replay},
    l1,
};
use rollup_store::testing::TestDatabase;

/// Blocks in the backlog.
const BLOCKS: u64 = 60;
/// A limit that holds a few dozen one-transfer blocks: more than one read
/// chunk (8 blocks), far fewer than the backlog.
const MAX_BATCH_BYTES: usize = 2_500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_is_posted_in_limit_sized_batches_that_cover_the_chain() {
    let db = TestDatabase::new().await;
    let (mut config, genesis) = chain_with_blocks(&db.store, BLOCKS).await;
    let (anvil, batcher) = settlement_on_anvil(&mut config).await;
    let poster = BatchPoster::new(
        db.store.clone(),
        l1::signing_provider(&anvil.url(), batcher).unwrap(),
        config.l1.settlement_contract,
        BatcherConfig { max_batch_bytes: MAX_BATCH_BYTES, ..BatcherConfig::default() },
        L1Metrics::unregistered(),
    );

    let mut next_block = 1;
    let mut widest = 0;
    while let Some(index) = poster.step().await.unwrap() {
        let batch = db.store.latest_batch().await.unwrap().expect("the batch is recorded");
        assert_eq!(batch.index, index);
        assert!(
            batch.data.len() <= MAX_BATCH_BYTES,
            "batch {index}: {} bytes over the limit",
            batch.data.len()
        );
        assert_eq!(batch.first_block, next_block, "batch {index} starts after the previous one");
        assert!(batch.last_block >= batch.first_block);
        widest = widest.max(batch.last_block - batch.first_block + 1);
        next_block = batch.last_block + 1;
        assert!(index < BLOCKS, "at least one block per batch");
    }
    assert_eq!(next_block, BLOCKS + 1, "every block is in a batch");
    assert!(widest > 8, "a batch spans several read chunks (widest {widest} blocks)");
    assert!(widest < BLOCKS, "the limit split the backlog (widest {widest} blocks)");

    let read = ProviderBuilder::new().connect_http(anvil.url().parse().unwrap()).erased();
    let posted = read_batches(&read, config.l1.settlement_contract, 0).await.unwrap();
    let replayed = replay(&config, genesis, posted.into_iter().flat_map(|b| b.blocks)).unwrap();
    let head = db.store.block_by_number(BLOCKS).await.unwrap().unwrap();
    assert_eq!(replayed.last().unwrap().hash, head.hash, "L1 data rebuilds the chain");
}
