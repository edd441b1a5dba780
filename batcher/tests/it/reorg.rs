//! The batch poster against an L1 that forgets: after an L1 reorg (anvil's
//! `evm_revert`) drops posted batches, the poster re-posts exactly the same
//! bytes, in order, once each; a poster that crashed after sending adopts
//! the batch L1 already holds instead of sending it again.

use crate::common::{chain_with_blocks, settlement_on_anvil};
use alloy::{
    primitives::U256,
    providers::{Provider, ProviderBuilder},
};
use rollup_batcher::{
    BatchPoster, BatcherConfig, L1Metrics,
    derive::{read_batches, replay},
    l1,
};
use rollup_store::testing::TestDatabase;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reposts_after_an_l1_reorg_and_adopts_after_a_crash() {
    let db = TestDatabase::new().await;
    let (mut config, genesis) = chain_with_blocks(&db.store, 3).await;
    let (anvil, batcher) = settlement_on_anvil(&mut config).await;
    let contract = config.l1.settlement_contract;
    let read = ProviderBuilder::new().connect_http(anvil.url().parse().unwrap()).erased();
    let poster = || {
        BatchPoster::new(
            db.store.clone(),
            l1::signing_provider(&anvil.url(), batcher.clone()).unwrap(),
            contract,
            BatcherConfig { max_blocks_per_batch: 2, ..BatcherConfig::default() },
            L1Metrics::unregistered(),
        )
    };

    // Two batches (blocks 1-2, then 3), then L1 reverts to before them.
    let snapshot: U256 = read.raw_request("evm_snapshot".into(), ()).await.unwrap();
    assert_eq!(poster().step().await.unwrap(), Some(0));
    assert_eq!(poster().step().await.unwrap(), Some(1));
    assert_eq!(poster().step().await.unwrap(), None, "nothing left to post");
    let before = read_batches(&read, contract, 0).await.unwrap();
    assert_eq!(before.len(), 2);
    let reverted: bool = read.raw_request("evm_revert".into(), (snapshot,)).await.unwrap();
    assert!(reverted);
    assert!(read_batches(&read, contract, 0).await.unwrap().is_empty(), "L1 forgot both batches");

    // The poster notices, and re-posts the same bytes in order.
    assert_eq!(poster().step().await.unwrap(), Some(0));
    assert_eq!(poster().step().await.unwrap(), Some(1));
    let after = read_batches(&read, contract, 0).await.unwrap();
    assert_eq!(after.len(), 2);
    for (old, new) in before.iter().zip(&after) {
        assert_eq!(
            (old.index, old.first_block, old.last_block),
            (new.index, new.first_block, new.last_block)
        );
        assert_eq!(old.blocks, new.blocks, "the same batch bytes");
    }

    // A crash after sending: L1 holds batch 1 but our record says unposted.
    assert_eq!(db.store.unmark_batches_from(1).await.unwrap(), 1);
    let l1_block = read.get_block_number().await.unwrap();
    assert_eq!(poster().step().await.unwrap(), Some(1), "adopted");
    assert_eq!(read.get_block_number().await.unwrap(), l1_block, "no L1 transaction was sent");
    assert_eq!(read_batches(&read, contract, 0).await.unwrap().len(), 2);

    // L1 data alone rebuilds the chain to the stored head.
    let blocks = after.into_iter().flat_map(|b| b.blocks);
    let replayed = replay(&config, genesis, blocks).unwrap();
    let head = db.store.block_by_number(3).await.unwrap().unwrap();
    assert_eq!(replayed.last().unwrap().hash, head.hash);
}
