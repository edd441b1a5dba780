//! Sending the prepared requests with a fixed number of concurrent workers.
//!
//! Each worker owns one HTTP/1.1 keep-alive connection (its own client with a
//! one-connection pool) and takes the next request in order. Before sending,
//! it waits until the requests this one depends on (see
//! [`crate::plan::dependencies`]) have been answered, so each sender's nonces
//! reach the node in order.

use crate::report::{Tally, latency_histogram};
use bytes::Bytes;
use hdrhistogram::Histogram;
use indicatif::ProgressBar;
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};
use tokio::sync::Notify;

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
    url: String,
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

/// Flattened error with its causes (reqwest's top-level text is generic).
fn error_text(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() {
        "request timed out".to_owned()
    } else if error.is_connect() {
        "connection failed".to_owned()
    } else {
        "transport error".to_owned()
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

async fn worker(shared: Arc<Shared>) -> eyre::Result<(Tally, Histogram<u64>)> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .http1_only()
        .tcp_nodelay(true)
        .timeout(REQUEST_TIMEOUT)
        .build()?;
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
        let result = client
            .post(&shared.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(request.body.clone())
            .send()
            .await;
        match result {
            Ok(response) => {
                let status = response.status();
                match response.bytes().await {
                    Ok(body) if status.is_success() => {
                        latency.saturating_record(started.elapsed().as_micros() as u64);
                        tally.record_body(&body, txs, shared.batch);
                    }
                    Ok(_) => tally.fail(&format!("HTTP {status}"), txs),
                    Err(e) => tally.fail(&error_text(&e), txs),
                }
            }
            Err(e) => tally.fail(&error_text(&e), txs),
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
        url: url.to_owned(),
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
