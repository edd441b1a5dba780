//! L1 connections and the errors of L1 work.

use alloy::{
    network::EthereumWallet,
    providers::{DynProvider, Provider, ProviderBuilder},
    signers::local::PrivateKeySigner,
};

/// Errors of L1-facing work. `retryable` says whether the next attempt may succeed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum L1Error {
    /// The L1 node could not be reached or refused a call (retryable).
    #[error("l1 rpc: {0}")]
    Rpc(String),
    /// The store failed (retryable).
    #[error(transparent)]
    Store(#[from] rollup_store::StoreError),
    /// L1 and our records disagree in a way that needs an operator (fatal).
    #[error("inconsistent with L1: {0}")]
    Inconsistent(String),
    /// A bad URL or key (fatal).
    #[error("config: {0}")]
    Config(String),
}

impl L1Error {
    /// Whether retrying later may succeed.
    pub const fn is_retryable(&self) -> bool {
        matches!(self, Self::Rpc(_) | Self::Store(_))
    }

    pub(crate) fn rpc(e: impl std::fmt::Display) -> Self {
        Self::Rpc(e.to_string())
    }
}

/// A read-only L1 provider.
pub fn read_provider(url: &str) -> Result<DynProvider, L1Error> {
    let url = url.parse().map_err(|e| L1Error::Config(format!("l1 url {url:?}: {e}")))?;
    Ok(ProviderBuilder::new().connect_http(url).erased())
}

/// An L1 provider that signs with `signer` (nonces and fees filled by alloy).
pub fn signing_provider(url: &str, signer: PrivateKeySigner) -> Result<DynProvider, L1Error> {
    let url = url.parse().map_err(|e| L1Error::Config(format!("l1 url {url:?}: {e}")))?;
    Ok(ProviderBuilder::new().wallet(EthereumWallet::from(signer)).connect_http(url).erased())
}

/// Parses a hex private key (with or without `0x`) without echoing it on error.
pub fn parse_key(hex_key: &str) -> Result<PrivateKeySigner, L1Error> {
    hex_key
        .trim()
        .parse::<PrivateKeySigner>()
        .map_err(|_| L1Error::Config("invalid private key (value not shown)".into()))
}

/// Runs `step` until `shutdown` fires: again at once after it made progress
/// (`Some`), else after `interval`. Failures are counted under `role` and
/// logged; the next attempt retries.
pub(crate) async fn drive<F, Fut>(
    role: &'static str,
    interval: std::time::Duration,
    metrics: &crate::L1Metrics,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    mut step: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<u64>, L1Error>>,
{
    loop {
        let result = tokio::select! {
            result = step() => result,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        match result {
            Ok(Some(_)) => continue,
            Ok(None) => {}
            Err(error) => {
                metrics.l1_errors.with_label_values(&[role]).inc();
                tracing::warn!(%error, retryable = error.is_retryable(), role, "L1 step failed");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}
