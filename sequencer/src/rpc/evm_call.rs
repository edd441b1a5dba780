//! `eth_call`, `eth_estimateGas` and `eth_createAccessList`: execute a call
//! against the state after some block (the head or a recent one) without
//! committing it.

use super::error::{EXECUTION_REVERTED, RpcError, SERVER_ERROR};
use alloy::rpc::types::TransactionRequest;
use alloy_consensus::Header;
use alloy_eips::eip2930::{AccessList, AccessListItem, AccessListResult};
use alloy_primitives::{Address, B256, Bytes, TxKind, U256};
use revm::{
    Context, DatabaseRef, ExecuteEvm, MainBuilder, MainContext,
    context::{
        BlockEnv, CfgEnv, TxEnv,
        result::{EVMError, ExecutionResult, ResultAndState},
    },
    context_interface::block::BlobExcessGasAndPrice,
    precompile::{PrecompileSpecId, Precompiles},
    primitives::eip4844::BLOB_BASE_FEE_UPDATE_FRACTION_CANCUN,
};
use rollup_executor::{ChainConfig, state::BlockState};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};

/// The outcome of a simulated call.
pub(super) struct CallOutcome {
    pub(super) gas_used: u64,
    pub(super) output: Bytes,
}

/// Runs `request` with `gas_limit` on `state`, the state after the block
/// with `header` (as if in the block after it).
pub(super) fn simulate<S: DatabaseRef>(
    config: &ChainConfig,
    header: &Header,
    state: &S,
    request: &TransactionRequest,
    gas_limit: u64,
) -> Result<CallOutcome, RpcError>
where
    S::Error: std::fmt::Display,
{
    call_outcome(execute(config, header, state, request, gas_limit)?.result)
}

/// A finished call's output, or the error a failed one answers with.
fn call_outcome(result: ExecutionResult) -> Result<CallOutcome, RpcError> {
    let gas_used = result.tx_gas_used();
    match result {
        ExecutionResult::Success { output, .. } => {
            Ok(CallOutcome { gas_used, output: output.into_data() })
        }
        ExecutionResult::Revert { output, .. } => Err(RpcError {
            code: EXECUTION_REVERTED,
            message: "execution reverted".into(),
            data: Some(json!(output)),
        }),
        ExecutionResult::Halt { reason, .. } => {
            Err(RpcError::new(SERVER_ERROR, format!("execution halted: {reason:?}")))
        }
    }
}

/// Rounds `eth_createAccessList` runs at most: each run with the list the
/// last one found, until the list stops changing (as geth does; a list
/// changes gas costs, and so possibly the path taken).
const ACCESS_LIST_ROUNDS: usize = 8;

/// `eth_createAccessList`: the accounts and slots `request` touches, and
/// the gas it uses with that list. As geth's tracer: every slot read or
/// written with its account, and every other account touched except the
/// sender, the recipient (or created contract), the precompiles and the
/// block's fee recipient (all warm anyway). A call that fails still gets
/// its list, with the failure in `error`.
/// `execute(request, gas)` runs one round.
pub(super) fn create_access_list(
    config: &ChainConfig,
    request: &TransactionRequest,
    mut execute: impl FnMut(&TransactionRequest, u64) -> Result<ResultAndState, RpcError>,
) -> Result<AccessListResult, RpcError> {
    let gas_limit = gas_cap(config, request);
    let sender = request.from.unwrap_or_default();
    let precompiles = Precompiles::new(PrecompileSpecId::from_spec_id(config.fork.spec_id()));
    let mut request = request.clone();
    let mut list = request.access_list.clone().unwrap_or_default();
    for _ in 0..ACCESS_LIST_ROUNDS {
        request.access_list = Some(list.clone());
        let executed = execute(&request, gas_limit)?;
        let recipient = match request.to.unwrap_or(TxKind::Create) {
            TxKind::Call(to) => Some(to),
            TxKind::Create => executed.result.created_address(),
        };
        let excluded = |address: &Address| {
            *address == sender
                || Some(*address) == recipient
                || *address == config.fee_recipient
                || precompiles.contains(address)
        };
        // Seeded with the last list, as geth's tracer is: a list only
        // grows, so the rounds settle (and the caller's entries stay).
        let mut found: BTreeMap<Address, BTreeSet<B256>> = list
            .iter()
            .map(|item| (item.address, item.storage_keys.iter().copied().collect()))
            .collect();
        for (address, account) in &executed.state {
            // Contracts the call created are only listed for their slots,
            // as geth's tracer sees them (CREATE names no address to warm).
            let address_only = excluded(address) || account.is_created();
            if account.storage.is_empty() && address_only {
                continue;
            }
            found
                .entry(*address)
                .or_default()
                .extend(account.storage.keys().map(|slot| B256::from(*slot)));
        }
        let found = AccessList(
            found
                .into_iter()
                .map(|(address, keys)| AccessListItem {
                    address,
                    storage_keys: keys.into_iter().collect(),
                })
                .collect(),
        );
        if found == list {
            let gas_used = U256::from(executed.result.tx_gas_used());
            let error = call_outcome(executed.result).err().map(|error| error.message);
            return Ok(AccessListResult { access_list: found, gas_used, error });
        }
        list = found;
    }
    Err(RpcError::new(SERVER_ERROR, "access list did not settle"))
}

/// Executes `request` with `gas_limit` on `state` (the state after the
/// block with `header`), committing nothing.
pub(super) fn execute<S: DatabaseRef>(
    config: &ChainConfig,
    header: &Header,
    state: &S,
    request: &TransactionRequest,
    gas_limit: u64,
) -> Result<ResultAndState, RpcError>
where
    S::Error: std::fmt::Display,
{
    transact(config, header, state, request, gas_limit)
        .map_err(|e| RpcError::new(SERVER_ERROR, e.to_string()))
}

/// One run of gas estimation with `gas_limit`: the call's outcome (a
/// failed call, or a transaction revm refuses at that limit, means too
/// little gas), or an error that ends the estimation (the state could not
/// be read, revm failed), which the bisection must not take for too little
/// gas.
pub(super) fn estimate_run<S: DatabaseRef>(
    config: &ChainConfig,
    header: &Header,
    state: &S,
    request: &TransactionRequest,
    gas_limit: u64,
) -> Result<Result<CallOutcome, RpcError>, RpcError>
where
    S::Error: std::fmt::Display,
{
    match transact(config, header, state, request, gas_limit) {
        Ok(executed) => Ok(call_outcome(executed.result)),
        Err(error @ EVMError::Transaction(_)) => {
            Ok(Err(RpcError::new(SERVER_ERROR, error.to_string())))
        }
        Err(error) => Err(RpcError::new(SERVER_ERROR, error.to_string())),
    }
}

fn transact<S: DatabaseRef>(
    config: &ChainConfig,
    header: &Header,
    state: &S,
    request: &TransactionRequest,
    gas_limit: u64,
) -> Result<ResultAndState, EVMError<S::Error>> {
    // Like geth, a call that names no fee runs at price zero with no base fee.
    let names_fee = request.max_fee_per_gas.is_some() || request.gas_price.is_some();
    let base_fee = if !names_fee {
        0
    } else {
        config.next_base_fee(
            header.gas_used,
            header.base_fee_per_gas.unwrap_or(config.eip1559.initial_base_fee),
        )
    };
    let block = BlockEnv {
        number: U256::from(header.number + 1),
        beneficiary: config.fee_recipient,
        timestamp: U256::from(header.timestamp),
        gas_limit: config.block_gas_limit,
        basefee: base_fee,
        difficulty: U256::ZERO,
        prevrandao: Some(alloy_primitives::B256::ZERO),
        blob_excess_gas_and_price: Some(BlobExcessGasAndPrice::new(
            0,
            BLOB_BASE_FEE_UPDATE_FRACTION_CANCUN,
        )),
        slot_num: 0,
    };
    let mut cfg = CfgEnv::new_with_spec(config.fork.spec_id()).with_chain_id(config.chain_id);
    cfg.disable_nonce_check = true;
    let caller = request.from.unwrap_or_default();
    let gas_price = request.max_fee_per_gas.or(request.gas_price).unwrap_or(0);
    let tx = TxEnv {
        // An access list needs a type that carries one: revm ignores it on
        // a legacy transaction (neither warming nor charging), geth does not.
        tx_type: if request.max_fee_per_gas.is_some() {
            2
        } else if request.access_list.as_ref().is_some_and(|list| !list.is_empty()) {
            1
        } else {
            0
        },
        caller,
        gas_limit,
        gas_price,
        kind: request.to.unwrap_or(TxKind::Create),
        value: request.value.unwrap_or_default(),
        data: request.input.input().cloned().unwrap_or_default(),
        nonce: 0,
        chain_id: Some(config.chain_id),
        access_list: request.access_list.clone().unwrap_or_default(),
        gas_priority_fee: request.max_priority_fee_per_gas,
        blob_hashes: Vec::new(),
        max_fee_per_blob_gas: 0,
        authorization_list: Vec::new(),
    };
    let mut overlay = BlockState::new(state);
    let mut evm =
        Context::mainnet().with_cfg(cfg).with_block(block).with_db(&mut overlay).build_mainnet();
    evm.transact(tx)
}

/// The gas limit a simulated call runs with: the request's, at most the
/// block's.
pub(super) fn gas_cap(config: &ChainConfig, request: &TransactionRequest) -> u64 {
    request.gas.unwrap_or(config.block_gas_limit).min(config.block_gas_limit)
}

/// Smallest gas limit with which a call succeeds (binary search, as geth
/// does), up to `cap`. `run(gas)` runs the call with that limit: an inner
/// error is a failed call (too little gas, or the first run's answer), an
/// outer one (a deadline, unreadable state) ends the search with it.
pub(super) fn estimate_gas(
    cap: u64,
    mut run: impl FnMut(u64) -> Result<Result<CallOutcome, RpcError>, RpcError>,
) -> Result<u64, RpcError> {
    let first = run(cap)??;
    let mut low = first.gas_used.saturating_sub(1).max(20_999);
    let mut high = cap;
    // Most calls succeed with exactly the gas they used; try that first.
    if run(first.gas_used)?.is_ok() {
        return Ok(first.gas_used);
    }
    while low + 1 < high {
        let mid = low + (high - low) / 2;
        if run(mid)?.is_ok() {
            high = mid;
        } else {
            low = mid;
        }
    }
    Ok(high)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A call that succeeds with at least `needs` gas and then uses it all.
    fn call(needs: u64, gas: u64) -> Result<CallOutcome, RpcError> {
        if gas >= needs {
            Ok(CallOutcome { gas_used: needs, output: Bytes::new() })
        } else {
            Err(RpcError::new(SERVER_ERROR, "out of gas"))
        }
    }

    #[test]
    fn estimation_finds_the_least_gas_and_stops_on_an_outer_error() {
        // Uses 50,000 but needs 70,000 (as a call whose refund or 63/64
        // rule asks for more than it uses would).
        let needs_more = |gas: u64| {
            Ok(call(70_000, gas).map(|outcome| CallOutcome { gas_used: 50_000, ..outcome }))
        };
        assert_eq!(estimate_gas(1_000_000, needs_more).unwrap(), 70_000);
        // The first run's failure is the answer.
        let fails = estimate_gas(60_000, |gas| Ok(call(70_000, gas))).unwrap_err();
        assert_eq!(fails.message, "out of gas");
        // An outer error in the bisection (a deadline, unreadable state)
        // ends it with that error, not with a bound.
        let mut runs = 0;
        let aborted = estimate_gas(1_000_000, |gas| {
            runs += 1;
            if runs == 4 {
                return Err(RpcError::new(SERVER_ERROR, "execution aborted (timeout = 5s)"));
            }
            needs_more(gas)
        })
        .unwrap_err();
        assert_eq!(aborted.message, "execution aborted (timeout = 5s)");
        assert_eq!(runs, 4);
    }
}
