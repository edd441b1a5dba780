//! The JSON-RPC server's protections: admin methods behind a bearer token,
//! per-client rate limit (HTTP 429, -32005) and load shedding (HTTP 503).

use crate::common::{TestNet, signed_transfer};
use alloy::primitives::{Address, Bytes};
use rollup_sequencer::rpc::limits::RpcLimits;
use serde_json::{Value, json};
use std::time::Duration;

const TOKEN: &str = "test-admin-token";

async fn call(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    method: &str,
    params: Value,
) -> (u16, Value) {
    let mut request = client
        .post(url)
        .json(&json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params }));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("answered");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON body"))
}

fn transfer(nonce: u64, chain_id: u64) -> Bytes {
    signed_transfer(5, chain_id, nonce, Address::repeat_byte(9))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_rate_limit_and_load_shedding() {
    let limits =
        RpcLimits { admin_token: Some(TOKEN.into()), max_in_flight: 1, ..RpcLimits::default() };
    let net = TestNet::start_with_limits(6, limits).await;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
    let url = net.rpc_url.clone();
    let chain_id = net.config.chain_id;

    // Admin methods need the token.
    for token in [None, Some("wrong-token")] {
        let (_, answer) = call(&client, &url, token, "admin_pauseSequencing", json!([])).await;
        assert_eq!(answer["error"]["code"], -32001, "{answer}");
    }
    let (_, answer) = call(&client, &url, Some(TOKEN), "admin_pauseSequencing", json!([])).await;
    assert_eq!(answer["result"], true, "{answer}");

    // Paused: transactions are acknowledged but not sequenced.
    let (_, first) =
        call(&client, &url, None, "eth_sendRawTransaction", json!([transfer(0, chain_id)])).await;
    let first = first["result"].clone();
    let (_, second) =
        call(&client, &url, None, "eth_sendRawTransaction", json!([transfer(1, chain_id)])).await;
    let second = second["result"].clone();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (_, status) =
        call(&client, &url, None, "rollup_getTransactionStatus", json!([first])).await;
    assert_eq!(status["result"]["status"], "received", "{status}");

    // One request in flight at most: while a sync send waits, others are shed.
    let sync_client = client.clone();
    let sync_url = url.clone();
    let waiting = tokio::spawn(async move {
        call(
            &sync_client,
            &sync_url,
            None,
            "eth_sendRawTransactionSync",
            json!([transfer(2, chain_id), 1_500]),
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (code, shed) = call(&client, &url, None, "eth_blockNumber", json!([])).await;
    assert_eq!(code, 503, "{shed}");
    assert_eq!(shed["error"]["code"], -32005, "{shed}");
    let (_, timed_out) = waiting.await.unwrap();
    assert_eq!(
        timed_out["error"]["code"], 4,
        "paused: the sync send times out with code 4: {timed_out}"
    );

    // An operator drops one; resuming sequences the other.
    let (_, dropped) =
        call(&client, &url, Some(TOKEN), "admin_dropTransaction", json!([second])).await;
    assert_eq!(dropped["result"], true, "{dropped}");
    let (_, status) =
        call(&client, &url, None, "rollup_getTransactionStatus", json!([second])).await;
    assert_eq!(status["result"]["status"], "dropped");
    assert_eq!(status["result"]["reason"], "dropped by operator");
    let (_, resumed) = call(&client, &url, Some(TOKEN), "admin_resumeSequencing", json!([])).await;
    assert_eq!(resumed["result"], false);
    crate::common::eventually(30, "the first transaction sequenced", || async {
        let (_, receipt) =
            call(&client, &url, None, "eth_getTransactionReceipt", json!([first])).await;
        (!receipt["result"].is_null()).then_some(())
    })
    .await;

    // Rate limit: 5 requests per second with bursts of 5.
    let (_, set) = call(&client, &url, Some(TOKEN), "admin_setRateLimit", json!([5, 5])).await;
    assert_eq!(set["result"], true);
    let mut limited = 0;
    for _ in 0..20 {
        let (code, answer) = call(&client, &url, None, "eth_chainId", json!([])).await;
        if code == 429 {
            assert_eq!(answer["error"]["code"], -32005, "{answer}");
            assert_eq!(answer["error"]["message"], "limit exceeded");
            limited += 1;
        }
    }
    assert!(limited >= 10, "only {limited} of 20 requests were limited");
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let (code, _) =
        call(&client, &url, Some(TOKEN), "admin_setRateLimit", json!([100_000, 100_000])).await;
    assert_eq!(code, 200);
    net.stop().await;
}
