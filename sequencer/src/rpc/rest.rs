//! The REST face of the node: `POST /v1/transactions` submits raw transaction
//! bytes (binary or hex), `GET /v1/transactions/{hash}` shows a transaction's
//! lifecycle. Both go through the same admission and storage as JSON-RPC and
//! sit behind the same protections.

use super::{RpcContext, error::RpcError, eth};
use axum::{
    Json,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};
use std::sync::Arc;

/// `POST /v1/transactions`: admit one signed transaction.
///
/// The body is the raw EIP-2718 bytes with `Content-Type:
/// application/octet-stream`, otherwise hex text (`0x` optional, surrounding
/// whitespace and JSON string quotes allowed). Answers `200 {"hash": ..}` once
/// the transaction is durable, `400` with the JSON-RPC error object (geth's
/// message and code) when it is refused, `429`/`503` under the limits.
pub(super) async fn submit_transaction(
    State(context): State<Arc<RpcContext>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let raw = match raw_transaction(&headers, &body) {
        Ok(raw) => raw,
        Err(message) => return error(StatusCode::BAD_REQUEST, RpcError::invalid_params(message)),
    };
    match eth::submit(&context, &raw).await {
        Ok(hash) => Json(json!({ "hash": hash })).into_response(),
        Err(e) if e.code == super::error::LIMIT_EXCEEDED => error(StatusCode::TOO_MANY_REQUESTS, e),
        Err(e) if e.code == super::error::INTERNAL_ERROR => {
            error(StatusCode::INTERNAL_SERVER_ERROR, e)
        }
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

/// `GET /v1/transactions/{hash}`: the transaction's lifecycle.
pub(super) async fn transaction_status(
    State(context): State<Arc<RpcContext>>,
    Path(hash): Path<String>,
) -> Response {
    let Ok(hash) = hash.parse::<alloy_primitives::B256>() else {
        return error(
            StatusCode::BAD_REQUEST,
            RpcError::invalid_params("invalid transaction hash"),
        );
    };
    match eth::transaction_status(&context, hash).await {
        Ok(Value::Null) => {
            (StatusCode::NOT_FOUND, Json(json!({ "error": "unknown transaction" }))).into_response()
        }
        Ok(status) => Json(status).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// The transaction bytes of a `POST /v1/transactions` body.
fn raw_transaction(headers: &HeaderMap, body: &[u8]) -> Result<Vec<u8>, String> {
    let binary = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/octet-stream"));
    if binary {
        return Ok(body.to_vec());
    }
    let text = std::str::from_utf8(body).map_err(|_| "body is neither binary nor hex text")?;
    let text = text.trim();
    let text = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')).unwrap_or(text);
    let text = text.strip_prefix("0x").unwrap_or(text);
    alloy_primitives::hex::decode(text).map_err(|e| format!("invalid hex: {e}"))
}

fn error(status: StatusCode, error: RpcError) -> Response {
    (status, Json(json!({ "error": error }))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_binary_or_hex_text() {
        let mut binary = HeaderMap::new();
        binary.insert(header::CONTENT_TYPE, "application/octet-stream".parse().unwrap());
        assert_eq!(raw_transaction(&binary, b"\x02\xf8").unwrap(), vec![2, 0xf8]);
        let text = HeaderMap::new();
        assert_eq!(raw_transaction(&text, b" 0x02f8\n").unwrap(), vec![2, 0xf8]);
        assert_eq!(raw_transaction(&text, b"\"0x02f8\"").unwrap(), vec![2, 0xf8]);
        assert_eq!(raw_transaction(&text, b"02f8").unwrap(), vec![2, 0xf8]);
        assert!(raw_transaction(&text, b"0xzz").unwrap_err().starts_with("invalid hex"));
        assert!(raw_transaction(&text, b"\xff\xfe").is_err());
    }
}
