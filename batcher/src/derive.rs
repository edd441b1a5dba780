//! Derivation: rebuild the L2 chain from L1 data alone.
//!
//! [`read_batches`] finds every `BatchAppended` event of the settlement
//! contract, reads the batch bytes from the appending transaction's calldata,
//! checks them against the commitment and decodes them. [`replay`] re-executes
//! the decoded blocks from genesis with the same executor the sequencer uses
//! and returns each block's hash and state root, to compare with the
//! proposals ([`read_proposals`]).

use crate::{
    L1Error,
    codec::{BatchBlock, decode_batch},
    settlement::Settlement::{self, appendBatchCall},
};
use alloy::{
    consensus::{TxEnvelope, transaction::SignerRecoverable},
    eips::Decodable2718,
    primitives::{Address, B256, keccak256},
    providers::{DynProvider, Provider},
    sol_types::SolCall,
};
use rollup_executor::{
    ChainConfig, Engine, InvalidTxPolicy, ParentBlock, RecoveredTx, execute_block,
    genesis::ChainGenesis,
};

/// A batch read back from L1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DerivedBatch {
    /// Batch index.
    pub index: u64,
    /// First L2 block.
    pub first_block: u64,
    /// Last L2 block.
    pub last_block: u64,
    /// The decoded blocks.
    pub blocks: Vec<BatchBlock>,
    /// The L1 transaction that carried it.
    pub l1_tx_hash: B256,
}

/// A state-root proposal read from L1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L1Proposal {
    /// L2 block number.
    pub l2_block: u64,
    /// Proposed block hash.
    pub block_hash: B256,
    /// Proposed state root.
    pub state_root: B256,
}

/// One replayed block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayedBlock {
    /// Block number.
    pub number: u64,
    /// Block hash.
    pub hash: B256,
    /// Post-state root.
    pub state_root: B256,
}

/// Reads and decodes every batch appended to `contract` from `from_block` on.
pub async fn read_batches(
    provider: &DynProvider,
    contract: Address,
    from_block: u64,
) -> Result<Vec<DerivedBatch>, L1Error> {
    let settlement = Settlement::new(contract, provider.clone());
    let events = settlement
        .BatchAppended_filter()
        .from_block(from_block)
        .query()
        .await
        .map_err(L1Error::rpc)?;
    let mut batches = Vec::with_capacity(events.len());
    for (event, log) in events {
        let tx_hash =
            log.transaction_hash.ok_or_else(|| L1Error::Rpc("log without tx hash".into()))?;
        let tx = provider
            .get_transaction_by_hash(tx_hash)
            .await
            .map_err(L1Error::rpc)?
            .ok_or_else(|| L1Error::Rpc(format!("L1 transaction {tx_hash} not found")))?;
        let input = alloy::consensus::Transaction::input(&tx);
        let call = appendBatchCall::abi_decode(input)
            .map_err(|e| L1Error::Inconsistent(format!("{tx_hash} is not appendBatch: {e}")))?;
        if keccak256(&call.data) != event.dataHash {
            return Err(L1Error::Inconsistent(format!(
                "batch data of {tx_hash} does not match its commitment"
            )));
        }
        let blocks = decode_batch(&call.data)
            .map_err(|e| L1Error::Inconsistent(format!("batch {}: {e}", event.index)))?;
        let (first, last) = (blocks[0].number, blocks[blocks.len() - 1].number);
        if first != event.firstBlock || last != event.lastBlock {
            return Err(L1Error::Inconsistent(format!(
                "batch {} holds blocks {first}..={last}, its event says {}..={}",
                event.index, event.firstBlock, event.lastBlock
            )));
        }
        batches.push(DerivedBatch {
            index: event.index.saturating_to(),
            first_block: first,
            last_block: last,
            blocks,
            l1_tx_hash: tx_hash,
        });
    }
    batches.sort_by_key(|b| b.index);
    Ok(batches)
}

/// Reads every state-root proposal made to `contract` from `from_block` on.
pub async fn read_proposals(
    provider: &DynProvider,
    contract: Address,
    from_block: u64,
) -> Result<Vec<L1Proposal>, L1Error> {
    let settlement = Settlement::new(contract, provider.clone());
    let events = settlement
        .StateRootProposed_filter()
        .from_block(from_block)
        .query()
        .await
        .map_err(L1Error::rpc)?;
    Ok(events
        .into_iter()
        .map(|(e, _)| L1Proposal {
            l2_block: e.l2Block,
            block_hash: e.blockHash,
            state_root: e.stateRoot,
        })
        .collect())
}

/// Errors replaying derived blocks.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// A transaction in a batch does not decode or has no valid signature.
    #[error("block {block}: transaction {index} is malformed: {reason}")]
    BadTransaction {
        /// Block number.
        block: u64,
        /// Position.
        index: usize,
        /// Why.
        reason: String,
    },
    /// The blocks do not continue the chain.
    #[error("expected block {expected}, batch holds {found}")]
    Gap {
        /// Next expected number.
        expected: u64,
        /// Found.
        found: u64,
    },
    /// A block's timestamp breaks the timestamp rule.
    #[error("block {0}: timestamp goes backwards")]
    Timestamp(u64),
    /// A block failed to execute.
    #[error("block {block}: {reason}")]
    Execution {
        /// Block number.
        block: u64,
        /// Why.
        reason: String,
    },
}

/// Re-executes derived blocks on top of genesis; returns each block's hash and root.
pub fn replay(
    config: &ChainConfig,
    genesis: ChainGenesis,
    blocks: impl IntoIterator<Item = BatchBlock>,
) -> Result<Vec<ReplayedBlock>, ReplayError> {
    let ChainGenesis { mut header, mut hash, mut state } = genesis;
    let mut out = Vec::new();
    for block in blocks {
        if block.number != header.number + 1 {
            return Err(ReplayError::Gap { expected: header.number + 1, found: block.number });
        }
        if block.timestamp < header.timestamp {
            return Err(ReplayError::Timestamp(block.number));
        }
        let transactions = block
            .transactions
            .iter()
            .enumerate()
            .map(|(index, raw)| {
                let bad = |reason: String| ReplayError::BadTransaction {
                    block: block.number,
                    index,
                    reason,
                };
                let tx =
                    TxEnvelope::decode_2718(&mut raw.as_ref()).map_err(|e| bad(e.to_string()))?;
                let sender = tx.recover_signer().map_err(|e| bad(e.to_string()))?;
                Ok(RecoveredTx::new_unchecked(tx, sender))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let parent = ParentBlock { header: &header, hash };
        let executed = execute_block(
            config,
            Engine::default(),
            &state,
            parent,
            block.timestamp,
            transactions,
            InvalidTxPolicy::Reject,
        )
        .map_err(|e| ReplayError::Execution { block: block.number, reason: e.to_string() })?;
        state.apply(&executed.diff);
        let sealed = executed.seal(state.state_root());
        state.insert_block_hash(block.number, sealed.hash);
        out.push(ReplayedBlock {
            number: block.number,
            hash: sealed.hash,
            state_root: sealed.block.header.state_root,
        });
        header = sealed.block.header;
        hash = sealed.hash;
    }
    Ok(out)
}
