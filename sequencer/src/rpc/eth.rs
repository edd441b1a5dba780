//! The Ethereum JSON-RPC methods.

use super::{
    Params, RpcContext, convert,
    error::{LIMIT_EXCEEDED, METHOD_NOT_FOUND, RpcError, SERVER_ERROR},
    evm_call::{self, CallOutcome},
    simulation::{Deadline, PinnedState},
};
use crate::{admission, chain_view::Head, pool::Admitted};
use alloy::rpc::types::{FeeHistory, Filter, FilterBlockOption, Log, TransactionRequest};
use alloy_eips::{BlockId, BlockNumberOrTag};
use alloy_primitives::{Address, B256, Bytes, U64, U256};
use revm::DatabaseRef;
use revm::context::result::ResultAndState;
use rollup_executor::{ChainConfig, history::HistoricalState};
use rollup_store::{StoredBlock, StoredTransaction, mempool::MempoolStatus};
use serde_json::{Value, json};
use std::sync::Arc;

/// Most storage keys one `eth_getProof` call may ask for.
pub(super) const MAX_PROOF_SLOTS: usize = 1_024;

/// Most account and slot changes a past block's `eth_getProof` may undo:
/// each is copied and rehashed under the view's read lock (100,000 account
/// changes over a 200,000-account state took 0.7-1.1 s on this machine).
pub(super) const MAX_PROOF_CHANGES_UNDONE: usize = 20_000;

/// Methods this node serves (also the metric labels).
pub const METHODS: &[&str] = &[
    "eth_chainId",
    "net_version",
    "web3_clientVersion",
    "eth_blockNumber",
    "eth_getBlockByNumber",
    "eth_getBlockByHash",
    "eth_getTransactionByHash",
    "eth_getTransactionReceipt",
    "eth_getBlockReceipts",
    "eth_getBlockTransactionCountByNumber",
    "eth_getBlockTransactionCountByHash",
    "eth_getTransactionByBlockNumberAndIndex",
    "eth_getTransactionByBlockHashAndIndex",
    "eth_getRawTransactionByHash",
    "eth_getRawTransactionByBlockNumberAndIndex",
    "eth_getRawTransactionByBlockHashAndIndex",
    "eth_getUncleCountByBlockNumber",
    "eth_getUncleCountByBlockHash",
    "eth_getUncleByBlockNumberAndIndex",
    "eth_getUncleByBlockHashAndIndex",
    "net_listening",
    "net_peerCount",
    "web3_sha3",
    "eth_getBalance",
    "eth_getTransactionCount",
    "eth_getCode",
    "eth_getStorageAt",
    "eth_gasPrice",
    "eth_blobBaseFee",
    "eth_maxPriorityFeePerGas",
    "eth_feeHistory",
    "eth_estimateGas",
    "eth_call",
    "eth_createAccessList",
    "eth_sendRawTransaction",
    "eth_syncing",
    "eth_accounts",
    "eth_sendRawTransactionSync",
    "eth_getLogs",
    "eth_newFilter",
    "eth_newBlockFilter",
    "eth_newPendingTransactionFilter",
    "eth_getFilterChanges",
    "eth_getFilterLogs",
    "eth_uninstallFilter",
    "eth_getProof",
    "rollup_getTransactionStatus",
    "rollup_getStateDiff",
    "admin_pauseSequencing",
    "admin_resumeSequencing",
    "admin_dropTransaction",
    "admin_setRateLimit",
];

/// Most blocks one `eth_getLogs` call may span.
pub(super) const MAX_LOG_RANGE: u64 = 10_000;
/// Most addresses one log filter may name (geth's limit).
pub(super) const MAX_FILTER_ADDRESSES: usize = 1_000;
/// Most values one topic position of a log filter may hold (geth's limit).
pub(super) const MAX_FILTER_TOPIC_VALUES: usize = 1_000;
/// Most logs one `eth_getLogs` call returns.
pub(super) const MAX_LOGS: usize = 10_000;
/// `eth_sendRawTransactionSync`: default and longest wait for the receipt.
const SYNC_DEFAULT_TIMEOUT_MS: u64 = 2_000;
const SYNC_MAX_TIMEOUT_MS: u64 = 10_000;

/// Most blocks `eth_feeHistory` covers in one call.
const MAX_FEE_HISTORY_BLOCKS: u64 = 1_024;

/// The metric label of a method name: itself if served, else "unknown".
pub(super) fn metric_label(method: &str) -> &'static str {
    METHODS.iter().find(|m| **m == method).copied().unwrap_or("unknown")
}

/// Runs one method for `client` (its address; `None`: not over HTTP).
pub(super) async fn dispatch(
    ctx: &RpcContext,
    method: &str,
    params: Params,
    client: Option<std::net::IpAddr>,
) -> Result<Value, RpcError> {
    match method {
        "eth_chainId" => {
            params.at_most(0)?;
            Ok(json!(U64::from(ctx.config.chain_id)))
        }
        "net_version" => {
            params.at_most(0)?;
            Ok(json!(ctx.config.chain_id.to_string()))
        }
        "web3_clientVersion" => {
            params.at_most(0)?;
            Ok(json!(concat!("rollup-node/v", env!("CARGO_PKG_VERSION"))))
        }
        "web3_sha3" => {
            params.at_most(1)?;
            let data: Bytes = params.required(0, "data")?;
            Ok(json!(alloy_primitives::keccak256(&data)))
        }
        // A sequencer has no peers: it is the chain's only source of blocks.
        "net_listening" => {
            params.at_most(0)?;
            Ok(json!(true))
        }
        "net_peerCount" => {
            params.at_most(0)?;
            Ok(json!(U64::ZERO))
        }
        "eth_syncing" => {
            params.at_most(0)?;
            Ok(json!(false))
        }
        "eth_accounts" => {
            params.at_most(0)?;
            Ok(json!([]))
        }
        "eth_blobBaseFee" => {
            // No blob transactions are admitted and no blob gas is used, so
            // the excess blob gas stays zero: the base fee is its floor.
            params.at_most(0)?;
            Ok(json!(U256::from(revm::primitives::eip4844::MIN_BLOB_GASPRICE)))
        }
        "eth_blockNumber" => {
            params.at_most(0)?;
            Ok(json!(U64::from(ctx.view.number())))
        }
        "eth_getBlockByNumber" => {
            params.at_most(2)?;
            let tag: BlockNumberOrTag = params.required(0, "block")?;
            let full: bool = params.optional(1, "full")?.unwrap_or(false);
            let Some(number) = resolve_number(ctx, tag) else { return Ok(Value::Null) };
            block_json(ctx, ctx.store.block_by_number(number).await?, full).await
        }
        "eth_getBlockByHash" => {
            params.at_most(2)?;
            let hash: B256 = params.required(0, "hash")?;
            let full: bool = params.optional(1, "full")?.unwrap_or(false);
            block_json(ctx, ctx.store.block_by_hash(hash).await?, full).await
        }
        "eth_getTransactionByHash" => {
            params.at_most(1)?;
            let hash: B256 = params.required(0, "hash")?;
            match transaction_by_hash(ctx, hash).await? {
                Some(Known::Included(stored)) => Ok(json!(convert::transaction(&stored)?)),
                Some(Known::Pending(raw, sender)) => {
                    Ok(json!(convert::pending_transaction(&raw, sender)?))
                }
                None => Ok(Value::Null),
            }
        }
        "eth_getTransactionReceipt" => {
            params.at_most(1)?;
            let hash: B256 = params.required(0, "hash")?;
            let Some(stored) = ctx.store.transaction(hash).await? else { return Ok(Value::Null) };
            let timestamp =
                ctx.store.block_by_number(stored.block_number).await?.map(|b| b.header.timestamp);
            Ok(json!(convert::receipt(&stored, timestamp)?))
        }
        "eth_getBlockReceipts" => {
            params.at_most(1)?;
            let id: BlockId = params.required(0, "block")?;
            let Some((block, txs)) = block_with_transactions(ctx, id).await? else {
                return Ok(Value::Null);
            };
            let timestamp = Some(block.header.timestamp);
            let receipts: Result<Vec<_>, _> =
                txs.iter().map(|tx| convert::receipt(tx, timestamp)).collect();
            Ok(json!(receipts?))
        }
        "eth_getBlockTransactionCountByNumber" | "eth_getBlockTransactionCountByHash" => {
            params.at_most(1)?;
            let id = block_param(method, &params)?;
            let Some(block) = block_by_id(ctx, id).await? else { return Ok(Value::Null) };
            Ok(json!(U64::from(block.transactions.len())))
        }
        "eth_getTransactionByBlockNumberAndIndex"
        | "eth_getTransactionByBlockHashAndIndex"
        | "eth_getRawTransactionByBlockNumberAndIndex"
        | "eth_getRawTransactionByBlockHashAndIndex" => {
            params.at_most(2)?;
            let id = block_param(method, &params)?;
            let index: U64 = params.required(1, "index")?;
            let Some((_, txs)) = block_with_transactions(ctx, id).await? else {
                return Ok(Value::Null);
            };
            match usize::try_from(index).ok().and_then(|i| txs.get(i)) {
                Some(tx) if method.starts_with("eth_getRaw") => Ok(json!(tx.raw)),
                Some(tx) => Ok(json!(convert::transaction(tx)?)),
                None => Ok(Value::Null),
            }
        }
        "eth_getRawTransactionByHash" => {
            params.at_most(1)?;
            let hash: B256 = params.required(0, "hash")?;
            match transaction_by_hash(ctx, hash).await? {
                Some(Known::Included(stored)) => Ok(json!(stored.raw)),
                Some(Known::Pending(raw, _)) => Ok(json!(raw)),
                None => Ok(Value::Null),
            }
        }
        // Blocks of a rollup have no uncles (ommers): none in a block that
        // exists, null for one that does not, as geth answers.
        "eth_getUncleCountByBlockNumber" | "eth_getUncleCountByBlockHash" => {
            params.at_most(1)?;
            let id = block_param(method, &params)?;
            let exists = block_by_id(ctx, id).await?.is_some();
            Ok(if exists { json!(U64::ZERO) } else { Value::Null })
        }
        "eth_getUncleByBlockNumberAndIndex" | "eth_getUncleByBlockHashAndIndex" => {
            params.at_most(2)?;
            block_param(method, &params)?;
            let _: U64 = params.required(1, "index")?;
            Ok(Value::Null)
        }
        "eth_getBalance" => {
            params.at_most(2)?;
            let address: Address = params.required(0, "address")?;
            let at = block_of_state(ctx, &params, 1).await?;
            let head = ctx.view.read();
            let balance = state_at(&head, at)?.account(&address).map_or(U256::ZERO, |a| a.balance);
            Ok(json!(balance))
        }
        "eth_getTransactionCount" => {
            params.at_most(2)?;
            let address: Address = params.required(0, "address")?;
            let at = block_of_state(ctx, &params, 1).await?;
            if at == StateAt::Pending {
                // Included transactions have left the mempool: count from the
                // database head's nonce, so a replica between polls answers
                // what the producer's process would.
                crate::chain_view::catch_up(&ctx.view, &ctx.store).await?;
            }
            let mut nonce = {
                let head = ctx.view.read();
                state_at(&head, at)?.account(&address).map_or(0, |a| a.nonce)
            };
            if at == StateAt::Pending {
                nonce = ctx.store.pending_nonce(address, nonce).await?;
            }
            Ok(json!(U64::from(nonce)))
        }
        "eth_getCode" => {
            params.at_most(2)?;
            let address: Address = params.required(0, "address")?;
            let at = block_of_state(ctx, &params, 1).await?;
            let head = ctx.view.read();
            let state = state_at(&head, at)?;
            let code = match state.account(&address) {
                Some(account) => state
                    .code_by_hash_ref(account.code_hash)
                    .map(|c| c.original_bytes())
                    .unwrap_or_default(),
                None => Bytes::new(),
            };
            Ok(json!(code))
        }
        "eth_getStorageAt" => {
            params.at_most(3)?;
            let address: Address = params.required(0, "address")?;
            let slot: U256 = params.required(1, "slot")?;
            let at = block_of_state(ctx, &params, 2).await?;
            let head = ctx.view.read();
            let value = state_at(&head, at)?
                .storage(address, slot)
                .map_err(|e| RpcError::new(SERVER_ERROR, e.to_string()))?;
            Ok(json!(B256::from(value)))
        }
        "eth_gasPrice" => {
            params.at_most(0)?;
            Ok(json!(U256::from(next_base_fee(ctx) as u128 + ctx.suggested_priority_fee)))
        }
        "eth_maxPriorityFeePerGas" => {
            params.at_most(0)?;
            Ok(json!(U256::from(ctx.suggested_priority_fee)))
        }
        "eth_feeHistory" => fee_history(ctx, &params).await,
        "eth_estimateGas" => {
            params.at_most(3)?;
            let estimate = simulated(ctx, &params, 1, |runs, request| {
                evm_call::estimate_gas(runs.gas_cap(request), |gas| runs.estimate(request, gas))
            })
            .await?;
            Ok(json!(U64::from(estimate)))
        }
        "eth_call" => {
            params.at_most(3)?;
            let outcome = simulated(ctx, &params, 1, |runs, request| {
                runs.call(request, runs.gas_cap(request))
            })
            .await?;
            Ok(json!(outcome.output))
        }
        "eth_createAccessList" => {
            params.at_most(2)?;
            let result = simulated(ctx, &params, 1, |runs, request| {
                evm_call::create_access_list(runs.config, request, |request, gas| {
                    runs.execute(request, gas)
                })
            })
            .await?;
            Ok(json!(result))
        }
        "eth_sendRawTransaction" => {
            params.at_most(1)?;
            let raw: Bytes = params.required(0, "data")?;
            let hash = submit(ctx, &raw).await?;
            Ok(json!(hash))
        }
        "eth_sendRawTransactionSync" => {
            params.at_most(2)?;
            let raw: Bytes = params.required(0, "data")?;
            let timeout: Option<U64> = params.optional(1, "timeout")?;
            let timeout = timeout
                .map_or(SYNC_DEFAULT_TIMEOUT_MS, |t| t.saturating_to::<u64>())
                .min(SYNC_MAX_TIMEOUT_MS);
            let mut heads = ctx.view.subscribe();
            let hash = submit(ctx, &raw).await?;
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(timeout);
            loop {
                if let Some(stored) = ctx.store.transaction(hash).await? {
                    let timestamp = ctx
                        .store
                        .block_by_number(stored.block_number)
                        .await?
                        .map(|b| b.header.timestamp);
                    return Ok(json!(convert::receipt(&stored, timestamp)?));
                }
                if tokio::time::timeout_at(deadline, heads.changed()).await.is_err() {
                    return Err(RpcError {
                        code: 4,
                        message: format!(
                            "the transaction was added to the mempool but wasn't processed in {timeout}ms"
                        ),
                        data: Some(json!(hash)),
                    });
                }
            }
        }
        "eth_getLogs" => {
            params.at_most(1)?;
            let filter: Filter = params.required(0, "filter")?;
            check_log_filter(&filter)?;
            get_logs(ctx, &filter).await
        }
        "eth_newFilter"
        | "eth_newBlockFilter"
        | "eth_newPendingTransactionFilter"
        | "eth_getFilterChanges"
        | "eth_getFilterLogs"
        | "eth_uninstallFilter" => super::filters::dispatch(ctx, method, params, client).await,
        "eth_getProof" => {
            params.at_most(3)?;
            let address: Address = params.required(0, "address")?;
            let slots: Vec<alloy::serde::storage::JsonStorageKey> =
                params.required(1, "storageKeys")?;
            if slots.len() > MAX_PROOF_SLOTS {
                return Err(RpcError::new(
                    LIMIT_EXCEEDED,
                    format!("at most {MAX_PROOF_SLOTS} storage keys per proof"),
                ));
            }
            let number = match block_of_state(ctx, &params, 2).await? {
                StateAt::Head | StateAt::Pending => ctx.view.read().number(),
                StateAt::Past(number) => number,
            };
            // A past block's proof copies and rehashes every change since,
            // under the view's read lock (which the producer's next advance
            // waits for): bounded.
            let undone = ctx.view.read().state_at(number).map_or(0, |state| state.changes_undone());
            if undone > MAX_PROOF_CHANGES_UNDONE {
                return Err(RpcError::new(
                    LIMIT_EXCEEDED,
                    format!(
                        "a proof at block {number} undoes {undone} account and slot changes, more than \
                         {MAX_PROOF_CHANGES_UNDONE}; ask for a more recent block"
                    ),
                ));
            }
            let slots: Vec<U256> = slots.iter().map(|k| k.as_b256().into()).collect();
            let view = ctx.view.clone();
            let proof = tokio::task::spawn_blocking(move || view.proof(number, address, &slots))
                .await
                .map_err(|e| RpcError::new(SERVER_ERROR, format!("proof task failed: {e}")))?;
            let proof = match proof {
                Some(Ok(proof)) => proof,
                Some(Err(error)) => return Err(RpcError::new(SERVER_ERROR, error.to_string())),
                None => {
                    let unavailable = ctx.view.read().state_unavailable(number);
                    return Err(RpcError::new(SERVER_ERROR, unavailable));
                }
            };
            Ok(json!(convert::account_proof(address, proof)))
        }
        "rollup_getStateDiff" => {
            params.at_most(1)?;
            let number: U64 = params.required(0, "blockNumber")?;
            Ok(json!(ctx.store.state_diff(number.to()).await?))
        }
        "rollup_getTransactionStatus" => {
            params.at_most(1)?;
            let hash: B256 = params.required(0, "hash")?;
            transaction_status(ctx, hash).await
        }
        _ => Err(RpcError::new(
            METHOD_NOT_FOUND,
            format!("the method {method} does not exist/is not available"),
        )),
    }
}

/// The block number a tag means, if that block exists.
fn resolve_number(ctx: &RpcContext, tag: BlockNumberOrTag) -> Option<u64> {
    let head = ctx.view.number();
    match tag {
        BlockNumberOrTag::Number(n) if n <= head => Some(n),
        BlockNumberOrTag::Number(_) => None,
        BlockNumberOrTag::Earliest => Some(0),
        _ => Some(head),
    }
}

/// Which state a read method's block parameter names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StateAt {
    /// The head (`latest`, `safe`, `finalized`, or its number or hash).
    Head,
    /// The head plus the pool (`pending`): the head state, pending nonces.
    Pending,
    /// The state after an earlier block.
    Past(u64),
}

/// Resolves the optional block parameter at `index` of a state read.
async fn block_of_state(
    ctx: &RpcContext,
    params: &Params,
    index: usize,
) -> Result<StateAt, RpcError> {
    let id: Option<BlockId> = params.optional(index, "block")?;
    let (head_number, head_hash) = {
        let head = ctx.view.read();
        (head.number(), head.hash)
    };
    let number = match id {
        None
        | Some(BlockId::Number(
            BlockNumberOrTag::Latest | BlockNumberOrTag::Safe | BlockNumberOrTag::Finalized,
        )) => return Ok(StateAt::Head),
        Some(BlockId::Number(BlockNumberOrTag::Pending)) => return Ok(StateAt::Pending),
        Some(BlockId::Number(BlockNumberOrTag::Earliest)) => 0,
        Some(BlockId::Number(BlockNumberOrTag::Number(n))) => n,
        Some(BlockId::Hash(hash)) if hash.block_hash == head_hash => return Ok(StateAt::Head),
        Some(BlockId::Hash(hash)) => match ctx.store.block_by_hash(hash.block_hash).await? {
            Some(block) => block.header.number,
            None => {
                return Err(RpcError::new(
                    SERVER_ERROR,
                    format!("block {} not found", hash.block_hash),
                ));
            }
        },
    };
    match number.cmp(&head_number) {
        std::cmp::Ordering::Equal => Ok(StateAt::Head),
        std::cmp::Ordering::Less => Ok(StateAt::Past(number)),
        std::cmp::Ordering::Greater => Err(RpcError::new(
            SERVER_ERROR,
            format!("block {number} not found; the head is block {head_number}"),
        )),
    }
}

/// The state a read answers from. The head may have moved since
/// [`block_of_state`]; past states are looked up by number, so that is fine.
fn state_at(head: &Head, at: StateAt) -> Result<HistoricalState<'_>, RpcError> {
    let number = match at {
        StateAt::Head | StateAt::Pending => head.number(),
        StateAt::Past(number) => number,
    };
    head.state_at(number).ok_or_else(|| RpcError::new(SERVER_ERROR, head.state_unavailable(number)))
}

/// Serves a simulated call: its transaction is parameter 0, its block
/// parameter `block`; `work` runs on the blocking pool through
/// [`super::simulation::Simulations`], with that block's [`Runs`].
async fn simulated<T: Send + 'static>(
    ctx: &RpcContext,
    params: &Params,
    block: usize,
    work: impl FnOnce(&Runs<'_>, &TransactionRequest) -> Result<T, RpcError> + Send + 'static,
) -> Result<T, RpcError> {
    let request: TransactionRequest = params.required(0, "transaction")?;
    let pinned = Pinned::new(ctx, block_of_state(ctx, params, block).await?).await?;
    let config = ctx.config.clone();
    ctx.simulations
        .run(move |deadline| {
            let runs =
                Runs { config: &config, header: &pinned.header, state: &pinned.state, deadline };
            work(&runs, &request)
        })
        .await
}

/// A block a simulated call runs after: its header, and its state read
/// through the view one value at a time (see [`super::simulation`]).
struct Pinned {
    header: alloy_consensus::Header,
    state: PinnedState,
}

impl Pinned {
    /// The block `at` names (the head: the head now).
    async fn new(ctx: &RpcContext, at: StateAt) -> Result<Self, RpcError> {
        let header = match header_of(ctx, at).await? {
            Some(header) => header,
            None => ctx.view.read().header.clone(),
        };
        let state = PinnedState::new(ctx.view.clone(), header.number);
        // Refused up front if it is already outside the history window.
        state_at(&ctx.view.read(), StateAt::Past(header.number))?;
        Ok(Self { header, state })
    }
}

/// The EVM runs of one simulated-call request, on its pinned block: each
/// checks the request's deadline first.
struct Runs<'a> {
    config: &'a ChainConfig,
    header: &'a alloy_consensus::Header,
    state: &'a PinnedState,
    deadline: &'a Deadline,
}

impl Runs<'_> {
    /// The gas a call runs with: the request's, at most the block's.
    fn gas_cap(&self, request: &TransactionRequest) -> u64 {
        evm_call::gas_cap(self.config, request)
    }

    /// `eth_call`'s run: the output, or the call's error.
    fn call(&self, request: &TransactionRequest, gas: u64) -> Result<CallOutcome, RpcError> {
        self.deadline.check()?;
        evm_call::simulate(self.config, self.header, self.state, request, gas)
    }

    /// One run of gas estimation (see [`evm_call::estimate_run`]).
    fn estimate(
        &self,
        request: &TransactionRequest,
        gas: u64,
    ) -> Result<Result<CallOutcome, RpcError>, RpcError> {
        self.deadline.check()?;
        evm_call::estimate_run(self.config, self.header, self.state, request, gas)
    }

    /// A run whose state changes are read (access lists).
    fn execute(&self, request: &TransactionRequest, gas: u64) -> Result<ResultAndState, RpcError> {
        self.deadline.check()?;
        evm_call::execute(self.config, self.header, self.state, request, gas)
    }
}

/// The header of a past block a call executes after (`None`: the head's).
async fn header_of(
    ctx: &RpcContext,
    at: StateAt,
) -> Result<Option<alloy_consensus::Header>, RpcError> {
    let StateAt::Past(number) = at else { return Ok(None) };
    match ctx.store.block_by_number(number).await? {
        Some(block) => Ok(Some(block.header)),
        None => Err(RpcError::new(SERVER_ERROR, format!("block {number} not found"))),
    }
}

fn next_base_fee(ctx: &RpcContext) -> u64 {
    let head = ctx.view.read();
    ctx.config.next_base_fee(
        head.header.gas_used,
        head.header.base_fee_per_gas.unwrap_or(ctx.config.eip1559.initial_base_fee),
    )
}

/// The block parameter of a `...ByBlockNumber...` or `...ByBlockHash...`
/// method: a number or tag, or a hash, as the method's name says.
fn block_param(method: &str, params: &Params) -> Result<BlockId, RpcError> {
    if method.contains("ByBlockHash") || method.ends_with("ByHash") {
        Ok(BlockId::from(params.required::<B256>(0, "hash")?))
    } else {
        Ok(BlockId::from(params.required::<BlockNumberOrTag>(0, "block")?))
    }
}

/// The stored block `id` names (`None`: none such, or beyond the head).
async fn block_by_id(ctx: &RpcContext, id: BlockId) -> Result<Option<StoredBlock>, RpcError> {
    Ok(match id {
        BlockId::Hash(hash) => ctx.store.block_by_hash(hash.block_hash).await?,
        BlockId::Number(tag) => match resolve_number(ctx, tag) {
            Some(number) => ctx.store.block_by_number(number).await?,
            None => None,
        },
    })
}

/// The stored block `id` names with its transactions (`None`: no such
/// block).
async fn block_with_transactions(
    ctx: &RpcContext,
    id: BlockId,
) -> Result<Option<(StoredBlock, Arc<[StoredTransaction]>)>, RpcError> {
    let Some(block) = block_by_id(ctx, id).await? else { return Ok(None) };
    let txs = ctx.store.block_transactions(block.header.number).await?;
    Ok(Some((block, txs)))
}

/// A transaction the node knows by hash.
enum Known {
    /// In a block, with its receipt.
    Included(Box<StoredTransaction>),
    /// Pending in the mempool: its bytes and sender.
    Pending(Bytes, Address),
}

/// The transaction with `hash`: included, or else pending (a dropped one
/// is not known).
async fn transaction_by_hash(ctx: &RpcContext, hash: B256) -> Result<Option<Known>, RpcError> {
    if let Some(stored) = ctx.store.transaction(hash).await? {
        return Ok(Some(Known::Included(Box::new(stored))));
    }
    Ok(match ctx.store.mempool_transaction(hash).await? {
        Some((raw, sender, MempoolStatus::Pending)) => Some(Known::Pending(raw, sender)),
        _ => None,
    })
}

async fn block_json(
    ctx: &RpcContext,
    block: Option<StoredBlock>,
    full: bool,
) -> Result<Value, RpcError> {
    let Some(block) = block else { return Ok(Value::Null) };
    let txs =
        if full { Some(ctx.store.block_transactions(block.header.number).await?) } else { None };
    Ok(json!(convert::block(block, txs.as_deref())?))
}

async fn fee_history(ctx: &RpcContext, params: &Params) -> Result<Value, RpcError> {
    params.at_most(3)?;
    let count: U64 = params.required(0, "blockCount")?;
    let newest: BlockNumberOrTag = params.required(1, "newestBlock")?;
    let percentiles: Vec<f64> = params.optional(2, "rewardPercentiles")?.unwrap_or_default();
    if percentiles.len() > 100
        || percentiles.iter().any(|p| !(0.0..=100.0).contains(p))
        || percentiles.windows(2).any(|w| w[0] > w[1])
    {
        return Err(RpcError::invalid_params("invalid reward percentiles"));
    }
    let count = count.to::<u64>().min(MAX_FEE_HISTORY_BLOCKS);
    let newest = resolve_number(ctx, newest)
        .ok_or_else(|| RpcError::invalid_params("request beyond head block"))?;
    if count == 0 {
        return Ok(json!(FeeHistory::default()));
    }
    let oldest = newest.saturating_sub(count - 1);
    let headers = ctx.store.headers(oldest, newest).await?;
    let mut base_fees: Vec<u128> = Vec::with_capacity(headers.len() + 1);
    let mut ratios = Vec::with_capacity(headers.len());
    let mut rewards = Vec::with_capacity(headers.len());
    for header in &headers {
        let base_fee = header.base_fee_per_gas.unwrap_or_default();
        base_fees.push(base_fee.into());
        ratios.push(header.gas_used as f64 / header.gas_limit as f64);
        if !percentiles.is_empty() {
            let txs = ctx.store.block_transactions(header.number).await?;
            rewards.push(rewards_at(&txs, base_fee, header.gas_used, &percentiles));
        }
    }
    if let Some(last) = headers.last() {
        base_fees.push(
            ctx.config
                .next_base_fee(last.gas_used, last.base_fee_per_gas.unwrap_or_default())
                .into(),
        );
    }
    let history = FeeHistory {
        base_fee_per_gas: base_fees,
        gas_used_ratio: ratios,
        base_fee_per_blob_gas: Vec::new(),
        blob_gas_used_ratio: Vec::new(),
        oldest_block: oldest,
        reward: if percentiles.is_empty() { None } else { Some(rewards) },
    };
    Ok(json!(history))
}

/// Tips at the given gas-weighted percentiles of one block, as geth computes them.
fn rewards_at(
    txs: &[rollup_store::StoredTransaction],
    base_fee: u64,
    gas_used: u64,
    percentiles: &[f64],
) -> Vec<u128> {
    if txs.is_empty() {
        return vec![0; percentiles.len()];
    }
    let mut tips: Vec<(u128, u64)> = txs
        .iter()
        .map(|t| (t.effective_gas_price.saturating_sub(u128::from(base_fee)), t.gas_used))
        .collect();
    tips.sort_unstable();
    let mut out = Vec::with_capacity(percentiles.len());
    let (mut index, mut cumulative) = (0, tips[0].1);
    for p in percentiles {
        let threshold = (gas_used as f64 * p / 100.0) as u64;
        while cumulative < threshold && index + 1 < tips.len() {
            index += 1;
            cumulative += tips[index].1;
        }
        out.push(tips[index].0);
    }
    out
}

/// `eth_getLogs` over a bounded block range, skipping blocks by their bloom.
/// Checks a log filter's criteria against the limits (each address and
/// topic value also costs a 256-byte bloom once matched): geth's messages.
pub(super) fn check_log_filter(filter: &Filter) -> Result<(), RpcError> {
    if filter.address.len() > MAX_FILTER_ADDRESSES {
        return Err(RpcError::invalid_params("exceed max addresses"));
    }
    if filter.topics.iter().any(|values| values.len() > MAX_FILTER_TOPIC_VALUES) {
        return Err(RpcError::invalid_params("exceed max topics"));
    }
    Ok(())
}

/// A log filter's size: its addresses and topic values.
pub(super) fn criteria_of(filter: &Filter) -> usize {
    filter.address.len() + filter.topics.iter().map(|values| values.len()).sum::<usize>()
}

pub(super) async fn get_logs(ctx: &RpcContext, filter: &Filter) -> Result<Value, RpcError> {
    let (from, to) = match filter.block_option {
        FilterBlockOption::AtBlockHash(hash) => {
            let Some(block) = ctx.store.block_by_hash(hash).await? else {
                return Err(RpcError::new(SERVER_ERROR, "unknown block"));
            };
            (block.header.number, block.header.number)
        }
        FilterBlockOption::Range { from_block, to_block } => {
            let head = ctx.view.number();
            let resolve = |tag: Option<BlockNumberOrTag>| match tag {
                None => head,
                Some(BlockNumberOrTag::Number(n)) => n,
                Some(BlockNumberOrTag::Earliest) => 0,
                Some(_) => head,
            };
            (resolve(from_block), resolve(to_block).min(head))
        }
    };
    if from > to {
        return Ok(json!([]));
    }
    if to - from >= MAX_LOG_RANGE {
        return Err(RpcError::new(
            super::error::LIMIT_EXCEEDED,
            format!("block range too large: at most {MAX_LOG_RANGE} blocks per query"),
        ));
    }
    let (logs, _) = logs_between(ctx, filter, from, to, MAX_LOGS + 1).await?;
    if logs.len() > MAX_LOGS {
        return Err(RpcError::new(
            super::error::LIMIT_EXCEEDED,
            format!("query returned more than {MAX_LOGS} results"),
        ));
    }
    Ok(json!(logs))
}

/// The logs of blocks `from..=to` that match `filter`, block after block,
/// stopping after the block that brings them to `enough` (a block's logs
/// are never split); with the last block read.
pub(super) async fn logs_between(
    ctx: &RpcContext,
    filter: &Filter,
    from: u64,
    to: u64,
    enough: usize,
) -> Result<(Vec<Log>, u64), RpcError> {
    let mut logs: Vec<Log> = Vec::new();
    for header in ctx.store.headers(from, to).await? {
        if filter.matches_bloom(header.logs_bloom) {
            for stored in ctx.store.block_transactions(header.number).await?.iter() {
                let receipt = convert::receipt(stored, Some(header.timestamp))?;
                let matching = receipt.inner.logs().iter().filter(|log| filter.matches(&log.inner));
                logs.extend(matching.cloned());
            }
        }
        if logs.len() >= enough {
            return Ok((logs, header.number));
        }
    }
    Ok((logs, to))
}

/// `rollup_getTransactionStatus`: where a transaction is in its life.
pub(super) async fn transaction_status(ctx: &RpcContext, hash: B256) -> Result<Value, RpcError> {
    let Some(status) = ctx.store.transaction_lifecycle(hash).await? else { return Ok(Value::Null) };
    Ok(json!({
        "hash": hash,
        "status": status.stage,
        "blockNumber": status.block_number.map(U64::from),
        "batchIndex": status.batch_index.map(U64::from),
        "l1TransactionHash": status.l1_tx_hash,
        "l1BlockNumber": status.l1_block.map(U64::from),
        "reason": status.drop_reason,
    }))
}

/// Admits a raw transaction and stores it durably (group commit); returns
/// its hash once committed. Identical bytes resubmitted return the same hash,
/// before and after inclusion.
pub(super) async fn submit(ctx: &RpcContext, raw: &[u8]) -> Result<B256, RpcError> {
    let (tx, admitted) = match admission::admit(&ctx.config, &ctx.view, raw) {
        Ok(admitted) => admitted,
        // The same bytes again after inclusion: answer with the hash, as for a
        // pooled duplicate, so a client retrying after a lost answer is not
        // told its transaction failed.
        Err(admission::AdmissionError::NonceTooLow) => {
            let hash = alloy_primitives::keccak256(raw);
            return match ctx.store.transaction(hash).await? {
                Some(_) => Ok(hash),
                None => Err(admission::AdmissionError::NonceTooLow.into()),
            };
        }
        Err(other) => return Err(other.into()),
    };
    let (hash, sender, nonce) = (tx.hash, tx.sender, tx.nonce);
    // Duplicates are stored again (a no-op) so the answer never precedes the
    // first copy's commit.
    if let Err(error) = ctx.intake.submit(vec![tx]).await {
        if admitted != Admitted::Duplicate {
            ctx.view.pool().forget(sender, nonce, hash);
        }
        return Err(error.into());
    }
    if admitted != Admitted::Duplicate {
        ctx.metrics.transactions_accepted.inc();
    }
    Ok(hash)
}
