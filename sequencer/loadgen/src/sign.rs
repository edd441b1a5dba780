//! Keys, signed transfers and pre-serialized request bodies.

use crate::plan::Slot;
use alloy::{
    consensus::{SignableTransaction, TxEip1559, TxEnvelope},
    eips::eip2718::Encodable2718,
    primitives::{Address, TxKind, U256, hex, keccak256},
    signers::{
        SignerSync,
        local::{MnemonicBuilder, PrivateKeySigner, coins_bip39::English},
    },
};
use bytes::Bytes;
use rayon::prelude::*;
use std::fmt::Write as _;

/// Gas limit of a plain transfer.
pub const TRANSFER_GAS: u64 = 21_000;
/// Number of distinct recipients; transfers go round-robin to them.
pub const RECIPIENT_POOL: usize = 10_000;
/// Value of every transfer (wei).
pub const TRANSFER_VALUE_WEI: u64 = 1;

/// Fee fields of every transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fees {
    /// `maxFeePerGas` (wei).
    pub max_fee_per_gas: u128,
    /// `maxPriorityFeePerGas` (wei).
    pub max_priority_fee_per_gas: u128,
}

impl Fees {
    /// Default tip: 0.001 gwei.
    pub const DEFAULT_TIP_WEI: u128 = 1_000_000;

    /// A fee cap of `gwei` gwei and the default tip (capped at the fee cap).
    pub fn from_gwei(gwei: f64) -> eyre::Result<Self> {
        if !gwei.is_finite() || gwei <= 0.0 {
            eyre::bail!("the fee must be a positive number of gwei, not {gwei}");
        }
        let max_fee_per_gas = (gwei * 1e9).round() as u128;
        Ok(Self {
            max_fee_per_gas,
            max_priority_fee_per_gas: Self::DEFAULT_TIP_WEI.min(max_fee_per_gas),
        })
    }
}

/// The dev mnemonic's signers `m/44'/60'/0'/0/i` for `i` in `first..first + count`.
pub fn dev_signers(first: u32, count: u32) -> eyre::Result<Vec<PrivateKeySigner>> {
    MnemonicBuilder::<English>::default()
        .phrase(rollup_devnet::DEV_MNEMONIC)
        .index(first)?
        .into_iter()
        .take(count as usize)
        .map(|signer| signer.map_err(eyre::Report::from))
        .collect()
}

/// Recipient `i` of the pool: fresh addresses nobody holds a key for.
pub fn recipient(i: usize) -> Address {
    let seed = format!("rollup-loadgen recipient {}", i % RECIPIENT_POOL);
    Address::from_slice(&keccak256(seed.as_bytes())[12..])
}

/// One signed EIP-1559 transfer, EIP-2718 encoded.
pub fn sign_transfer(
    signer: &PrivateKeySigner,
    chain_id: u64,
    nonce: u64,
    to: Address,
    fees: Fees,
) -> eyre::Result<Vec<u8>> {
    let tx = TxEip1559 {
        chain_id,
        nonce,
        gas_limit: TRANSFER_GAS,
        max_fee_per_gas: fees.max_fee_per_gas,
        max_priority_fee_per_gas: fees.max_priority_fee_per_gas,
        to: TxKind::Call(to),
        value: U256::from(TRANSFER_VALUE_WEI),
        ..Default::default()
    };
    let signature = signer.sign_hash_sync(&tx.signature_hash())?;
    Ok(TxEnvelope::from(tx.into_signed(signature)).encoded_2718())
}

/// Signs the transfer of every slot, in parallel: slot `k` spends nonce
/// `nonces[account] + index` of `signers[account]` and pays recipient `k`.
/// Returns the raw transactions as `0x` hex, in slot order.
pub fn sign_all(
    signers: &[PrivateKeySigner],
    nonces: &[u64],
    slots: &[Slot],
    chain_id: u64,
    fees: Fees,
) -> eyre::Result<Vec<String>> {
    let recipients: Vec<Address> = (0..RECIPIENT_POOL).map(recipient).collect();
    slots
        .par_iter()
        .enumerate()
        .map(|(k, slot)| {
            let account = slot.account as usize;
            let nonce = nonces[account] + u64::from(slot.index);
            let raw = sign_transfer(
                &signers[account],
                chain_id,
                nonce,
                recipients[k % RECIPIENT_POOL],
                fees,
            )?;
            Ok(hex::encode_prefixed(raw))
        })
        .collect()
}

/// Appends one `eth_sendRawTransaction` request object to `out`.
fn push_request(out: &mut String, id: u64, raw_hex: &str) {
    let _ = write!(
        out,
        r#"{{"jsonrpc":"2.0","id":{id},"method":"eth_sendRawTransaction","params":["{raw_hex}"]}}"#
    );
}

/// The body of one request: a single request object when `batch` is false
/// (then `raws` must hold one transaction), else a JSON-RPC batch array.
/// Request ids count up from `first_id`.
pub fn request_body(first_id: u64, raws: &[String], batch: bool) -> Bytes {
    let mut out = String::with_capacity(raws.iter().map(|r| r.len() + 80).sum::<usize>() + 2);
    if batch {
        out.push('[');
    }
    for (i, raw) in raws.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_request(&mut out, first_id + i as u64, raw);
    }
    if batch {
        out.push(']');
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::{consensus::Transaction, eips::Decodable2718};

    #[test]
    fn signers_follow_the_dev_derivation_path() {
        let signers = dev_signers(0, 2).unwrap();
        // The well-known first two accounts of the test mnemonic.
        assert_eq!(
            signers[0].address(),
            "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266".parse::<Address>().unwrap()
        );
        assert_eq!(
            signers[1].address(),
            "0x70997970C51812dc3A010C7d01b50e0d17dc79C8".parse::<Address>().unwrap()
        );
        let later = dev_signers(1, 1).unwrap();
        assert_eq!(later[0].address(), signers[1].address());
    }

    #[test]
    fn transfers_decode_with_the_signed_fields() {
        let signers = dev_signers(10, 2).unwrap();
        let fees = Fees::from_gwei(10.0).unwrap();
        assert_eq!(fees.max_fee_per_gas, 10_000_000_000);
        assert_eq!(fees.max_priority_fee_per_gas, 1_000_000);
        let slots = crate::plan::interleave(2, 2);
        let raws = sign_all(&signers, &[5, 0], &slots, 42069, fees).unwrap();
        assert_eq!(raws.len(), 4);
        let expected = [(0, 5), (1, 0), (0, 6), (1, 1)];
        for (k, (raw, (account, nonce))) in raws.iter().zip(expected).enumerate() {
            let bytes = hex::decode(raw).unwrap();
            let tx = TxEnvelope::decode_2718_exact(&bytes[..]).unwrap();
            assert_eq!(tx.chain_id(), Some(42069));
            assert_eq!(tx.nonce(), nonce);
            assert_eq!(tx.gas_limit(), TRANSFER_GAS);
            assert_eq!(tx.to(), Some(recipient(k)));
            let TxEnvelope::Eip1559(signed) = &tx else { panic!("not EIP-1559") };
            let sender =
                signed.signature().recover_address_from_prehash(&signed.signature_hash()).unwrap();
            assert_eq!(sender, signers[account].address());
        }
    }

    #[test]
    fn bodies_are_json_rpc() {
        let raws = vec!["0x01".to_owned(), "0x02".to_owned()];
        let single: serde_json::Value =
            serde_json::from_slice(&request_body(7, &raws[..1], false)).unwrap();
        assert_eq!(
            single,
            serde_json::json!({"jsonrpc":"2.0","id":7,"method":"eth_sendRawTransaction","params":["0x01"]})
        );
        let batch: serde_json::Value =
            serde_json::from_slice(&request_body(3, &raws, true)).unwrap();
        assert_eq!(batch.as_array().unwrap().len(), 2);
        assert_eq!(batch[1]["id"], 4);
        assert_eq!(batch[1]["params"][0], "0x02");
    }

    #[test]
    fn recipients_are_distinct_within_the_pool() {
        let pool: std::collections::HashSet<Address> = (0..RECIPIENT_POOL).map(recipient).collect();
        assert_eq!(pool.len(), RECIPIENT_POOL);
        assert_eq!(recipient(RECIPIENT_POOL + 3), recipient(3));
    }
}
