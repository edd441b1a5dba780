//! Sender recovery, the biggest fixed cost of admission: k256 (pure Rust)
//! against libsecp256k1 (C, through the `secp256k1` crate), on the same
//! signatures, single-threaded. Also times what alloy's `recover_signer` uses
//! in this build.
//!
//! `cargo run --release -p rollup-sequencer --example sender_recovery`

use alloy_consensus::{SignableTransaction, TxEip1559};
use alloy_primitives::{Address, B256, TxKind, U256, keccak256};
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;
use std::time::Instant;

const SIGNATURES: usize = 5_000;
const ROUNDS: usize = 5;

fn main() {
    let signer = PrivateKeySigner::from_bytes(&B256::repeat_byte(0x42)).unwrap();
    let txs: Vec<_> = (0..SIGNATURES as u64)
        .map(|nonce| {
            let tx = TxEip1559 {
                chain_id: 42_069,
                nonce,
                gas_limit: 21_000,
                max_fee_per_gas: 2_000_000_000,
                max_priority_fee_per_gas: 1_000_000,
                to: TxKind::Call(Address::repeat_byte(1)),
                value: U256::from(1),
                ..Default::default()
            };
            let hash = tx.signature_hash();
            let signature = signer.sign_hash_sync(&hash).unwrap();
            (tx.into_signed(signature), hash)
        })
        .collect();

    let k256 = || {
        for (signed, hash) in &txs {
            let sig = signed.signature();
            let recovery = k256::ecdsa::RecoveryId::from_byte(sig.v() as u8).unwrap();
            let signature = k256::ecdsa::Signature::from_scalars(
                sig.r().to_be_bytes::<32>(),
                sig.s().to_be_bytes::<32>(),
            )
            .unwrap();
            let key = k256::ecdsa::VerifyingKey::recover_from_prehash(
                hash.as_slice(),
                &signature,
                recovery,
            )
            .unwrap();
            let point = key.to_encoded_point(false);
            assert_eq!(
                Address::from_slice(&keccak256(&point.as_bytes()[1..])[12..]),
                signer.address()
            );
        }
    };
    let libsecp = || {
        for (signed, hash) in &txs {
            let sig = signed.signature();
            let mut compact = [0u8; 64];
            compact[..32].copy_from_slice(&sig.r().to_be_bytes::<32>());
            compact[32..].copy_from_slice(&sig.s().to_be_bytes::<32>());
            let id = secp256k1::ecdsa::RecoveryId::try_from(i32::from(sig.v())).unwrap();
            let signature =
                secp256k1::ecdsa::RecoverableSignature::from_compact(&compact, id).unwrap();
            let message = secp256k1::Message::from_digest(hash.0);
            let key = secp256k1::SECP256K1.recover_ecdsa(&message, &signature).unwrap();
            let bytes = key.serialize_uncompressed();
            assert_eq!(Address::from_slice(&keccak256(&bytes[1..])[12..]), signer.address());
        }
    };
    let alloy = || {
        for (signed, _) in &txs {
            assert_eq!(signed.recover_signer().unwrap(), signer.address());
        }
    };

    for (name, run) in
        [("k256", &k256 as &dyn Fn()), ("libsecp256k1", &libsecp), ("alloy (this build)", &alloy)]
    {
        let mut per_sig: Vec<f64> = (0..ROUNDS)
            .map(|_| {
                let started = Instant::now();
                run();
                started.elapsed().as_secs_f64() * 1e6 / SIGNATURES as f64
            })
            .collect();
        per_sig.sort_by(f64::total_cmp);
        println!(
            "{{\"backend\":\"{name}\",\"signatures\":{SIGNATURES},\"median_us\":{:.2},\"min_us\":{:.2},\"max_us\":{:.2},\"per_core_per_s\":{:.0}}}",
            per_sig[ROUNDS / 2],
            per_sig[0],
            per_sig[ROUNDS - 1],
            1e6 / per_sig[ROUNDS / 2]
        );
    }
}
