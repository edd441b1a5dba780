//! JSON-RPC error objects, converted from every error in one place.

use crate::admission::AdmissionError;
use serde::Serialize;
use serde_json::Value;

/// Invalid JSON was received.
pub const PARSE_ERROR: i64 = -32700;
/// The JSON is not a valid request object.
pub const INVALID_REQUEST: i64 = -32600;
/// The method does not exist.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// Invalid method parameters.
pub const INVALID_PARAMS: i64 = -32602;
/// Internal error.
pub const INTERNAL_ERROR: i64 = -32603;
/// geth's code for transaction and state errors.
pub const SERVER_ERROR: i64 = -32000;
/// Execution reverted (with the revert data).
pub const EXECUTION_REVERTED: i64 = 3;
/// A limit was exceeded.
pub const LIMIT_EXCEEDED: i64 = -32005;

/// The answer to a submission whose group commit failed. "May": a commit
/// whose reply the outage cut may have been stored after all; sending the
/// same bytes again is safe either way (identical bytes are idempotent).
pub const NOT_STORED: &str =
    "transaction may not have been stored (database unavailable); resend the same bytes";

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RpcError {
    /// Error code.
    pub code: i64,
    /// Human-readable message.
    pub message: String,
    /// Extra data (revert bytes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl RpcError {
    /// An error with a code and message.
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), data: None }
    }

    /// Invalid params.
    pub fn invalid_params(message: impl Into<String>) -> Self {
        Self::new(INVALID_PARAMS, message)
    }

    /// A server-side failure: logged in full, reported without internals.
    pub fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "internal error serving a request");
        Self::new(INTERNAL_ERROR, "internal error")
    }
}

impl From<AdmissionError> for RpcError {
    fn from(error: AdmissionError) -> Self {
        Self::new(SERVER_ERROR, error.to_string())
    }
}

impl From<crate::intake::IntakeError> for RpcError {
    fn from(error: crate::intake::IntakeError) -> Self {
        use crate::intake::IntakeError;
        match error {
            IntakeError::Overloaded => Self::new(LIMIT_EXCEEDED, error.to_string()),
            // The client must know that nothing was stored, and that sending
            // the same bytes again is safe (identical resubmissions are
            // idempotent); the database's own words stay in the log.
            IntakeError::Database(detail) => {
                tracing::error!(error = %detail, "group commit failed; its transactions are not acknowledged");
                Self::new(INTERNAL_ERROR, NOT_STORED)
            }
            IntakeError::Closed => {
                Self::new(INTERNAL_ERROR, "shutting down; transaction not stored, retry")
            }
        }
    }
}

impl From<rollup_store::StoreError> for RpcError {
    fn from(error: rollup_store::StoreError) -> Self {
        Self::internal(error)
    }
}
