//! Simulated calls that burn a block's gas: they run off the runtime's
//! workers, a bounded number at once (a bounded number waiting), and stop
//! at their deadline with geth's message, while transactions keep being
//! accepted and sequenced.

use crate::common::{TestNet, eventually, metric, send_raw_transaction, signed_transfer};
use alloy::{
    primitives::{Address, B256, Bytes},
    providers::Provider,
    signers::{SignerSync, local::PrivateKeySigner},
};
use rollup_sequencer::rpc::limits::RpcLimits;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Creation code that calls the ecrecover precompile until it has burned
/// 24M gas, then succeeds only if it started with 29M gas or more (and
/// reverts otherwise). `input` is the precompile's 128-byte input. Gas
/// estimation then bisects between about 24M and 30M: over 20 runs, each
/// burning 24M gas (2.5 s or more in all on this machine).
fn burner(input: &[u8; 128]) -> Bytes {
    let mut code = vec![
        0x5a, // GAS: g0
        0x60, 0x80, // PUSH1 128 (size)
        0x61, 0x00, 0x33, // PUSH2 51 (the input's offset in this code)
        0x60, 0x00, // PUSH1 0 (memory offset)
        0x39, // CODECOPY
        0x5b, // 0x09: JUMPDEST (loop)
        0x60, 0x20, 0x60, 0x80, 0x60, 0x80, 0x60, 0x00, // out 32 at 128, in 128 at 0
        0x60, 0x01, 0x5a, 0xfa, 0x50, // STATICCALL(gas, 0x01, ...); POP
        0x80, // DUP1: g0
        0x63, 0x01, 0x6e, 0x36, 0x00, // PUSH4 24,000,000
        0x5a, 0x01, 0x11, // GAS ADD GT: gas + 24M > g0
        0x60, 0x09, 0x57, // JUMPI loop
        0x63, 0x01, 0xba, 0x81, 0x40, // PUSH4 29,000,000
        0x81, 0x10, // DUP2 LT: g0 < 29M
        0x60, 0x2e, 0x57, // JUMPI revert
        0x00, // STOP
        0x5b, 0x60, 0x00, 0x80, 0xfd, // 0x2e: JUMPDEST; REVERT(0, 0)
    ];
    assert_eq!(code.len(), 0x33);
    code.extend_from_slice(input);
    code.into()
}

/// An ecrecover input that recovers (so every call does the curve work).
fn recoverable_input() -> [u8; 128] {
    let signer = PrivateKeySigner::random();
    let hash = B256::repeat_byte(0x42);
    let signature = signer.sign_hash_sync(&hash).unwrap();
    let mut input = [0u8; 128];
    input[..32].copy_from_slice(hash.as_slice());
    input[63] = 27 + u8::from(signature.v());
    input[64..96].copy_from_slice(&signature.r().to_be_bytes::<32>());
    input[96..].copy_from_slice(&signature.s().to_be_bytes::<32>());
    input
}

async fn rpc(client: &reqwest::Client, url: &str, method: &str, params: Value) -> Value {
    let body = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
    client.post(url).json(&body).send().await.unwrap().json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heavy_simulations_stop_at_their_deadline_and_block_nothing() {
    let timeout = Duration::from_secs(3);
    let limits =
        RpcLimits { max_simulations: 1, simulation_timeout: timeout, ..RpcLimits::default() };
    let net = TestNet::start_with_limits(3, limits).await;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
    let url = net.rpc_url.clone();
    let call = json!({ "from": Address::repeat_byte(7), "input": burner(&recoverable_input()) });

    // One run: 24M gas of recoveries, then success (the second timed: the
    // first also builds the precompile's tables).
    let mut one_run = Duration::ZERO;
    for _ in 0..2 {
        let started = Instant::now();
        let answer = rpc(&client, &url, "eth_call", json!([call])).await;
        assert_eq!(answer["result"], "0x", "{answer}");
        one_run = started.elapsed();
    }
    eprintln!("one 24M-gas run: {one_run:?}");

    // Three estimations, each dozens of such runs, with room for one at a
    // time.
    let estimates: Vec<_> = (0..3)
        .map(|_| {
            let (client, url, call) = (client.clone(), url.clone(), call.clone());
            tokio::spawn(async move {
                let started = Instant::now();
                let answer = rpc(&client, &url, "eth_estimateGas", json!([call])).await;
                (answer, started.elapsed())
            })
        })
        .collect();
    eventually(10, "a simulation to start", || async {
        let running = metric(&net.metrics_url, "rollup_rpc_simulations_running").await?;
        (running == 1.0).then_some(())
    })
    .await;

    // Meanwhile a transfer is accepted and sequenced promptly.
    let started = Instant::now();
    let raw = signed_transfer(1, net.config.chain_id, 0, Address::repeat_byte(9));
    let hash =
        send_raw_transaction(&client, &url, &raw).await.expect("answered").expect("accepted");
    let (provider, _) = net.l2_wallet(1);
    eventually(30, "the transfer's receipt", || async {
        provider.get_transaction_receipt(hash).await.ok().flatten()
    })
    .await;
    let included = started.elapsed();
    assert!(
        estimates.iter().any(|estimate| !estimate.is_finished()),
        "the estimations ended before the transfer was included ({included:?})"
    );
    assert!(included < timeout, "transfer included after {included:?}");

    // Each estimation stops at its deadline (the one running finishes its
    // run; the others never got a permit), with geth's message.
    eprintln!("transfer included after {included:?}");
    for estimate in estimates {
        let (answer, took) = estimate.await.unwrap();
        assert_eq!(answer["error"]["message"], "execution aborted (timeout = 3s)", "{answer}");
        assert_eq!(answer["error"]["code"], -32000, "{answer}");
        assert!(took < timeout + one_run * 2 + Duration::from_secs(1), "answered after {took:?}");
    }

    let timeouts = metric(&net.metrics_url, "rollup_rpc_simulation_timeouts_total").await;
    assert_eq!(timeouts, Some(3.0));
    assert_eq!(metric(&net.metrics_url, "rollup_rpc_simulations_running").await, Some(0.0));

    // A batch of more estimations than may wait: the excess is refused at
    // once (-32005), the rest time out.
    let batch: Vec<Value> = (0..12)
        .map(|id| json!({ "jsonrpc": "2.0", "id": id, "method": "eth_estimateGas", "params": [call] }))
        .collect();
    let answers: Vec<Value> =
        client.post(&url).json(&batch).send().await.unwrap().json().await.unwrap();
    let refused = answers.iter().filter(|a| a["error"]["code"] == -32005).count();
    let timed_out = answers
        .iter()
        .filter(|a| a["error"]["message"] == "execution aborted (timeout = 3s)")
        .count();
    assert_eq!((refused, timed_out), (12 - 9, 9), "{answers:?}");

    // Ordinary simulations still run.
    let transfer = json!({ "from": Address::repeat_byte(7), "to": Address::repeat_byte(8) });
    let answer = rpc(&client, &url, "eth_estimateGas", json!([transfer])).await;
    assert_eq!(answer["result"], "0x5208", "{answer}");
    net.stop().await;
}
