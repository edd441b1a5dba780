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
use alloy_rlp::{Decodable, RlpDecodable, RlpEncodable};
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
pub(crate) struct Entry {
    pub(crate) raw: Bytes,
    pub(crate) sender: Address,
    /// EIP-2718 encoding of the receipt.
    pub(crate) receipt: Bytes,
    pub(crate) gas_used: u64,
    pub(crate) effective_gas_price: u128,
    /// The created contract's address, or empty.
    pub(crate) contract_address: Bytes,
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
    encode_entries(&entries)
}

/// The stored body of these transactions.
pub(crate) fn encode_entries(entries: &[Entry]) -> Vec<u8> {
    let mut rlp = Vec::with_capacity(entries.len() * 400);
    alloy_rlp::encode_list::<_, Entry>(entries, &mut rlp);
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

/// Stores block `number`'s body and the lookup rows of its transactions'
/// `hashes`, in order.
pub(crate) async fn insert(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    number: u64,
    body: Vec<u8>,
    hashes: impl IntoIterator<Item = B256>,
) -> Result<()> {
    let number = crate::to_i64(number);
    sqlx::query("INSERT INTO block_bodies (number, body) VALUES ($1, $2)")
        .bind(number)
        .bind(body)
        .execute(&mut **tx)
        .await?;
    let prefixes: Vec<i64> = hashes.into_iter().map(|hash| hash_prefix(&hash)).collect();
    let indexes: Vec<i32> = (0..prefixes.len() as i32).collect();
    sqlx::query(
        "INSERT INTO tx_lookup (hash_prefix, block_number, idx)
         SELECT d.prefix, $1, d.idx FROM UNNEST($2::bigint[], $3::int[]) AS d(prefix, idx)",
    )
    .bind(number)
    .bind(&prefixes)
    .bind(&indexes)
    .execute(&mut **tx)
    .await?;
    Ok(())
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

/// Moves the rows of the pre-release `transactions` table (renamed
/// `legacy_transactions` by migration 3) into bodies and lookup rows, then
/// drops it. One database transaction; a no-op once done.
pub(crate) async fn convert_legacy_transactions(pool: &sqlx::PgPool) -> Result<()> {
    use sqlx::Row;
    let mut tx = pool.begin().await?;
    // Processes starting together convert once: the second waits, then finds
    // the table gone.
    sqlx::query("SELECT pg_advisory_xact_lock(7420690003)").execute(&mut *tx).await?;
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('legacy_transactions') IS NOT NULL")
        .fetch_one(&mut *tx)
        .await?;
    if !exists {
        return Ok(());
    }
    let blocks: Vec<i64> =
        sqlx::query_scalar("SELECT DISTINCT block_number FROM legacy_transactions ORDER BY 1")
            .fetch_all(&mut *tx)
            .await?;
    for number in &blocks {
        let rows = sqlx::query(
            "SELECT raw, sender, receipt, gas_used, effective_gas_price, contract_address
             FROM legacy_transactions WHERE block_number = $1 ORDER BY idx",
        )
        .bind(number)
        .fetch_all(&mut *tx)
        .await?;
        let mut entries = Vec::with_capacity(rows.len());
        for row in &rows {
            entries.push(Entry {
                raw: Bytes::copy_from_slice(row.try_get::<&[u8], _>("raw")?),
                sender: crate::bytes_address(row.try_get("sender")?)?,
                receipt: Bytes::copy_from_slice(row.try_get::<&[u8], _>("receipt")?),
                gas_used: row.try_get::<i64, _>("gas_used")? as u64,
                effective_gas_price: crate::bytes_u256(row.try_get("effective_gas_price")?)?
                    .saturating_to(),
                contract_address: row
                    .try_get::<Option<&[u8]>, _>("contract_address")?
                    .map_or_else(Bytes::new, Bytes::copy_from_slice),
            });
        }
        let hashes = entries.iter().map(|entry| keccak256(&entry.raw)).collect::<Vec<_>>();
        insert(&mut tx, *number as u64, encode_entries(&entries), hashes).await?;
    }
    sqlx::query("DROP TABLE legacy_transactions").execute(&mut *tx).await?;
    tx.commit().await?;
    tracing::info!(blocks = blocks.len(), "moved stored transactions into block bodies");
    Ok(())
}
