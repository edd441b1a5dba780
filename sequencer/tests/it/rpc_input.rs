//! Hostile input to every RPC method gets a JSON-RPC error object, quickly,
//! and never takes the server down.

use crate::common::{TestNet, sign_eip1559};
use alloy::{
    consensus::{SignableTransaction, TxEip1559, TxLegacy},
    eips::Encodable2718,
    primitives::{Address, Bytes, TxKind, U256, hex},
    signers::SignerSync,
};
use rollup_sequencer::{dev::dev_key, rpc::METHODS};
use serde_json::{Value, json};
use std::time::Duration;

async fn post(client: &reqwest::Client, url: &str, body: String) -> Value {
    let response =
        client.post(url).header("content-type", "application/json").body(body).send().await;
    let response = response.expect("the server answers (no hang, no crash)");
    let text = response.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn assert_error(response: &Value, context: &str) -> (i64, String) {
    let error = response
        .get("error")
        .unwrap_or_else(|| panic!("{context}: expected an error, got {response}"));
    let code = error["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("{context}: no integer code in {response}"));
    let message =
        error["message"].as_str().unwrap_or_else(|| panic!("{context}: no message in {response}"));
    assert_eq!(response["jsonrpc"], "2.0", "{context}");
    (code, message.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_error_objects() {
    let net = TestNet::start(3).await;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
    let url = net.rpc_url.clone();

    let huge = format!("0x{}", "f".repeat(70));
    let bad_params: Vec<Value> = vec![
        json!(["0x1", "0x1", "0x1", "0x1", "0x1"]),
        json!(["0xzz"]),
        json!([huge]),
        json!([[[[[]]]]]),
        json!([true]),
        json!([1e300]),
        json!([-1]),
        json!("not an array"),
    ];
    for method in METHODS {
        for params in &bad_params {
            // Any bytes are web3_sha3's input: the 35 bytes are hashed.
            if *method == "web3_sha3" && *params == json!([huge]) {
                continue;
            }
            // Any string names a filter to uninstall, as in geth: false
            // for one that is not installed.
            if *method == "eth_uninstallFilter"
                && params.as_array().is_some_and(|p| p.len() == 1 && p[0].is_string())
            {
                let response = post(
                    &client,
                    &url,
                    json!({ "jsonrpc": "2.0", "id": 7,
                    "method": method, "params": params })
                    .to_string(),
                )
                .await;
                assert_eq!(response["result"], false, "{params}: {response}");
                continue;
            }
            let body = json!({ "jsonrpc": "2.0", "id": 7, "method": method, "params": params })
                .to_string();
            let response = post(&client, &url, body).await;
            let (code, _) = assert_error(&response, &format!("{method} {params}"));
            assert!(code < 0, "{method} {params}: code {code}");
            assert_eq!(response["id"], 7);
        }
    }

    let envelopes = [
        ("{", -32700),
        ("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"eth_chainId\"", -32700),
        ("[]", -32600),
        ("42", -32600),
        ("\"eth_chainId\"", -32600),
        ("{\"id\":1,\"method\":\"eth_chainId\"}", -32600),
        ("{\"jsonrpc\":\"1.0\",\"id\":1,\"method\":\"eth_chainId\"}", -32600),
        ("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":5}", -32600),
        ("{\"jsonrpc\":\"2.0\",\"id\":{\"a\":1},\"method\":\"eth_chainId\"}", -32600),
        ("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"eth_nope\"}", -32601),
        ("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"eth_chainId\",\"params\":{\"a\":1}}", -32602),
    ];
    for (body, expected) in envelopes {
        let response = post(&client, &url, body.to_string()).await;
        let (code, _) = assert_error(&response, body);
        assert_eq!(code, expected, "{body}: {response}");
    }

    // Batches: mixed good and bad entries answer one by one; oversized batches are refused.
    let batch = json!([
        { "jsonrpc": "2.0", "id": 1, "method": "eth_chainId" },
        17,
        { "jsonrpc": "2.0", "id": 3, "method": "eth_getBalance", "params": ["0xzz"] },
    ]);
    let response = post(&client, &url, batch.to_string()).await;
    let answers = response.as_array().expect("batch answer");
    assert_eq!(answers.len(), 3);
    assert!(answers[0].get("result").is_some());
    assert_error(&answers[1], "batch entry 17");
    assert_error(&answers[2], "batch entry bad params");
    let too_many: Vec<Value> =
        (0..1_001).map(|i| json!({ "jsonrpc": "2.0", "id": i, "method": "eth_chainId" })).collect();
    let response = post(&client, &url, json!(too_many).to_string()).await;
    assert_eq!(assert_error(&response, "oversized batch").0, -32005);

    // Log filters: addresses and topic values beyond the limits.
    let addresses: Vec<String> = (0..1_001).map(|i| format!("{:#042x}", i + 1)).collect();
    let topics: Vec<String> = (0..1_001).map(|i| format!("{:#066x}", i + 1)).collect();
    let over_limits = [
        (json!({ "address": addresses }), -32602, "exceed max addresses"),
        (json!({ "topics": [null, topics] }), -32602, "exceed max topics"),
    ];
    for (filter, code, message) in &over_limits {
        for method in ["eth_getLogs", "eth_newFilter"] {
            let body = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": [filter] });
            let response = post(&client, &url, body.to_string()).await;
            let (got, text) = assert_error(&response, method);
            assert_eq!((got, text.contains(message)), (*code, true), "{method}: {response}");
        }
    }

    // A body above the limit is refused without reading it all.
    let big = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\",\"params\":[\"{}\"]}}",
        "a".repeat(6 << 20)
    );
    let status = client.post(&url).body(big).send().await.unwrap().status();
    assert_eq!(status, 413);

    // Raw transactions: geth's messages for each malformed kind.
    let signer = dev_key(0).unwrap();
    let chain_id = net.config.chain_id;
    let sign = |tx: TxEip1559| sign_eip1559(&signer, tx);
    let base = TxEip1559 {
        chain_id,
        nonce: 0,
        gas_limit: 21_000,
        max_fee_per_gas: 2_000_000_000,
        max_priority_fee_per_gas: 1_000_000,
        to: TxKind::Call(Address::repeat_byte(1)),
        value: U256::from(1),
        ..Default::default()
    };
    let good = sign(base.clone());
    let unprotected = {
        let tx = TxLegacy {
            chain_id: None,
            nonce: 0,
            gas_price: 2_000_000_000,
            gas_limit: 21_000,
            to: TxKind::Call(Address::repeat_byte(1)),
            value: U256::from(1),
            input: Bytes::new(),
        };
        let sig = signer.sign_hash_sync(&tx.signature_hash()).unwrap();
        Bytes::from(alloy::consensus::TxEnvelope::from(tx.into_signed(sig)).encoded_2718())
    };
    let mut bad_signature = good.to_vec();
    let last = bad_signature.len() - 2;
    bad_signature[last] ^= 0xff;
    let cases: Vec<(Bytes, &str)> = vec![
        (sign(TxEip1559 { chain_id: 1, ..base.clone() }), "invalid chain id"),
        (unprotected, "only replay-protected (EIP-155) transactions allowed over RPC"),
        (sign(TxEip1559 { gas_limit: 20_000, ..base.clone() }), "intrinsic gas too low"),
        (sign(TxEip1559 { gas_limit: 40_000_000, ..base.clone() }), "exceeds block gas limit"),
        (
            sign(TxEip1559 { max_fee_per_gas: 1, max_priority_fee_per_gas: 1, ..base.clone() }),
            "transaction underpriced",
        ),
        (
            sign(TxEip1559 { value: U256::MAX / U256::from(2), ..base.clone() }),
            "insufficient funds for gas * price + value",
        ),
        (Bytes::from(good[..good.len() / 2].to_vec()), "invalid transaction"),
        (Bytes::from(hex!("c0c0c0c0").to_vec()), "invalid transaction"),
        (Bytes::from(vec![0x02; 10]), "invalid transaction"),
    ];
    for (raw, expected) in cases {
        let body = json!({ "jsonrpc": "2.0", "id": 1, "method": "eth_sendRawTransaction", "params": [raw] });
        let response = post(&client, &url, body.to_string()).await;
        let (code, message) = assert_error(&response, expected);
        assert_eq!(code, -32000, "{expected}");
        assert!(message.starts_with(expected), "expected {expected:?}, got {message:?}");
    }
    let body = json!({ "jsonrpc": "2.0", "id": 1, "method": "eth_sendRawTransaction", "params": [Bytes::from(bad_signature)] });
    let response = post(&client, &url, body.to_string()).await;
    assert_error(&response, "tampered signature");

    // Identical bytes twice: the same hash, one copy.
    let body =
        json!({ "jsonrpc": "2.0", "id": 1, "method": "eth_sendRawTransaction", "params": [good] });
    let first = post(&client, &url, body.to_string()).await;
    let second = post(&client, &url, body.to_string()).await;
    assert_eq!(first["result"], second["result"]);
    assert!(first["result"].is_string(), "{first}");

    // Nonce too low once the first transaction is in a block.
    let first_hash = first["result"].clone();
    let receipt_body = json!({ "jsonrpc": "2.0", "id": 1, "method": "eth_getTransactionReceipt", "params": [first_hash] });
    crate::common::eventually(30, "the first transaction's receipt", || async {
        let r = post(&client, &url, receipt_body.to_string()).await;
        (!r["result"].is_null()).then_some(())
    })
    .await;
    let reused = sign(TxEip1559 { value: U256::from(2), ..base.clone() });
    let (code, message) = assert_error(&send_raw(&client, &url, reused).await, "reused nonce");
    assert_eq!((code, message.as_str()), (-32000, "nonce too low"));

    // Replacement needs a 10% bump of both fee fields (queued, far-ahead nonces).
    let replacer = dev_key(2).unwrap();
    let sign_as =
        |signer: &alloy::signers::local::PrivateKeySigner, nonce: u64, max_fee: u128, tip: u128| {
            let tx = TxEip1559 {
                nonce,
                max_fee_per_gas: max_fee,
                max_priority_fee_per_gas: tip,
                ..base.clone()
            };
            sign_eip1559(signer, tx)
        };
    let original =
        send_raw(&client, &url, sign_as(&replacer, 1_000, 2_000_000_000, 1_000_000)).await;
    assert!(original["result"].is_string(), "{original}");
    let low = send_raw(&client, &url, sign_as(&replacer, 1_000, 2_100_000_000, 1_050_000)).await;
    assert_eq!(assert_error(&low, "5% bump").1, "replacement transaction underpriced");
    let tip_only =
        send_raw(&client, &url, sign_as(&replacer, 1_000, 2_000_000_000, 2_000_000)).await;
    assert_eq!(assert_error(&tip_only, "tip-only bump").1, "replacement transaction underpriced");
    let bumped = send_raw(&client, &url, sign_as(&replacer, 1_000, 2_200_000_000, 1_100_000)).await;
    assert!(bumped["result"].is_string() && bumped["result"] != original["result"], "{bumped}");
    let status = json!({ "jsonrpc": "2.0", "id": 1, "method": "rollup_getTransactionStatus", "params": [original["result"]] });
    let status = post(&client, &url, status.to_string()).await;
    assert_eq!(status["result"]["status"], "dropped", "{status}");
    assert_eq!(status["result"]["reason"], "replaced", "{status}");

    // At most 64 pooled transactions per sender.
    let capped = dev_key(1).unwrap();
    for nonce in 100..164 {
        let accepted =
            send_raw(&client, &url, sign_as(&capped, nonce, 2_000_000_000, 1_000_000)).await;
        assert!(accepted["result"].is_string(), "nonce {nonce}: {accepted}");
    }
    let over = send_raw(&client, &url, sign_as(&capped, 164, 2_000_000_000, 1_000_000)).await;
    assert_eq!(assert_error(&over, "65th pooled").1, "account limit exceeded");

    // Still serving after all of that.
    let alive = post(
        &client,
        &url,
        json!({ "jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber" }).to_string(),
    )
    .await;
    assert!(alive["result"].is_string());
    net.stop().await;
}

async fn send_raw(client: &reqwest::Client, url: &str, raw: Bytes) -> Value {
    let body =
        json!({ "jsonrpc": "2.0", "id": 1, "method": "eth_sendRawTransaction", "params": [raw] });
    post(client, url, body.to_string()).await
}
