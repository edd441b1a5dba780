//! Protection of the JSON-RPC server: a per-client rate limit (token bucket
//! by IP address), a cap on requests in flight with load shedding, and the
//! bearer token that unlocks the admin methods.

use super::error::{LIMIT_EXCEEDED, RpcError};
use axum::{
    BoxError, Json,
    extract::{ConnectInfo, Request, State},
    http::StatusCode,
    middleware::Next,
    response::{IntoResponse, Response},
};
use serde_json::json;
use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// Limits of the JSON-RPC server.
#[derive(Debug, Clone)]
pub struct RpcLimits {
    /// Sustained requests per second per client IP.
    pub rate_per_second: u32,
    /// Requests a client may send in a burst.
    pub burst: u32,
    /// Requests served at once; more are shed with HTTP 503.
    pub max_in_flight: usize,
    /// Bearer token for the `admin_` methods (`None`: admin methods disabled).
    pub admin_token: Option<String>,
    /// Simulated calls (`eth_call`, `eth_estimateGas`,
    /// `eth_createAccessList`) run at once on the blocking pool; more wait.
    pub max_simulations: usize,
    /// How long one request's simulations may take, waiting included.
    pub simulation_timeout: Duration,
}

/// Default [`RpcLimits::simulation_timeout`]: geth's `--rpc.evmtimeout`.
pub const DEFAULT_SIMULATION_TIMEOUT: Duration = Duration::from_secs(5);

/// Default [`RpcLimits::max_simulations`]: one core left to the rest of
/// the node (as reth keeps its tracing pool off some cores), at least one.
pub fn default_max_simulations() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1))
}

impl Default for RpcLimits {
    fn default() -> Self {
        Self {
            rate_per_second: 20_000,
            burst: 40_000,
            max_in_flight: 2_048,
            admin_token: None,
            max_simulations: default_max_simulations(),
            simulation_timeout: DEFAULT_SIMULATION_TIMEOUT,
        }
    }
}

/// Per-client token buckets; the rate can be changed at run time.
#[derive(Debug)]
pub struct RateLimiter {
    buckets: Mutex<Buckets>,
}

#[derive(Debug)]
struct Buckets {
    rate: f64,
    burst: f64,
    clients: HashMap<IpAddr, (f64, Instant)>,
}

/// Most clients tracked before idle ones are forgotten.
const MAX_TRACKED_CLIENTS: usize = 100_000;

impl RateLimiter {
    /// A limiter of `rate` requests per second with bursts of `burst`.
    pub fn new(rate: u32, burst: u32) -> Self {
        Self {
            buckets: Mutex::new(Buckets {
                rate: f64::from(rate),
                burst: f64::from(burst.max(1)),
                clients: HashMap::new(),
            }),
        }
    }

    /// Changes the limits for every client.
    pub fn set(&self, rate: u32, burst: u32) {
        let mut buckets = self.lock();
        buckets.rate = f64::from(rate);
        buckets.burst = f64::from(burst.max(1));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Buckets> {
        self.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes `cost` tokens from `client`'s bucket; false when it is empty.
    pub fn allow(&self, client: IpAddr, cost: f64) -> bool {
        let mut buckets = self.lock();
        let (rate, burst) = (buckets.rate, buckets.burst);
        let now = Instant::now();
        if buckets.clients.len() >= MAX_TRACKED_CLIENTS {
            // Full buckets carry no information: forget them.
            buckets
                .clients
                .retain(|_, (tokens, at)| *tokens + at.elapsed().as_secs_f64() * rate < burst);
        }
        let (tokens, at) = buckets.clients.entry(client).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * rate).min(burst);
        *at = now;
        if *tokens >= cost {
            *tokens -= cost;
            true
        } else {
            false
        }
    }
}

/// Middleware: refuses clients over their rate with HTTP 429 and JSON-RPC
/// error -32005.
pub(super) async fn rate_limit(
    State(limiter): State<Arc<RateLimiter>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    if limiter.allow(peer.ip(), 1.0) {
        return next.run(request).await;
    }
    let error = RpcError::new(LIMIT_EXCEEDED, "limit exceeded");
    (StatusCode::TOO_MANY_REQUESTS, Json(json!({ "jsonrpc": "2.0", "id": null, "error": error })))
        .into_response()
}

/// Answer for a request shed because too many are in flight (or timed out).
pub(super) async fn overloaded(error: BoxError) -> Response {
    let (status, message) = if error.is::<tower::load_shed::error::Overloaded>() {
        (StatusCode::SERVICE_UNAVAILABLE, "server overloaded, retry later")
    } else {
        (StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    };
    let error = RpcError::new(LIMIT_EXCEEDED, message);
    (status, Json(json!({ "jsonrpc": "2.0", "id": null, "error": error }))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_refill_at_the_rate_and_cap_at_the_burst() {
        let limiter = RateLimiter::new(1, 3);
        let client = IpAddr::from([127, 0, 0, 1]);
        let other = IpAddr::from([127, 0, 0, 2]);
        assert!((0..3).all(|_| limiter.allow(client, 1.0)));
        assert!(!limiter.allow(client, 1.0));
        assert!(limiter.allow(other, 1.0), "clients have separate buckets");
        limiter.set(1_000_000, 3);
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert!(limiter.allow(client, 3.0));
    }
}
