//! Property tests of the hostile-input surface: transaction decoding and the
//! JSON-RPC layer. Whatever arrives, nothing panics and every answer is a
//! JSON-RPC response object. CI runs proptest's default number of cases;
//! `make test-long` sets `PROPTEST_CASES` much higher.

use crate::common::{TestNet, signed_transfer};
use alloy::primitives::Address;
use proptest::{collection::vec, prelude::*};
use rollup_sequencer::{admission::decode_and_recover, rpc::METHODS};
use serde_json::{Map, Value, json};
use std::time::Duration;

fn valid_tx() -> Vec<u8> {
    signed_transfer(0, 42_069, 3, Address::repeat_byte(1)).to_vec()
}

/// JSON values that look like what Ethereum RPCs take, and worse.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        "0x[0-9a-fA-F]{0,80}".prop_map(Value::String),
        "(latest|pending|earliest|safe|finalized|0x|0x0|-1|0xzz)".prop_map(Value::String),
        ".{0,40}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            vec(("[a-zA-Z]{1,12}", inner), 0..6)
                .prop_map(|entries| Value::Object(entries.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn request() -> impl Strategy<Value = Value> {
    let method = prop_oneof![
        proptest::sample::select(METHODS).prop_map(str::to_owned),
        ".{0,20}".prop_map(|s| s),
    ];
    (method, json_value(), json_value()).prop_map(|(method, params, id)| {
        let id = if matches!(id, Value::Number(_) | Value::String(_) | Value::Null) {
            id
        } else {
            json!(1)
        };
        json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params })
    })
}

fn assert_response(value: &Value) {
    let object = value.as_object().unwrap_or_else(|| panic!("not a response object: {value}"));
    assert_eq!(object.get("jsonrpc"), Some(&json!("2.0")), "{value}");
    match (object.get("result"), object.get("error")) {
        (Some(_), None) => {}
        (None, Some(error)) => {
            assert!(error["code"].is_i64(), "{value}");
            assert!(error["message"].is_string(), "{value}");
        }
        _ => panic!("exactly one of result and error: {value}"),
    }
}

proptest! {
    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in vec(any::<u8>(), 0..1_024)) {
        let _ = decode_and_recover(&bytes, 42_069);
    }

    #[test]
    fn decoding_mutated_transactions_never_panics(
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        cut in any::<prop::sample::Index>(),
        tail in vec(any::<u8>(), 0..16),
    ) {
        let mut bytes = valid_tx();
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        bytes.truncate(cut.index(bytes.len() + 1));
        bytes.extend(tail);
        let _ = decode_and_recover(&bytes, 42_069);
    }
}

#[test]
fn rpc_answers_every_hostile_request_with_a_response_object() {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let net = runtime.block_on(TestNet::start(2));
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let post = |body: Vec<u8>| {
        runtime.block_on(async {
            let response =
                client.post(&net.rpc_url).body(body).send().await.expect("no hang, no crash");
            let status = response.status().as_u16();
            let text = response.text().await.unwrap();
            (status, text)
        })
    };
    let mut runner = proptest::test_runner::TestRunner::default();
    let cases = (request(), vec(request(), 1..4), vec(any::<u8>(), 0..256));
    runner
        .run(&cases, |(single, batch, bytes)| {
            let (status, text) = post(single.to_string().into_bytes());
            prop_assert_eq!(status, 200);
            assert_response(&serde_json::from_str(&text).unwrap());

            let (status, text) = post(Value::Array(batch.clone()).to_string().into_bytes());
            prop_assert_eq!(status, 200);
            let answers: Value = serde_json::from_str(&text).unwrap();
            let answers = answers.as_array().expect("batch answer");
            prop_assert_eq!(answers.len(), batch.len());
            answers.iter().for_each(assert_response);

            let (_, text) = post(bytes);
            let answer: Value = serde_json::from_str(&text).expect("JSON even for garbage");
            if let Some(answers) = answer.as_array() {
                answers.iter().for_each(assert_response);
            } else {
                assert_response(&answer);
            }
            Ok(())
        })
        .unwrap();
    runtime.block_on(net.stop());
}
