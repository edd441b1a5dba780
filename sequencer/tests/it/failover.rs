//! Exactly one block producer leads; when it stops, a standby takes over
//! within seconds and the chain continues without a fork.

use crate::common::{TestNet, eventually};
use alloy::{
    eips::BlockNumberOrTag,
    network::{EthereumWallet, TransactionBuilder},
    primitives::{Address, U256},
    providers::{Provider, ProviderBuilder},
    rpc::types::TransactionRequest,
};
use rollup_sequencer::{dev::dev_key, node::Roles};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_producer_takes_over_when_the_leader_stops() {
    let mut net = TestNet::start(5).await;
    let standby = net.start_node(Roles { api: true, producer: true, ..Roles::default() }).await;
    let standby_url = standby.rpc_url.clone().unwrap();
    let wallet = EthereumWallet::from(dev_key(3).unwrap());
    let to = Address::repeat_byte(0x55);
    let send = |url: String| {
        let wallet = wallet.clone();
        async move {
            let l2 = ProviderBuilder::new().wallet(wallet).connect_http(url.parse().unwrap());
            let request = TransactionRequest::default().with_to(to).with_value(U256::from(1));
            l2.send_transaction(request).await.unwrap().get_receipt().await.unwrap()
        }
    };

    // Both serve the API; whichever leads produces.
    let first = send(net.rpc_url.clone()).await;
    assert!(first.status());
    let second = send(standby_url.clone()).await;
    assert!(second.status());

    // The first node (the leader: it started first) stops; the standby takes over.
    net.stop_first_node().await;
    let stopped = Instant::now();
    let third = send(standby_url.clone()).await;
    assert!(third.status());
    assert!(stopped.elapsed() < Duration::from_secs(15), "takeover took {:?}", stopped.elapsed());

    // One chain: every block's parent is the block before it.
    let l2 = ProviderBuilder::new().connect_http(standby_url.parse().unwrap());
    let head = eventually(10, "the standby's head", || async {
        let n = l2.get_block_number().await.ok()?;
        (n >= third.block_number.unwrap()).then_some(n)
    })
    .await;
    let mut parent = l2.get_block_by_number(BlockNumberOrTag::Number(0)).await.unwrap().unwrap();
    for n in 1..=head {
        let block = l2.get_block_by_number(BlockNumberOrTag::Number(n)).await.unwrap().unwrap();
        assert_eq!(
            block.header.parent_hash,
            parent.header.hash,
            "block {n} extends block {}",
            n - 1
        );
        parent = block;
    }
    assert_eq!(l2.get_balance(to).await.unwrap(), U256::from(3));
    standby.stop().await;
    net.stop().await;
}
