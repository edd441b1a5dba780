//! Admission of raw transactions: decode, recover the sender, and check them
//! against the chain rules and the head state, with geth's error messages.

use crate::{chain_view::ChainView, pool::Admitted};
use alloy_consensus::{Transaction, TxEnvelope, transaction::SignerRecoverable};
use alloy_eips::Decodable2718;
use alloy_primitives::{Bytes, U256};
use rollup_executor::{ChainConfig, RecoveredTx};
use rollup_store::NewTransaction;

/// Largest accepted transaction (geth's txpool limit).
pub const MAX_TX_BYTES: usize = 128 * 1024;

/// Why a transaction was refused; the `Display` text is geth's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdmissionError {
    /// Bigger than [`MAX_TX_BYTES`].
    #[error("oversized data")]
    Oversized,
    /// Not a valid EIP-2718 envelope.
    #[error("invalid transaction: {0}")]
    Decode(String),
    /// A type this chain does not accept.
    #[error("transaction type not supported")]
    UnsupportedType,
    /// Legacy transaction without EIP-155 chain id.
    #[error("only replay-protected (EIP-155) transactions allowed over RPC")]
    Unprotected,
    /// Signed for another chain.
    #[error("invalid chain id")]
    WrongChainId,
    /// The signature does not recover.
    #[error("invalid sender")]
    InvalidSender,
    /// Gas limit above the block gas limit.
    #[error("exceeds block gas limit")]
    GasLimit,
    /// Gas limit below the intrinsic cost.
    #[error("intrinsic gas too low")]
    IntrinsicGas,
    /// Fee cap below the chain's minimum base fee.
    #[error("transaction underpriced")]
    Underpriced,
    /// Tip above the fee cap.
    #[error("max priority fee per gas higher than max fee per gas")]
    TipAboveFeeCap,
    /// Nonce at its maximum (EIP-2681).
    #[error("nonce has max value")]
    NonceMax,
    /// Init code above EIP-3860's limit.
    #[error("max initcode size exceeded")]
    InitCodeTooLarge,
    /// Nonce already used.
    #[error("nonce too low")]
    NonceTooLow,
    /// A replacement without a large enough fee bump.
    #[error("replacement transaction underpriced")]
    ReplacementUnderpriced,
    /// The sender has too many pooled transactions.
    #[error("account limit exceeded")]
    AccountLimit,
    /// The pool is full.
    #[error("txpool is full")]
    PoolFull,
    /// Cannot pay for gas and value.
    #[error("insufficient funds for gas * price + value")]
    InsufficientFunds,
}

/// EIP-3860's limit on init code.
pub const MAX_INITCODE_BYTES: usize = 2 * 24_576;

/// The stateless layer: decodes an EIP-2718 envelope, checks what needs no
/// state (type, chain id when present, nonce range, fee fields, intrinsic gas,
/// init-code size) and recovers the sender. Unprotected legacy transactions
/// pass here; the RPC policy in [`admit`] refuses them.
pub fn decode_and_recover(raw: &[u8], chain_id: u64) -> Result<RecoveredTx, AdmissionError> {
    if raw.len() > MAX_TX_BYTES {
        return Err(AdmissionError::Oversized);
    }
    let tx =
        TxEnvelope::decode_2718_exact(raw).map_err(|e| AdmissionError::Decode(e.to_string()))?;
    if tx.is_eip4844() || tx.is_eip7702() {
        return Err(AdmissionError::UnsupportedType);
    }
    if tx.chain_id().is_some_and(|id| id != chain_id) {
        return Err(AdmissionError::WrongChainId);
    }
    if tx.nonce() == u64::MAX {
        return Err(AdmissionError::NonceMax);
    }
    if tx.max_priority_fee_per_gas().is_some_and(|tip| tip > tx.max_fee_per_gas()) {
        return Err(AdmissionError::TipAboveFeeCap);
    }
    if tx.is_create() && tx.input().len() > MAX_INITCODE_BYTES {
        return Err(AdmissionError::InitCodeTooLarge);
    }
    if tx.gas_limit() < intrinsic_gas(&tx) {
        return Err(AdmissionError::IntrinsicGas);
    }
    let sender = tx.recover_signer().map_err(|_| AdmissionError::InvalidSender)?;
    Ok(RecoveredTx::new_unchecked(tx, sender))
}

/// Decodes and validates a raw transaction against the head in `view` and
/// the pool index; on success the pool has recorded it (call
/// [`crate::pool::TxPool::forget`] if it cannot be stored).
pub fn admit(
    config: &ChainConfig,
    view: &ChainView,
    raw: &[u8],
) -> Result<(NewTransaction, Admitted), AdmissionError> {
    let recovered = decode_and_recover(raw, config.chain_id)?;
    let (tx, sender) = (recovered.inner(), recovered.signer());
    if tx.chain_id().is_none() {
        return Err(AdmissionError::Unprotected);
    }
    if tx.gas_limit() > config.block_gas_limit {
        return Err(AdmissionError::GasLimit);
    }
    if tx.max_fee_per_gas() < u128::from(config.eip1559.min_base_fee) {
        return Err(AdmissionError::Underpriced);
    }
    let account = view.read().state.account(&sender);
    let (nonce, balance) = account.map_or((0, U256::ZERO), |a| (a.nonce, a.balance));
    if tx.nonce() < nonce {
        return Err(AdmissionError::NonceTooLow);
    }
    let admitted = view.pool().admit(&recovered, nonce, balance)?;
    let replaces = match admitted {
        Admitted::Replaces(hash) => Some(hash),
        Admitted::New | Admitted::Duplicate => None,
    };
    let new = NewTransaction {
        hash: *tx.tx_hash(),
        sender,
        nonce: tx.nonce(),
        raw: Bytes::copy_from_slice(raw),
        replaces,
    };
    Ok((new, admitted))
}

/// Intrinsic gas at Cancun: base cost, calldata, contract creation with
/// init-code words (EIP-3860) and access list.
pub fn intrinsic_gas(tx: &TxEnvelope) -> u64 {
    let input = tx.input();
    let zeros = input.iter().filter(|b| **b == 0).count() as u64;
    let non_zeros = input.len() as u64 - zeros;
    let mut gas = 21_000 + zeros * 4 + non_zeros * 16;
    if tx.is_create() {
        gas += 32_000 + (input.len() as u64).div_ceil(32) * 2;
    }
    if let Some(list) = tx.access_list() {
        for item in list.iter() {
            gas += 2_400 + item.storage_keys.len() as u64 * 1_900;
        }
    }
    gas
}

#[cfg(test)]
mod tests {
    use super::AdmissionError::*;

    #[test]
    fn messages_are_geths() {
        let cases = [
            (Oversized, "oversized data"),
            (UnsupportedType, "transaction type not supported"),
            (Unprotected, "only replay-protected (EIP-155) transactions allowed over RPC"),
            (WrongChainId, "invalid chain id"),
            (InvalidSender, "invalid sender"),
            (GasLimit, "exceeds block gas limit"),
            (IntrinsicGas, "intrinsic gas too low"),
            (Underpriced, "transaction underpriced"),
            (TipAboveFeeCap, "max priority fee per gas higher than max fee per gas"),
            (NonceMax, "nonce has max value"),
            (InitCodeTooLarge, "max initcode size exceeded"),
            (NonceTooLow, "nonce too low"),
            (ReplacementUnderpriced, "replacement transaction underpriced"),
            (AccountLimit, "account limit exceeded"),
            (PoolFull, "txpool is full"),
            (InsufficientFunds, "insufficient funds for gas * price + value"),
        ];
        for (error, message) in cases {
            assert_eq!(error.to_string(), message);
        }
    }
}
