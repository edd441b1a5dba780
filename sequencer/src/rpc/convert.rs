//! Stored chain data into the standard JSON-RPC types (alloy's, so the JSON
//! is exactly what Ethereum clients expect).

use alloy::rpc::types::{
    Block, BlockTransactions, Header as RpcHeader, Log, Transaction, TransactionReceipt,
};
use alloy_consensus::{ReceiptEnvelope, Transaction as _, TxEnvelope, transaction::Recovered};
use alloy_eips::Decodable2718;
use alloy_primitives::{Address, U256};
use alloy_rlp::Encodable;
use rollup_store::{StoredBlock, StoredTransaction};

use super::error::RpcError;

/// A stored, included transaction as an RPC transaction.
pub(super) fn transaction(stored: &StoredTransaction) -> Result<Transaction, RpcError> {
    let envelope = TxEnvelope::decode_2718_exact(&stored.raw).map_err(RpcError::internal)?;
    Ok(Transaction {
        inner: Recovered::new_unchecked(envelope, stored.sender),
        block_hash: Some(stored.block_hash),
        block_number: Some(stored.block_number),
        transaction_index: Some(stored.index),
        effective_gas_price: Some(stored.effective_gas_price),
        block_timestamp: None,
    })
}

/// A pending (not yet included) transaction.
pub(super) fn pending_transaction(
    raw: &[u8],
    sender: alloy_primitives::Address,
) -> Result<Transaction, RpcError> {
    let envelope = TxEnvelope::decode_2718_exact(raw).map_err(RpcError::internal)?;
    Ok(Transaction {
        inner: Recovered::new_unchecked(envelope, sender),
        block_hash: None,
        block_number: None,
        transaction_index: None,
        effective_gas_price: None,
        block_timestamp: None,
    })
}

/// A stored transaction's receipt.
pub(super) fn receipt(
    stored: &StoredTransaction,
    timestamp: Option<u64>,
) -> Result<TransactionReceipt, RpcError> {
    let envelope = TxEnvelope::decode_2718_exact(&stored.raw).map_err(RpcError::internal)?;
    let mut log_index = stored.first_log_index;
    let inner: ReceiptEnvelope<Log> = stored.receipt.clone().map_logs(|inner| {
        let log = Log {
            inner,
            block_hash: Some(stored.block_hash),
            block_number: Some(stored.block_number),
            block_timestamp: timestamp,
            transaction_hash: Some(stored.hash),
            transaction_index: Some(stored.index),
            log_index: Some(log_index),
            removed: false,
        };
        log_index += 1;
        log
    });
    Ok(TransactionReceipt {
        inner,
        transaction_hash: stored.hash,
        transaction_index: Some(stored.index),
        block_hash: Some(stored.block_hash),
        block_number: Some(stored.block_number),
        gas_used: stored.gas_used,
        effective_gas_price: stored.effective_gas_price,
        blob_gas_used: None,
        blob_gas_price: None,
        from: stored.sender,
        to: envelope.to(),
        contract_address: stored.contract_address,
    })
}

/// A stored block, with transaction hashes or full transactions.
pub(super) fn block(
    stored: StoredBlock,
    full: Option<&[StoredTransaction]>,
) -> Result<Block, RpcError> {
    let size = stored.header.length();
    let transactions = match full {
        Some(txs) => {
            BlockTransactions::Full(txs.iter().map(transaction).collect::<Result<_, _>>()?)
        }
        None => BlockTransactions::Hashes(stored.transactions),
    };
    Ok(Block {
        header: RpcHeader {
            hash: stored.hash,
            inner: stored.header,
            total_difficulty: Some(U256::ZERO),
            size: Some(U256::from(size)),
        },
        uncles: Vec::new(),
        transactions,
        withdrawals: Some(Default::default()),
    })
}

/// An EIP-1186 proof response.
pub(super) fn account_proof(
    address: Address,
    proof: rollup_executor::state::AccountProof,
) -> alloy::rpc::types::EIP1186AccountProofResponse {
    let account = proof.account.unwrap_or(rollup_executor::state::BasicAccount {
        nonce: 0,
        balance: U256::ZERO,
        code_hash: alloy::consensus::constants::KECCAK_EMPTY,
    });
    alloy::rpc::types::EIP1186AccountProofResponse {
        address,
        balance: account.balance,
        code_hash: account.code_hash,
        nonce: account.nonce,
        storage_hash: proof.storage_root,
        account_proof: proof.account_proof,
        storage_proof: proof
            .storage_proofs
            .into_iter()
            .map(|(slot, value, nodes)| alloy::rpc::types::EIP1186StorageProof {
                key: alloy::serde::storage::JsonStorageKey::Hash(slot.into()),
                value,
                proof: nodes,
            })
            .collect(),
    }
}
