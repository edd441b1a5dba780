//! Operator methods, only with the admin bearer token: pause and resume
//! sequencing, drop a pending transaction, change the rate limit.

use super::{
    Params, RpcContext,
    error::{METHOD_NOT_FOUND, RpcError},
};
use alloy_primitives::B256;
use serde_json::{Value, json};

/// Error code for a missing or wrong bearer token.
const UNAUTHORIZED: i64 = -32001;

/// Runs one `admin_` method.
pub(super) async fn dispatch(
    ctx: &RpcContext,
    method: &str,
    params: Params,
    authorized: bool,
) -> Result<Value, RpcError> {
    if ctx.limits.admin_token.is_none() {
        return Err(RpcError::new(
            METHOD_NOT_FOUND,
            format!("the method {method} does not exist/is not available"),
        ));
    }
    if !authorized {
        return Err(RpcError::new(
            UNAUTHORIZED,
            "unauthorized: admin methods need the bearer token",
        ));
    }
    match method {
        "admin_pauseSequencing" | "admin_resumeSequencing" => {
            params.at_most(0)?;
            let paused = method == "admin_pauseSequencing";
            ctx.store.set_sequencing_paused(paused).await?;
            tracing::warn!(paused, "sequencing paused flag changed by an operator");
            Ok(json!(paused))
        }
        "admin_dropTransaction" => {
            params.at_most(1)?;
            let hash: B256 = params.required(0, "hash")?;
            let dropped = ctx.store.drop_pending(hash, "dropped by operator").await?;
            if let Some((sender, nonce)) = dropped {
                ctx.view.pool().forget(sender, nonce, hash);
            }
            Ok(json!(dropped.is_some()))
        }
        "admin_setRateLimit" => {
            params.at_most(2)?;
            let rate: u32 = params.required(0, "requestsPerSecond")?;
            let burst: u32 = params.required(1, "burst")?;
            ctx.limiter.set(rate, burst);
            Ok(json!(true))
        }
        _ => Err(RpcError::new(
            METHOD_NOT_FOUND,
            format!("the method {method} does not exist/is not available"),
        )),
    }
}
