//! Block bodies as stored: one blob per block holding every transaction with
//! its sender, receipt and execution outcome.
//!
//! A 10,000-transaction block is one row and one compressed blob instead of
//! 10,000 indexed rows (see docs/decisions.md, "Block commit: per-block
//! blobs"). The blob is zstd of the RLP list of [`Entry`]; receipts keep
//! their EIP-2718 encoding (the bloom compresses to almost nothing).

use crate::{Result, StoreError, StoredTransaction};
use alloy_consensus::ReceiptEnvelope;
use alloy_eips::{Decodable2718, Encodable2718};
use alloy_primitives::{Address, B256, Bytes, keccak256};
use alloy_rlp::{Decodable, Encodable, RlpDecodable, RlpEncodable};
use rollup_executor::block::ExecutedBlock;
use std::{
    collections::VecDeque,
    io::Read,
    sync::{Arc, Mutex},
};

/// zstd level: level 1 is the fastest and already shrinks receipts' empty
/// blooms to nothing; the commit is on the block producer's critical path.
const ZSTD_LEVEL: i32 = 1;

/// Largest body decompressed (a corrupt row cannot exhaust memory).
const MAX_BODY_BYTES: u64 = 1 << 30;

/// One transaction of a body.
#[derive(Debug, RlpEncodable, RlpDecodable)]
struct Entry {
    raw: Bytes,
    sender: Address,
    receipt: Bytes,
    gas_used: u64,
    effective_gas_price: u128,
    /// The created contract's address, or empty.
    contract_address: Bytes,
}

/// The stored body of `block`, whose transactions were sent by `senders`.
pub(crate) fn encode(block: &ExecutedBlock, senders: &[Address]) -> Vec<u8> {
    let entries: Vec<Entry> = block
        .transactions
        .iter()
        .zip(&block.receipts)
        .zip(&block.outcomes)
        .zip(senders)
        .map(|(((tx, receipt), outcome), sender)| Entry {
            raw: tx.inner().encoded_2718().into(),
            sender: *sender,
            receipt: receipt.encoded_2718().into(),
            gas_used: outcome.gas_used,
            effective_gas_price: outcome.effective_gas_price,
            contract_address: outcome
                .contract_address
                .map_or_else(Bytes::new, |a| Bytes::copy_from_slice(a.as_slice())),
        })
        .collect();
    let mut rlp = Vec::with_capacity(entries.len() * 400);
    entries.encode(&mut rlp);
    zstd::bulk::compress(&rlp, ZSTD_LEVEL).expect("zstd compresses in-memory bytes")
}

/// The transactions of block `number` (hash `block_hash`) from its body.
pub(crate) fn decode(number: u64, block_hash: B256, body: &[u8]) -> Result<Vec<StoredTransaction>> {
    let mut first_log_index = 0;
    entries(number, body)?
        .into_iter()
        .enumerate()
        .map(|(index, entry)| {
            let receipt = ReceiptEnvelope::decode_2718(&mut entry.receipt.as_ref())
                .map_err(|e| corrupt(number, &e))?;
            let contract_address = match entry.contract_address.len() {
                0 => None,
                20 => Some(Address::from_slice(&entry.contract_address)),
                n => return Err(corrupt(number, &format!("contract address of {n} bytes"))),
            };
            let stored = StoredTransaction {
                hash: keccak256(&entry.raw),
                raw: entry.raw,
                sender: entry.sender,
                block_number: number,
                block_hash,
                index: index as u64,
                gas_used: entry.gas_used,
                effective_gas_price: entry.effective_gas_price,
                contract_address,
                first_log_index,
                receipt,
            };
            first_log_index += stored.receipt.logs().len() as u64;
            Ok(stored)
        })
        .collect()
}

/// Only the raw (EIP-2718) transactions of block `number`'s body.
pub(crate) fn raw_transactions(number: u64, body: &[u8]) -> Result<Vec<Bytes>> {
    Ok(entries(number, body)?.into_iter().map(|entry| entry.raw).collect())
}

fn entries(number: u64, body: &[u8]) -> Result<Vec<Entry>> {
    let mut rlp = Vec::new();
    zstd::stream::read::Decoder::new(body)
        .map_err(|e| corrupt(number, &e))?
        .take(MAX_BODY_BYTES)
        .read_to_end(&mut rlp)
        .map_err(|e| corrupt(number, &e))?;
    Vec::<Entry>::decode(&mut rlp.as_slice()).map_err(|e| corrupt(number, &e))
}

fn corrupt(number: u64, what: &dyn std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("body {number}: {what}"))
}

/// The lookup key of a transaction hash: its first 8 bytes as an integer.
pub(crate) fn hash_prefix(hash: &B256) -> i64 {
    i64::from_be_bytes(hash[..8].try_into().expect("8 bytes"))
}

/// Decoded bodies of the most recently read blocks.
///
/// Committed blocks never change (a block commits once, on top of the head),
/// so a cached body is never stale. Receipt polling and `eth_getLogs` read the
/// newest blocks over and over; without the cache each read of one
/// transaction would decompress and decode its whole block.
#[derive(Debug, Default)]
pub(crate) struct BodyCache {
    recent: Mutex<VecDeque<(u64, Arc<[StoredTransaction]>)>>,
}

/// Blocks whose decoded bodies [`BodyCache`] keeps.
const CACHED_BODIES: usize = 16;

impl BodyCache {
    pub(crate) fn get(&self, number: u64) -> Option<Arc<[StoredTransaction]>> {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent.iter().find(|(n, _)| *n == number).map(|(_, body)| body.clone())
    }

    pub(crate) fn insert(&self, number: u64, body: Arc<[StoredTransaction]>) {
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.iter().any(|(n, _)| *n == number) {
            return;
        }
        if recent.len() == CACHED_BODIES {
            recent.pop_front();
        }
        recent.push_back((number, body));
    }
}
