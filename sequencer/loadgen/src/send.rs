//! Sending the prepared requests with a fixed number of concurrent workers.
//!
//! Each worker owns one HTTP/1.1 keep-alive connection and takes the next
//! request in order. Before sending, it waits until the requests this one
//! depends on (see [`crate::plan::dependencies`]) have been answered, so each
//! sender's nonces reach the node in order.
//!
//! The connection is hyper's bare HTTP/1.1 client, not `reqwest`: with one
//! connection per worker there is nothing for a pool, redirects or a parsed
//! URL per request to do, and `reqwest`'s per-request work was 31-45 µs of
//! this machine's two cores per single request, taken from the node under
//! test (it runs on the same machine).

use crate::report::{Tally, latency_histogram};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::{
    StatusCode, Uri,
    client::conn::http1::{self, SendRequest},
    header::{self, HeaderValue},
    http,
};
use hyper_util::rt::TokioIo;
use indicatif::ProgressBar;
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};
use tokio::{net::TcpStream, sync::Notify};

/// Longest a request may take before it counts as failed.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// One prepared HTTP request.
#[derive(Debug, Clone)]
pub struct Request {
    /// The JSON body.
    pub body: Bytes,
    /// Transactions it carries.
    pub txs: u32,
    /// Earlier requests that must be answered first.
    pub deps: Vec<u32>,
}

/// What the sending measured.
#[derive(Debug)]
pub struct SendOutcome {
    /// Accepted transactions and errors.
    pub tally: Tally,
    /// Request latencies in microseconds.
    pub latency: Histogram<u64>,
    /// Wall time from the first request to the last answer.
    pub elapsed: Duration,
}

/// Shared state of the workers.
#[derive(Debug)]
struct Shared {
    target: Target,
    batch: bool,
    requests: Vec<Request>,
    next: AtomicUsize,
    answered: Vec<AtomicBool>,
    progress: Notify,
    bar: ProgressBar,
}

impl Shared {
    /// Waits until request `index` was answered.
    async fn wait_for(&self, index: usize) {
        loop {
            let notified = self.progress.notified();
            tokio::pin!(notified);
            // Registered before the check, so a completion in between wakes us.
            notified.as_mut().enable();
            if self.answered[index].load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }
}

/// An error with its causes.
fn error_text(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Where the requests go: the address to connect to, and the request
/// target and `Host` header of every request.
#[derive(Debug)]
struct Target {
    address: String,
    path: String,
    host: HeaderValue,
}

impl Target {
    fn parse(url: &str) -> eyre::Result<Self> {
        let uri: Uri = url.parse()?;
        if uri.scheme_str() != Some("http") {
            eyre::bail!("only http:// URLs are supported, got {url}");
        }
        let authority = uri.authority().ok_or_else(|| eyre::eyre!("no host in {url}"))?;
        let port = authority.port_u16().unwrap_or(80);
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        Ok(Self {
            address: format!("{}:{port}", authority.host()),
            path,
            host: HeaderValue::from_str(authority.as_str())?,
        })
    }
}

/// One keep-alive HTTP/1.1 connection; its driver runs as its own task and
/// ends when the sender is dropped.
async fn connect(target: &Target) -> eyre::Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(&target.address).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// Sends one request on `connection` (opened first if there is none) and
/// reads the whole answer. On a transport error the connection is dropped:
/// the next request opens a new one.
async fn exchange(
    connection: &mut Option<SendRequest<Full<Bytes>>>,
    target: &Target,
    body: Bytes,
) -> Result<(StatusCode, Bytes), String> {
    let attempt = async {
        // A kept connection the node has closed meanwhile is replaced
        // before anything is sent on it.
        let kept = match connection.as_mut() {
            Some(sender) => sender.ready().await.is_ok(),
            None => false,
        };
        if !kept {
            let mut sender =
                connect(target).await.map_err(|e| format!("connection failed: {e}"))?;
            sender.ready().await.map_err(|e| error_text(&e))?;
            *connection = Some(sender);
        }
        let sender = connection.as_mut().expect("connected above");
        let request = http::Request::post(target.path.as_str())
            .header(header::HOST, target.host.clone())
            .header(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(Full::new(body))
            .map_err(|e| error_text(&e))?;
        let response = sender.send_request(request).await.map_err(|e| error_text(&e))?;
        let status = response.status();
        let body = response.into_body().collect().await.map_err(|e| error_text(&e))?;
        Ok((status, body.to_bytes()))
    };
    let result = match tokio::time::timeout(REQUEST_TIMEOUT, attempt).await {
        Ok(result) => result,
        Err(_) => Err("request timed out".to_owned()),
    };
    if result.is_err() {
        *connection = None;
    }
    result
}

async fn worker(shared: Arc<Shared>) -> eyre::Result<(Tally, Histogram<u64>)> {
    let mut connection = None;
    let mut tally = Tally::default();
    let mut latency = latency_histogram();
    loop {
        let index = shared.next.fetch_add(1, Ordering::Relaxed);
        let Some(request) = shared.requests.get(index) else { break };
        for &dep in &request.deps {
            shared.wait_for(dep as usize).await;
        }
        let txs = u64::from(request.txs);
        let started = Instant::now();
        match exchange(&mut connection, &shared.target, request.body.clone()).await {
            Ok((status, body)) if status.is_success() => {
                latency.saturating_record(started.elapsed().as_micros() as u64);
                tally.record_body(&body, txs, shared.batch);
            }
            Ok((status, _)) => tally.fail(&format!("HTTP {status}"), txs),
            Err(e) => tally.fail(&e, txs),
        }
        shared.answered[index].store(true, Ordering::Release);
        shared.progress.notify_waiters();
        shared.bar.inc(txs);
    }
    Ok((tally, latency))
}

/// Sends every request with `concurrency` workers, in order subject to the
/// dependencies; `batch` says whether bodies are JSON-RPC batch arrays.
/// Failed requests are counted, not retried. `bar` is advanced by
/// transactions answered.
pub async fn send_all(
    url: &str,
    requests: Vec<Request>,
    batch: bool,
    concurrency: usize,
    bar: ProgressBar,
) -> eyre::Result<SendOutcome> {
    let answered = requests.iter().map(|_| AtomicBool::new(false)).collect();
    let shared = Arc::new(Shared {
        target: Target::parse(url)?,
        batch,
        requests,
        next: AtomicUsize::new(0),
        answered,
        progress: Notify::new(),
        bar,
    });
    let started = Instant::now();
    let workers: Vec<_> =
        (0..concurrency.max(1)).map(|_| tokio::spawn(worker(shared.clone()))).collect();
    let mut tally = Tally::default();
    let mut latency = latency_histogram();
    for handle in workers {
        let (worker_tally, worker_latency) = handle.await??;
        tally.merge(worker_tally);
        latency.add(worker_latency)?;
    }
    let elapsed = started.elapsed();
    shared.bar.finish_and_clear();
    Ok(SendOutcome { tally, latency, elapsed })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::{Router, http::header::CONNECTION, response::IntoResponse, routing::post};
    use std::sync::atomic::AtomicU64;

    /// A JSON-RPC endpoint that answers every single request with a
    /// transaction hash, and asks the client to close the connection after
    /// every fifth answer.
    async fn serve() -> (String, Arc<AtomicU64>) {
        let served = Arc::new(AtomicU64::new(0));
        let counter = served.clone();
        let app = Router::new().route(
            "/rpc",
            post(move || {
                let counter = counter.clone();
                async move {
                    let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
                    let hash = format!("0x{:064x}", n);
                    let body = format!(r#"{{"jsonrpc":"2.0","id":1,"result":"{hash}"}}"#);
                    let close = if n.is_multiple_of(5) { "close" } else { "keep-alive" };
                    ([(CONNECTION, close), (header::CONTENT_TYPE, "application/json")], body)
                        .into_response()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let address = listener.local_addr().expect("bound");
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{address}/rpc"), served)
    }

    fn requests(n: u32) -> Vec<Request> {
        (0..n)
            .map(|i| Request {
                body: Bytes::from_static(br#"{"jsonrpc":"2.0","id":1,"method":"x"}"#),
                txs: 1,
                // Every request after the first waits for the one before
                // the previous one.
                deps: if i >= 2 { vec![i - 2] } else { vec![] },
            })
            .collect()
    }

    #[tokio::test]
    async fn every_request_is_answered_across_closed_connections() {
        let (url, served) = serve().await;
        let outcome =
            send_all(&url, requests(60), false, 4, ProgressBar::hidden()).await.expect("sends");
        assert_eq!(outcome.tally.accepted, 60, "errors: {:?}", outcome.tally.errors);
        assert_eq!(outcome.tally.error_count(), 0);
        assert_eq!(served.load(Ordering::Relaxed), 60);
        assert_eq!(outcome.latency.len(), 60);
    }

    #[tokio::test]
    async fn an_unreachable_node_counts_failures_without_stopping() {
        // A port nothing listens on: bound, then released.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let address = listener.local_addr().expect("bound");
        drop(listener);
        let url = format!("http://{address}/");
        let outcome =
            send_all(&url, requests(6), false, 2, ProgressBar::hidden()).await.expect("runs");
        assert_eq!(outcome.tally.accepted, 0);
        assert_eq!(outcome.tally.error_count(), 6);
        let (message, _) = &outcome.tally.top_errors(1)[0];
        assert!(message.starts_with("connection failed"), "{message}");
    }

    #[test]
    fn only_plain_http_urls_are_targets() {
        let target = Target::parse("http://127.0.0.1:8545/rpc?x=1").expect("parses");
        assert_eq!(target.address, "127.0.0.1:8545");
        assert_eq!(target.path, "/rpc?x=1");
        assert_eq!(target.host, "127.0.0.1:8545");
        assert_eq!(Target::parse("http://localhost").expect("parses").address, "localhost:80");
        assert!(Target::parse("https://example.com").is_err());
    }
}
