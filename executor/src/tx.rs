//! Conversion of signed, sender-recovered transactions into revm's `TxEnv`.

use alloy_consensus::{Transaction, TxEnvelope, transaction::Recovered};
use alloy_eips::Typed2718;
use revm::context::{TxEnv, either::Either};

/// A transaction with its recovered sender: what the executor takes.
pub type RecoveredTx = Recovered<TxEnvelope>;

/// Builds revm's transaction environment for a recovered transaction.
pub fn tx_env(tx: &RecoveredTx) -> TxEnv {
    let inner = tx.inner();
    TxEnv {
        tx_type: inner.ty(),
        caller: tx.signer(),
        gas_limit: inner.gas_limit(),
        gas_price: inner.max_fee_per_gas(),
        kind: inner.kind(),
        value: inner.value(),
        data: inner.input().clone(),
        nonce: inner.nonce(),
        chain_id: inner.chain_id(),
        access_list: inner.access_list().cloned().unwrap_or_default(),
        gas_priority_fee: inner.max_priority_fee_per_gas(),
        blob_hashes: inner.blob_versioned_hashes().map(<[_]>::to_vec).unwrap_or_default(),
        max_fee_per_blob_gas: inner.max_fee_per_blob_gas().unwrap_or_default(),
        authorization_list: inner
            .authorization_list()
            .map(|list| list.iter().cloned().map(Either::Left).collect())
            .unwrap_or_default(),
    }
}
