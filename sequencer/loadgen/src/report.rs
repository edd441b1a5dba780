//! Classifying responses, tallying errors, and summarizing latency.

use hdrhistogram::Histogram;
use serde_json::Value;
use std::collections::HashMap;

/// Longest error message kept (longer ones are cut, so tallies group them).
pub const MAX_MESSAGE_CHARS: usize = 200;

/// Accepted transactions and errors by message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Transactions whose result was a transaction hash.
    pub accepted: u64,
    /// Transactions that failed, by error message.
    pub errors: HashMap<String, u64>,
}

/// Whether `value` is a 32-byte hash as `0x` hex.
pub fn is_tx_hash(value: &Value) -> bool {
    value.as_str().is_some_and(|s| {
        s.len() == 66 && s.starts_with("0x") && s[2..].bytes().all(|b| b.is_ascii_hexdigit())
    })
}

fn cut(message: &str) -> String {
    message.chars().take(MAX_MESSAGE_CHARS).collect()
}

impl Tally {
    /// Counts `count` failures with `message`.
    pub fn fail(&mut self, message: &str, count: u64) {
        if count > 0 {
            *self.errors.entry(cut(message)).or_default() += count;
        }
    }

    /// Total failures.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Counts one JSON-RPC response object (one transaction).
    pub fn record_object(&mut self, response: &Value) {
        if let Some(error) = response.get("error") {
            let message = error.get("message").and_then(Value::as_str).map_or_else(
                || format!("error without a message: {}", cut(&error.to_string())),
                str::to_owned,
            );
            self.fail(&message, 1);
        } else if let Some(result) = response.get("result") {
            if is_tx_hash(result) {
                self.accepted += 1;
            } else {
                self.fail(
                    &format!("result is not a transaction hash: {}", cut(&result.to_string())),
                    1,
                );
            }
        } else {
            self.fail("response has neither result nor error", 1);
        }
    }

    /// Counts the HTTP body answering a request of `txs` transactions (a
    /// batch when `batch`). Missing answers and unparsable bodies count as
    /// failures of every transaction they leave unanswered.
    pub fn record_body(&mut self, body: &[u8], txs: u64, batch: bool) {
        let parsed: Value = match serde_json::from_slice(body) {
            Ok(value) => value,
            Err(e) => return self.fail(&format!("unparsable response: {e}"), txs),
        };
        match parsed {
            Value::Array(responses) if batch => {
                let answered = (responses.len() as u64).min(txs);
                for response in responses.iter().take(answered as usize) {
                    self.record_object(response);
                }
                self.fail("batch response is missing answers", txs - answered);
            }
            // A batch refused whole is answered by one error object.
            Value::Object(_) if batch => {
                let message = parsed
                    .get("error")
                    .and_then(|e| e.get("message"))
                    .and_then(Value::as_str)
                    .map_or_else(
                        || {
                            format!(
                                "a batch was answered with one object: {}",
                                cut(&parsed.to_string())
                            )
                        },
                        str::to_owned,
                    );
                self.fail(&message, txs);
            }
            Value::Object(_) => self.record_object(&parsed),
            other => self.fail(&format!("unexpected response: {}", cut(&other.to_string())), txs),
        }
    }

    /// Adds `other`'s counts.
    pub fn merge(&mut self, other: Self) {
        self.accepted += other.accepted;
        for (message, count) in other.errors {
            *self.errors.entry(message).or_default() += count;
        }
    }

    /// The `n` most frequent error messages, most frequent first (ties by message).
    pub fn top_errors(&self, n: usize) -> Vec<(String, u64)> {
        let mut errors: Vec<(String, u64)> =
            self.errors.iter().map(|(m, c)| (m.clone(), *c)).collect();
        errors.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        errors.truncate(n);
        errors
    }
}

/// CPU time (user and system) this process has used so far, all threads.
pub fn process_cpu() -> std::time::Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `getrusage` fills the struct it is given; RUSAGE_SELF is valid.
    let usage = unsafe {
        if libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) != 0 {
            return std::time::Duration::ZERO;
        }
        usage.assume_init()
    };
    let time = |t: libc::timeval| {
        std::time::Duration::new(t.tv_sec.max(0) as u64, (t.tv_usec.max(0) as u32) * 1_000)
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// Microseconds of `cpu` per accepted transaction (0 when none was accepted).
pub fn cpu_us_per_tx(cpu: std::time::Duration, accepted: u64) -> f64 {
    if accepted == 0 { 0.0 } else { round(cpu.as_secs_f64() * 1e6 / accepted as f64, 1) }
}

/// A new latency histogram: microseconds, 1 µs to 10 minutes, 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencySummary {
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
}

/// Percentiles of a histogram recorded in microseconds (0 when empty),
/// rounded to microseconds.
pub fn summarize(histogram: &Histogram<u64>) -> LatencySummary {
    let ms = |quantile: f64| {
        if histogram.is_empty() {
            0.0
        } else {
            histogram.value_at_quantile(quantile) as f64 / 1000.0
        }
    };
    LatencySummary { p50_ms: ms(0.50), p90_ms: ms(0.90), p99_ms: ms(0.99) }
}

/// `count` per second over `seconds` (0 when no time passed).
pub fn per_second(count: u64, seconds: f64) -> f64 {
    if seconds > 0.0 { count as f64 / seconds } else { 0.0 }
}

/// `value` rounded to `digits` decimals.
pub fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const HASH: &str = "0x5c504ed432cb51138bcf09aa5e8a410dd4a1e204ef84bfed1be16dfba1b22060";

    #[test]
    fn hashes_are_recognised() {
        assert!(is_tx_hash(&json!(HASH)));
        assert!(!is_tx_hash(&json!(&HASH[..65])));
        assert!(!is_tx_hash(&json!("0x".to_owned() + &"g".repeat(64))));
        assert!(!is_tx_hash(&json!(1)));
        assert!(!is_tx_hash(&Value::Null));
    }

    #[test]
    fn bodies_are_tallied_per_transaction() {
        let mut tally = Tally::default();
        let single = json!({"jsonrpc":"2.0","id":1,"result":HASH}).to_string();
        tally.record_body(single.as_bytes(), 1, false);
        let batch = json!([
            {"jsonrpc":"2.0","id":1,"result":HASH},
            {"jsonrpc":"2.0","id":2,"error":{"code":-32000,"message":"nonce too low"}},
            {"jsonrpc":"2.0","id":3,"error":{"code":-32000,"message":"nonce too low"}},
            {"jsonrpc":"2.0","id":4,"result":null},
        ])
        .to_string();
        tally.record_body(batch.as_bytes(), 5, true);
        assert_eq!(tally.accepted, 2);
        assert_eq!(tally.errors["nonce too low"], 2);
        assert_eq!(tally.errors["batch response is missing answers"], 1);
        assert_eq!(tally.errors["result is not a transaction hash: null"], 1);
        assert_eq!(tally.error_count(), 4);

        // A batch refused whole counts once per transaction.
        let refused =
            json!({"jsonrpc":"2.0","id":null,"error":{"code":-32005,"message":"too big"}});
        let mut whole = Tally::default();
        whole.record_body(refused.to_string().as_bytes(), 100, true);
        assert_eq!(whole.errors["too big"], 100);
        assert_eq!(whole.accepted, 0);

        let mut garbage = Tally::default();
        garbage.record_body(b"<html>", 3, true);
        assert_eq!(garbage.error_count(), 3);
    }

    #[test]
    fn top_errors_are_sorted_and_merged() {
        let mut a = Tally::default();
        a.fail("b", 2);
        a.fail("a", 2);
        a.fail("c", 5);
        let mut b = Tally { accepted: 3, ..Default::default() };
        b.fail("d", 1);
        b.fail("a", 1);
        a.merge(b);
        assert_eq!(a.accepted, 3);
        assert_eq!(
            a.top_errors(3),
            vec![("c".to_owned(), 5), ("a".to_owned(), 3), ("b".to_owned(), 2)]
        );
        a.fail(&"x".repeat(500), 1);
        assert!(a.errors.keys().all(|m| m.chars().count() <= MAX_MESSAGE_CHARS));
    }

    #[test]
    fn latency_percentiles_in_milliseconds() {
        let mut histogram = latency_histogram();
        assert_eq!(summarize(&histogram), LatencySummary { p50_ms: 0.0, p90_ms: 0.0, p99_ms: 0.0 });
        // 1 ms .. 100 ms, one sample each.
        for ms in 1..=100u64 {
            histogram.record(ms * 1000).unwrap();
        }
        let summary = summarize(&histogram);
        // Three significant digits: values are exact to within 0.1 %.
        let close = |got: f64, want: f64| (got - want).abs() <= want * 0.001;
        assert!(close(summary.p50_ms, 50.0), "{summary:?}");
        assert!(close(summary.p90_ms, 90.0), "{summary:?}");
        assert!(close(summary.p99_ms, 99.0), "{summary:?}");
    }

    #[test]
    fn rates_and_rounding() {
        assert_eq!(per_second(30_000, 4.0), 7_500.0);
        assert_eq!(per_second(5, 0.0), 0.0);
        assert_eq!(round(1.23456, 3), 1.235);
        assert_eq!(round(7499.96, 1), 7500.0);
    }

    #[test]
    fn process_cpu_counts_this_process_work() {
        let before = process_cpu();
        let started = std::time::Instant::now();
        // Spin until the clock (10 ms ticks at worst) has moved, or give up
        // after ten seconds of wall time (the assertion then fails).
        let mut x = 0u64;
        while process_cpu() < before + std::time::Duration::from_millis(20)
            && started.elapsed() < std::time::Duration::from_secs(10)
        {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        assert!(process_cpu() >= before + std::time::Duration::from_millis(20));
        assert_eq!(cpu_us_per_tx(std::time::Duration::from_millis(3), 100), 30.0);
        assert_eq!(cpu_us_per_tx(std::time::Duration::from_millis(3), 0), 0.0);
    }
}
