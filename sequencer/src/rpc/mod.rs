//! The JSON-RPC 2.0 server over HTTP: single and batch requests, standard
//! error objects for every malformed input, and the Ethereum methods in
//! [`eth`], and the small REST face in [`rest`].

mod admin;
mod convert;
pub mod error;
mod eth;
mod evm_call;
pub mod filters;
pub mod limits;
mod rest;
pub mod simulation;

use crate::{chain_view::ChainView, metrics::NodeMetrics};
use axum::{
    Router,
    body::Bytes,
    extract::{DefaultBodyLimit, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use error::{INVALID_REQUEST, PARSE_ERROR, RpcError};
pub use eth::METHODS;
use rollup_executor::ChainConfig;
use rollup_store::Store;
use serde_json::{Value, json};
use std::{sync::Arc, time::Duration};
use tower_http::{cors::CorsLayer, timeout::TimeoutLayer, trace::TraceLayer};

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 5 * 1024 * 1024;
/// Most requests in one JSON-RPC batch.
pub const MAX_BATCH_LEN: usize = 1_000;
/// Longest a request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What the RPC handlers share.
#[derive(Debug)]
pub struct RpcContext {
    /// The chain config.
    pub config: ChainConfig,
    /// The database.
    pub store: Store,
    /// The head view.
    pub view: ChainView,
    /// Metrics.
    pub metrics: NodeMetrics,
    /// Tip suggested by `eth_maxPriorityFeePerGas` (wei).
    pub suggested_priority_fee: u128,
    /// Group commit of accepted transactions.
    pub intake: crate::intake::Intake,
    /// Server limits and the admin token.
    pub limits: limits::RpcLimits,
    /// Per-client rate limit (adjustable with `admin_setRateLimit`).
    pub limiter: Arc<limits::RateLimiter>,
    /// Installed polling filters.
    pub filters: filters::Filters,
    /// Where simulated calls run, how many at once and for how long.
    pub simulations: simulation::Simulations,
}

/// The JSON-RPC router (`POST /`) with its protections. Serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()` (the rate limit is
/// per client address).
pub fn router(context: Arc<RpcContext>) -> Router {
    let shedding = tower::ServiceBuilder::new()
        .layer(axum::error_handling::HandleErrorLayer::new(limits::overloaded))
        .load_shed()
        .concurrency_limit(context.limits.max_in_flight);
    Router::new()
        .route("/", post(handle_http))
        .route("/v1/transactions", post(rest::submit_transaction))
        .route("/v1/transactions/{hash}", axum::routing::get(rest::transaction_status))
        .layer(shedding)
        .layer(axum::middleware::from_fn_with_state(context.limiter.clone(), limits::rate_limit))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, REQUEST_TIMEOUT))
        .layer(CorsLayer::permissive())
        .layer(TraceLayer::new_for_http())
        .with_state(context)
}

/// Whether the request carries the admin bearer token (compared in constant time).
fn is_admin(context: &RpcContext, headers: &axum::http::HeaderMap) -> bool {
    let Some(token) = &context.limits.admin_token else { return false };
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    given.len() == token.len()
        && given.bytes().zip(token.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

async fn handle_http(
    State(context): State<Arc<RpcContext>>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    let admin = is_admin(&context, &headers);
    let response = handle_body(&context, &body, admin, Some(peer.ip())).await;
    match response {
        Some(value) => {
            ([(header::CONTENT_TYPE, "application/json")], value.to_string()).into_response()
        }
        None => StatusCode::NO_CONTENT.into_response(),
    }
}

/// Handles one HTTP body: a request object or a batch array.
/// `client` is charged one rate-limit token per batch entry beyond the first
/// (the HTTP request itself paid one).
pub async fn handle_body(
    context: &RpcContext,
    body: &[u8],
    admin: bool,
    client: Option<std::net::IpAddr>,
) -> Option<Value> {
    if let Some(response) = handle_raw_transactions(context, body, client).await {
        return Some(response);
    }
    let parsed: Value = match serde_json::from_slice(body) {
        Ok(value) => value,
        Err(e) => {
            return Some(error_response(
                Value::Null,
                RpcError::new(PARSE_ERROR, format!("parse error: {e}")),
            ));
        }
    };
    match parsed {
        Value::Array(requests) => {
            if requests.is_empty() {
                return Some(error_response(
                    Value::Null,
                    RpcError::new(INVALID_REQUEST, "empty batch"),
                ));
            }
            if requests.len() > MAX_BATCH_LEN {
                return Some(error_response(
                    Value::Null,
                    RpcError::new(
                        error::LIMIT_EXCEEDED,
                        format!("batch of {} exceeds the limit of {MAX_BATCH_LEN}", requests.len()),
                    ),
                ));
            }
            if let Some(client) = client
                && !context.limiter.allow(client, (requests.len() - 1) as f64)
            {
                return Some(error_response(
                    Value::Null,
                    RpcError::new(error::LIMIT_EXCEEDED, "limit exceeded"),
                ));
            }
            // Concurrently, so the transactions of one batch share group commits.
            let responses = futures::future::join_all(
                requests.into_iter().map(|r| handle_request(context, r, admin, client)),
            )
            .await;
            Some(Value::Array(responses))
        }
        request => Some(handle_request(context, request, admin, client).await),
    }
}

async fn handle_request(
    context: &RpcContext,
    request: Value,
    admin: bool,
    client: Option<std::net::IpAddr>,
) -> Value {
    let Value::Object(mut object) = request else {
        return error_response(
            Value::Null,
            RpcError::new(INVALID_REQUEST, "request must be an object"),
        );
    };
    let id = object.remove("id").unwrap_or(Value::Null);
    if !matches!(id, Value::Null | Value::Number(_) | Value::String(_)) {
        return error_response(
            Value::Null,
            RpcError::new(INVALID_REQUEST, "id must be a number, string or null"),
        );
    }
    if object.get("jsonrpc") != Some(&Value::String("2.0".into())) {
        return error_response(id, RpcError::new(INVALID_REQUEST, "jsonrpc must be \"2.0\""));
    }
    let Some(Value::String(method)) = object.remove("method") else {
        return error_response(id, RpcError::new(INVALID_REQUEST, "method must be a string"));
    };
    let params = match object.remove("params") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(params)) => params,
        Some(_) => {
            return error_response(id, RpcError::invalid_params("params must be an array"));
        }
    };
    // Boxed: the dispatch futures hold every method's state (about 12 kB),
    // and a future is moved whole through each server layer; unboxed, that
    // size would be every request's, the fast path's included.
    let call = async {
        if method.starts_with("admin_") {
            Box::pin(admin::dispatch(context, &method, Params(params), admin)).await
        } else {
            Box::pin(eth::dispatch(context, &method, Params(params), client)).await
        }
    };
    answer(context, id, &method, call).await
}

/// Runs a method call, records its metrics and wraps its outcome in a
/// response object.
async fn answer(
    context: &RpcContext,
    id: Value,
    method: &str,
    call: impl Future<Output = Result<Value, RpcError>>,
) -> Value {
    let label = eth::metric_label(method);
    let timer = context.metrics.rpc_duration.with_label_values(&[label]).start_timer();
    let result = call.await;
    timer.observe_duration();
    let outcome = if result.is_ok() { "ok" } else { "error" };
    context.metrics.rpc_requests.with_label_values(&[label, outcome]).inc();
    match result {
        Ok(value) => json!({ "jsonrpc": "2.0", "id": id, "result": value }),
        Err(error) => error_response(id, error),
    }
}

/// A well-formed `eth_sendRawTransaction` request, read straight from the
/// body: borrowed strings, the hex argument decoded in place, no JSON tree.
#[derive(serde::Deserialize)]
struct SendRawTransaction<'a> {
    jsonrpc: &'a str,
    #[serde(default)]
    id: Value,
    method: &'a str,
    params: (alloy_primitives::Bytes,),
}

impl SendRawTransaction<'_> {
    /// The id and raw transaction if the general path would serve this
    /// request as `eth_sendRawTransaction` with these arguments.
    fn accept(self) -> Option<(Value, alloy_primitives::Bytes)> {
        let served = self.jsonrpc == "2.0"
            && self.method == "eth_sendRawTransaction"
            && matches!(self.id, Value::Null | Value::Number(_) | Value::String(_));
        served.then_some((self.id, self.params.0))
    }
}

/// The ingress fast path: a body that is one well-formed
/// `eth_sendRawTransaction` request, or a batch of only such requests, is
/// served without parsing it into a JSON tree first (what wallets and load
/// send). Anything else, including every malformed input, gives `None` and
/// takes the general path, which answers exactly as before. Limits and
/// metrics are the general path's.
async fn handle_raw_transactions(
    context: &RpcContext,
    body: &[u8],
    client: Option<std::net::IpAddr>,
) -> Option<Value> {
    let send = |id, raw: alloy_primitives::Bytes| {
        answer(context, id, "eth_sendRawTransaction", async move {
            Ok(json!(eth::submit(context, &raw).await?))
        })
    };
    match body.iter().find(|b| !b.is_ascii_whitespace())? {
        b'{' => {
            let request: SendRawTransaction<'_> = serde_json::from_slice(body).ok()?;
            let (id, raw) = request.accept()?;
            Some(send(id, raw).await)
        }
        b'[' => {
            let requests: Vec<SendRawTransaction<'_>> = serde_json::from_slice(body).ok()?;
            if requests.is_empty() || requests.len() > MAX_BATCH_LEN {
                return None;
            }
            let requests: Vec<_> =
                requests.into_iter().map(SendRawTransaction::accept).collect::<Option<_>>()?;
            if let Some(client) = client
                && !context.limiter.allow(client, (requests.len() - 1) as f64)
            {
                return Some(error_response(
                    Value::Null,
                    RpcError::new(error::LIMIT_EXCEEDED, "limit exceeded"),
                ));
            }
            // Concurrently, so the transactions of one batch share group commits.
            let responses =
                futures::future::join_all(requests.into_iter().map(|(id, raw)| send(id, raw)))
                    .await;
            Some(Value::Array(responses))
        }
        _ => None,
    }
}

fn error_response(id: Value, error: RpcError) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "error": error })
}

/// Positional parameters with typed access.
#[derive(Debug)]
pub struct Params(Vec<Value>);

impl Params {
    /// Parameter `index`, required.
    pub fn required<T: serde::de::DeserializeOwned>(
        &self,
        index: usize,
        name: &str,
    ) -> Result<T, RpcError> {
        let value = self.0.get(index).ok_or_else(|| {
            RpcError::invalid_params(format!(
                "missing value for required argument {index} ({name})"
            ))
        })?;
        serde_json::from_value(value.clone()).map_err(|e| {
            RpcError::invalid_params(format!("invalid argument {index} ({name}): {e}"))
        })
    }

    /// Parameter `index`, optional (absent or null gives `None`).
    pub fn optional<T: serde::de::DeserializeOwned>(
        &self,
        index: usize,
        name: &str,
    ) -> Result<Option<T>, RpcError> {
        match self.0.get(index) {
            None | Some(Value::Null) => Ok(None),
            Some(_) => self.required(index, name).map(Some),
        }
    }

    /// Fails when more than `max` parameters were given.
    pub fn at_most(&self, max: usize) -> Result<(), RpcError> {
        if self.0.len() > max {
            return Err(RpcError::invalid_params(format!(
                "too many arguments, want at most {max}"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::SendRawTransaction;
    use serde_json::{Value, json};

    fn fast(body: &Value) -> Option<(Value, alloy_primitives::Bytes)> {
        let text = body.to_string();
        serde_json::from_str::<SendRawTransaction<'_>>(&text).ok()?.accept()
    }

    #[test]
    fn the_fast_path_takes_only_well_formed_send_raw_transaction() {
        let good = json!({"jsonrpc": "2.0", "id": 7, "method": "eth_sendRawTransaction", "params": ["0x02ab"]});
        assert_eq!(fast(&good), Some((json!(7), alloy_primitives::Bytes::from(vec![2, 0xab]))));
        let mut no_id = good;
        no_id.as_object_mut().unwrap().remove("id");
        assert_eq!(fast(&no_id).map(|(id, _)| id), Some(Value::Null));
        // Everything else is left to the general path and its error messages.
        let declined = [
            json!({"jsonrpc": "1.0", "id": 7, "method": "eth_sendRawTransaction", "params": ["0x02"]}),
            json!({"id": 7, "method": "eth_sendRawTransaction", "params": ["0x02"]}),
            json!({"jsonrpc": "2.0", "id": [7], "method": "eth_sendRawTransaction", "params": ["0x02"]}),
            json!({"jsonrpc": "2.0", "id": 7, "method": "eth_chainId", "params": ["0x02"]}),
            json!({"jsonrpc": "2.0", "id": 7, "method": "eth_sendRawTransaction", "params": []}),
            json!({"jsonrpc": "2.0", "id": 7, "method": "eth_sendRawTransaction", "params": ["0x02", "0x03"]}),
            json!({"jsonrpc": "2.0", "id": 7, "method": "eth_sendRawTransaction", "params": ["0xzz"]}),
            json!({"jsonrpc": "2.0", "id": 7, "method": "eth_sendRawTransaction", "params": "0x02"}),
            json!({"jsonrpc": "2.0", "id": 7, "method": "eth_sendRawTransaction"}),
        ];
        for body in declined {
            assert_eq!(fast(&body), None, "{body}");
        }
        let escaped =
            r#"{"jsonrpc":"2.0","id":7,"method":"eth_send\u0052awTransaction","params":["0x02"]}"#;
        assert!(serde_json::from_str::<SendRawTransaction<'_>>(escaped).is_err());
    }
}
