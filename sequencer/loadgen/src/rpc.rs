//! The few JSON-RPC reads the load needs before it starts: the chain id and
//! the senders' pending nonces (in batches, so a thousand accounts take a
//! couple of round trips).

use alloy::primitives::Address;
use eyre::{WrapErr, bail, eyre};
use serde_json::{Value, json};
use std::collections::HashMap;

/// Accounts asked for in one batch request.
pub const NONCE_BATCH: usize = 250;

/// Parses a JSON-RPC quantity (`"0x1a"`).
pub fn parse_quantity(value: &Value) -> eyre::Result<u64> {
    let text = value.as_str().ok_or_else(|| eyre!("expected a hex quantity, got {value}"))?;
    let digits = text.strip_prefix("0x").ok_or_else(|| eyre!("expected 0x, got {text:?}"))?;
    u64::from_str_radix(digits, 16).wrap_err_with(|| format!("bad quantity {text:?}"))
}

/// The `result` of a response object, or its error as an error.
fn result_of(response: &Value) -> eyre::Result<&Value> {
    if let Some(error) = response.get("error") {
        bail!("JSON-RPC error: {error}");
    }
    response.get("result").ok_or_else(|| eyre!("response without result: {response}"))
}

async fn post(client: &reqwest::Client, url: &str, body: &Value) -> eyre::Result<Value> {
    let response = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_string())
        .send()
        .await
        .wrap_err_with(|| format!("POST {url}"))?;
    let status = response.status();
    let bytes = response.bytes().await.wrap_err_with(|| format!("read the answer of {url}"))?;
    if !status.is_success() {
        bail!("{url} answered HTTP {status}: {}", String::from_utf8_lossy(&bytes));
    }
    serde_json::from_slice(&bytes).wrap_err_with(|| format!("{url} answered non-JSON"))
}

/// `eth_chainId`.
pub async fn chain_id(client: &reqwest::Client, url: &str) -> eyre::Result<u64> {
    let request = json!({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []});
    let response = post(client, url, &request).await?;
    parse_quantity(result_of(&response)?)
}

/// `eth_getTransactionCount(address, "pending")` of every address, in order.
pub async fn pending_nonces(
    client: &reqwest::Client,
    url: &str,
    addresses: &[Address],
) -> eyre::Result<Vec<u64>> {
    let mut nonces = Vec::with_capacity(addresses.len());
    for chunk in addresses.chunks(NONCE_BATCH) {
        let batch: Vec<Value> = chunk
            .iter()
            .enumerate()
            .map(|(id, address)| {
                json!({
                    "jsonrpc": "2.0",
                    "id": id,
                    "method": "eth_getTransactionCount",
                    "params": [address, "pending"],
                })
            })
            .collect();
        let response = post(client, url, &Value::Array(batch)).await?;
        let Value::Array(responses) = response else {
            bail!("the nonce batch was refused: {response}");
        };
        // Answers may come in any order: match them by id.
        let mut by_id: HashMap<u64, &Value> = HashMap::new();
        for response in &responses {
            if let Some(id) = response.get("id").and_then(Value::as_u64) {
                by_id.insert(id, response);
            }
        }
        for (id, address) in chunk.iter().enumerate() {
            let response =
                by_id.get(&(id as u64)).ok_or_else(|| eyre!("no nonce answer for {address}"))?;
            let nonce = parse_quantity(result_of(response)?)
                .wrap_err_with(|| format!("pending nonce of {address}"))?;
            nonces.push(nonce);
        }
    }
    Ok(nonces)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity(&json!("0x0")).unwrap(), 0);
        assert_eq!(parse_quantity(&json!("0xa455")).unwrap(), 42069);
        assert!(parse_quantity(&json!("12")).is_err());
        assert!(parse_quantity(&json!(12)).is_err());
        assert!(parse_quantity(&json!("0xzz")).is_err());
    }

    #[test]
    fn errors_are_reported() {
        let error = json!({"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"nope"}});
        assert!(result_of(&error).unwrap_err().to_string().contains("nope"));
        let ok = json!({"jsonrpc":"2.0","id":1,"result":"0x1"});
        assert_eq!(result_of(&ok).unwrap(), &json!("0x1"));
    }
}
