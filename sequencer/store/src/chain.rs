//! The chain: genesis, fenced block commits, the head state, and chain reads.

use crate::{
    Result, Store, StoreError, body, bytes_address, bytes_b256, bytes_u256, head_state, to_i64,
};
use alloy_consensus::{Header, ReceiptEnvelope};
use alloy_primitives::{Address, B256, Bytes, U256};
use alloy_rlp::{Decodable, Encodable};
use rollup_executor::{
    MemoryState, SealedBlock, StateDiff,
    block::SkippedTx,
    genesis::ChainGenesis,
    state::{AccountSnapshot, BasicAccount},
};
use sqlx::{Postgres, Row, Transaction};
use std::sync::Arc;

/// A block as stored.
#[derive(Debug, Clone)]
pub struct StoredBlock {
    /// Its hash.
    pub hash: B256,
    /// Its header.
    pub header: Header,
    /// Hashes of its transactions, in order.
    pub transactions: Vec<B256>,
}

/// An included transaction with its receipt, as stored.
#[derive(Debug, Clone)]
pub struct StoredTransaction {
    /// Transaction hash.
    pub hash: B256,
    /// EIP-2718 encoding.
    pub raw: Bytes,
    /// Recovered sender.
    pub sender: Address,
    /// Block number.
    pub block_number: u64,
    /// Block hash.
    pub block_hash: B256,
    /// Position in the block.
    pub index: u64,
    /// The receipt.
    pub receipt: ReceiptEnvelope,
    /// Gas used by this transaction alone.
    pub gas_used: u64,
    /// Price per gas paid.
    pub effective_gas_price: u128,
    /// Created contract.
    pub contract_address: Option<Address>,
    /// Index of its first log within the block.
    pub first_log_index: u64,
}

const META_GENESIS: &str = "genesis_hash";
const META_CHAIN_ID: &str = "chain_id";

impl Store {
    /// Writes the genesis block and state if the database is empty, otherwise
    /// checks that the database holds this chain.
    pub async fn init_genesis(&self, chain_id: u64, genesis: &ChainGenesis) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("LOCK TABLE chain_meta IN EXCLUSIVE MODE").execute(&mut *tx).await?;
        let stored: Option<String> =
            sqlx::query_scalar("SELECT value FROM chain_meta WHERE key = $1")
                .bind(META_GENESIS)
                .fetch_optional(&mut *tx)
                .await?;
        let expected = genesis.hash.to_string();
        if let Some(found) = stored {
            if found != expected {
                return Err(StoreError::WrongChain { expected, found });
            }
            return Ok(());
        }
        for (key, value) in [(META_GENESIS, expected), (META_CHAIN_ID, chain_id.to_string())] {
            sqlx::query("INSERT INTO chain_meta (key, value) VALUES ($1, $2)")
                .bind(key)
                .bind(value)
                .execute(&mut *tx)
                .await?;
        }
        insert_block_row(&mut tx, genesis.hash, &genesis.header, 0).await?;
        let accounts = genesis.state.accounts_snapshot();
        head_state::write(&mut tx, &genesis_diff(&accounts, &genesis.state)).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Commits a block, its transactions and receipts (one body blob), its
    /// state diff and the mempool status changes in one database transaction.
    /// The head-state tables catch up later from the diff
    /// ([`Store::advance_state_checkpoint`]).
    ///
    /// Fenced: fails with [`StoreError::NotOnHead`] unless the block's parent is
    /// the current head, so two producers can never both extend one head.
    pub async fn commit_block(
        &self,
        block: &SealedBlock,
        senders: &[Address],
        dropped: &[SkippedTx],
    ) -> Result<()> {
        let header = &block.block.header;
        let number = header.number;
        crate::failpoint::hit("commit:begin");
        let mut tx = self.pool.begin().await?;
        let head = sqlx::query("SELECT number, hash FROM blocks ORDER BY number DESC LIMIT 1")
            .fetch_one(&mut *tx)
            .await?;
        let head_number = head.try_get::<i64, _>("number")? as u64;
        let head_hash = bytes_b256(head.try_get::<&[u8], _>("hash")?)?;
        if head_number + 1 != number || head_hash != header.parent_hash {
            return Err(StoreError::NotOnHead {
                number,
                reason: format!("head is {head_number} ({head_hash})"),
            });
        }
        insert_block_row(&mut tx, block.hash, header, block.block.transactions.len())
            .await
            .map_err(|e| match e {
                StoreError::Database(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                    StoreError::NotOnHead { number, reason: "another producer committed it".into() }
                }
                other => other,
            })?;
        crate::failpoint::hit("commit:after_block");
        insert_body(&mut tx, block, senders).await?;
        crate::failpoint::hit("commit:after_body");
        // The diff is the durable record of the block's state changes; the
        // head-state tables follow it (see `checkpoint`).
        sqlx::query("INSERT INTO state_diffs (block_number, encoded) VALUES ($1, $2)")
            .bind(to_i64(number))
            .bind(block.block.diff.encode_binary())
            .execute(&mut *tx)
            .await?;
        crate::failpoint::hit("commit:after_diff");
        // Included transactions leave the mempool; `tx_lookup` finds them now.
        let included: Vec<&[u8]> =
            block.block.transactions.iter().map(|t| t.inner().tx_hash().as_slice()).collect();
        sqlx::query("DELETE FROM mempool WHERE tx_hash = ANY($1)")
            .bind(&included)
            .execute(&mut *tx)
            .await?;
        mark_dropped(&mut tx, dropped).await?;
        crate::failpoint::hit("commit:before_commit");
        tx.commit().await?;
        crate::failpoint::hit("commit:after_commit");
        Ok(())
    }

    /// Marks transactions dropped (they can never be included).
    pub async fn drop_transactions(&self, dropped: &[SkippedTx]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        mark_dropped(&mut tx, dropped).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Loads the head state into memory, with the head header and hash, all
    /// from one database snapshot: the newest state snapshot (or, without a
    /// usable one, the head-state tables at the checkpoint) with the diffs of
    /// the blocks above it replayed.
    pub async fn load_head_state(&self) -> Result<(MemoryState, Header, B256)> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        let head =
            sqlx::query("SELECT number, hash, header FROM blocks ORDER BY number DESC LIMIT 1")
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| StoreError::Corrupt("no head block: run genesis first".into()))?;
        let head_number = head.try_get::<i64, _>("number")? as u64;
        let (mut state, base) = match load_snapshot(&mut tx, head_number).await? {
            Some(loaded) => loaded,
            None => load_tables(&mut tx).await?,
        };
        let diffs = sqlx::query(
            "SELECT block_number, encoded, diff FROM state_diffs WHERE block_number > $1
             ORDER BY block_number",
        )
        .bind(to_i64(base))
        .fetch_all(&mut *tx)
        .await?;
        let mut through = base;
        for row in &diffs {
            let number = row.try_get::<i64, _>("block_number")? as u64;
            if number != through + 1 {
                break;
            }
            state.apply(&decode_diff(number, row)?);
            through = number;
        }
        if through != head_number {
            return Err(StoreError::Corrupt(format!(
                "the state reaches block {through} but the head is {head_number}"
            )));
        }
        let rows = sqlx::query("SELECT number, hash FROM blocks ORDER BY number DESC LIMIT 256")
            .fetch_all(&mut *tx)
            .await?;
        for row in rows.iter().rev() {
            state.insert_block_hash(
                row.try_get::<i64, _>("number")? as u64,
                bytes_b256(row.try_get::<&[u8], _>("hash")?)?,
            );
        }
        let header = Header::decode(&mut head.try_get::<&[u8], _>("header")?)
            .map_err(|e| StoreError::Corrupt(format!("header {head_number}: {e}")))?;
        let hash = bytes_b256(head.try_get::<&[u8], _>("hash")?)?;
        tx.commit().await?;
        Ok((state, header, hash))
    }

    /// The newest block's number and hash.
    pub async fn head(&self) -> Result<(u64, B256)> {
        let row = sqlx::query("SELECT number, hash FROM blocks ORDER BY number DESC LIMIT 1")
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::Corrupt("no blocks".into()))?;
        Ok((row.try_get::<i64, _>("number")? as u64, bytes_b256(row.try_get::<&[u8], _>("hash")?)?))
    }

    /// The number of the newest block.
    pub async fn head_number(&self) -> Result<u64> {
        let n: Option<i64> =
            sqlx::query_scalar("SELECT max(number) FROM blocks").fetch_one(&self.pool).await?;
        n.map(|n| n as u64).ok_or_else(|| StoreError::Corrupt("no blocks".into()))
    }

    /// A block by number.
    pub async fn block_by_number(&self, number: u64) -> Result<Option<StoredBlock>> {
        let row = sqlx::query("SELECT hash, header FROM blocks WHERE number = $1")
            .bind(to_i64(number))
            .fetch_optional(&self.pool)
            .await?;
        self.stored_block(row, number).await
    }

    /// A block by hash.
    pub async fn block_by_hash(&self, hash: B256) -> Result<Option<StoredBlock>> {
        let row = sqlx::query("SELECT number, hash, header FROM blocks WHERE hash = $1")
            .bind(hash.as_slice())
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let number = row.try_get::<i64, _>("number")? as u64;
        self.stored_block(Some(row), number).await
    }

    async fn stored_block(
        &self,
        row: Option<sqlx::postgres::PgRow>,
        number: u64,
    ) -> Result<Option<StoredBlock>> {
        let Some(row) = row else { return Ok(None) };
        let header = Header::decode(&mut row.try_get::<&[u8], _>("header")?)
            .map_err(|e| StoreError::Corrupt(format!("header {number}: {e}")))?;
        let hash = bytes_b256(row.try_get::<&[u8], _>("hash")?)?;
        let transactions = self.body(number, hash).await?.iter().map(|t| t.hash).collect();
        Ok(Some(StoredBlock { hash, header, transactions }))
    }

    /// Headers of blocks `from..=to` (for fee history and the batcher).
    pub async fn headers(&self, from: u64, to: u64) -> Result<Vec<Header>> {
        let rows: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT header FROM blocks WHERE number BETWEEN $1 AND $2 ORDER BY number",
        )
        .bind(to_i64(from))
        .bind(to_i64(to))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|bytes| {
                Header::decode(&mut bytes.as_slice())
                    .map_err(|e| StoreError::Corrupt(format!("header: {e}")))
            })
            .collect()
    }

    /// The hashes of blocks `from..=to` that exist, in order.
    pub async fn block_hashes(&self, from: u64, to: u64) -> Result<Vec<B256>> {
        let rows: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT hash FROM blocks WHERE number BETWEEN $1 AND $2 ORDER BY number",
        )
        .bind(to_i64(from))
        .bind(to_i64(to))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|hash| bytes_b256(hash)).collect()
    }

    /// An included transaction with its receipt.
    pub async fn transaction(&self, hash: B256) -> Result<Option<StoredTransaction>> {
        let candidates = sqlx::query(
            "SELECT l.block_number, l.idx, b.hash FROM tx_lookup l
             JOIN blocks b ON b.number = l.block_number WHERE l.hash_prefix = $1",
        )
        .bind(body::hash_prefix(&hash))
        .fetch_all(&self.pool)
        .await?;
        for row in candidates {
            let number = row.try_get::<i64, _>("block_number")? as u64;
            let block_hash = bytes_b256(row.try_get::<&[u8], _>("hash")?)?;
            let body = self.body(number, block_hash).await?;
            let found = usize::try_from(row.try_get::<i32, _>("idx")?)
                .ok()
                .and_then(|index| body.get(index))
                .filter(|stored| stored.hash == hash);
            if let Some(stored) = found {
                return Ok(Some(stored.clone()));
            }
        }
        Ok(None)
    }

    /// All transactions of a block, in order, with receipts.
    pub async fn block_transactions(&self, number: u64) -> Result<Arc<[StoredTransaction]>> {
        if let Some(body) = self.bodies.get(number) {
            return Ok(body);
        }
        let hash: Option<Vec<u8>> = sqlx::query_scalar("SELECT hash FROM blocks WHERE number = $1")
            .bind(to_i64(number))
            .fetch_optional(&self.pool)
            .await?;
        match hash {
            Some(hash) => self.body(number, bytes_b256(&hash)?).await,
            None => Ok(Arc::from([])),
        }
    }

    /// The decoded body of block `number` (hash `block_hash`), from the cache
    /// when recently read.
    async fn body(&self, number: u64, block_hash: B256) -> Result<Arc<[StoredTransaction]>> {
        if let Some(body) = self.bodies.get(number) {
            return Ok(body);
        }
        let stored: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT body FROM block_bodies WHERE number = $1")
                .bind(to_i64(number))
                .fetch_optional(&self.pool)
                .await?;
        // Blocks without transactions have no body row.
        let Some(stored) = stored else { return Ok(Arc::from([])) };
        let decoded: Arc<[StoredTransaction]> = body::decode(number, block_hash, &stored)?.into();
        self.bodies.insert(number, decoded.clone());
        Ok(decoded)
    }

    /// An account at the head.
    pub async fn account(&self, address: Address) -> Result<Option<BasicAccount>> {
        let row = sqlx::query("SELECT nonce, balance, code_hash FROM accounts WHERE address = $1")
            .bind(address.as_slice())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| {
            Ok(BasicAccount {
                nonce: row.try_get::<i64, _>("nonce")? as u64,
                balance: bytes_u256(row.try_get::<&[u8], _>("balance")?)?,
                code_hash: bytes_b256(row.try_get::<&[u8], _>("code_hash")?)?,
            })
        })
        .transpose()
    }

    /// Deletes the state diffs of blocks below `number`; returns how many.
    pub async fn prune_state_diffs(&self, number: u64) -> Result<u64> {
        // Diffs above the state checkpoint are the state itself, and those
        // above the newest snapshot make it usable at start-up: never pruned.
        let done = sqlx::query(
            "DELETE FROM state_diffs
             WHERE block_number < LEAST(
                 $1,
                 (SELECT block_number + 1 FROM state_checkpoint),
                 (SELECT max(block_number) + 1 FROM state_snapshots))",
        )
        .bind(to_i64(number))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// The stored diff of a block.
    pub async fn state_diff(&self, number: u64) -> Result<Option<StateDiff>> {
        let row = sqlx::query("SELECT encoded, diff FROM state_diffs WHERE block_number = $1")
            .bind(to_i64(number))
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| decode_diff(number, &row)).transpose()
    }
}

/// The newest state snapshot and its block, if one is usable: every diff
/// from it to `head` is stored and it decodes to its block's state root.
async fn load_snapshot(
    tx: &mut Transaction<'_, Postgres>,
    head: u64,
) -> Result<Option<(MemoryState, u64)>> {
    let row = sqlx::query(
        "SELECT s.block_number, s.data, b.header,
                (SELECT count(*) FROM state_diffs d WHERE d.block_number > s.block_number)
                    AS diffs_above
         FROM state_snapshots s JOIN blocks b ON b.number = s.block_number
         ORDER BY s.block_number DESC LIMIT 1",
    )
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let number = row.try_get::<i64, _>("block_number")? as u64;
    if row.try_get::<i64, _>("diffs_above")? as u64 != head.saturating_sub(number) {
        tracing::info!(number, head, "state snapshot is older than the retained diffs");
        return Ok(None);
    }
    let decoded = crate::checkpoint::decompress_snapshot(row.try_get::<&[u8], _>("data")?)
        .and_then(|bytes| {
            MemoryState::decode_snapshot(&bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
        });
    let mut state = match decoded {
        Ok(state) => state,
        Err(error) => {
            tracing::warn!(number, %error, "state snapshot does not decode; loading the tables");
            return Ok(None);
        }
    };
    let header = Header::decode(&mut row.try_get::<&[u8], _>("header")?)
        .map_err(|e| StoreError::Corrupt(format!("header {number}: {e}")))?;
    // The cached hashes give the root without rehashing: a cheap check that
    // the snapshot is this block's state.
    if state.state_root() != header.state_root {
        tracing::warn!(number, "state snapshot's root is not its block's; loading the tables");
        return Ok(None);
    }
    Ok(Some((state, number)))
}

/// The head-state tables and the block they reflect (the checkpoint).
async fn load_tables(tx: &mut Transaction<'_, Postgres>) -> Result<(MemoryState, u64)> {
    let mut state = MemoryState::new();
    let rows = sqlx::query("SELECT code FROM code").fetch_all(&mut **tx).await?;
    for row in rows {
        state.insert_code(Bytes::copy_from_slice(row.try_get::<&[u8], _>("code")?));
    }
    let rows = sqlx::query("SELECT address, nonce, balance, code_hash FROM accounts")
        .fetch_all(&mut **tx)
        .await?;
    for row in rows {
        state.insert_account(
            bytes_address(row.try_get("address")?)?,
            BasicAccount {
                nonce: row.try_get::<i64, _>("nonce")? as u64,
                balance: bytes_u256(row.try_get::<&[u8], _>("balance")?)?,
                code_hash: bytes_b256(row.try_get::<&[u8], _>("code_hash")?)?,
            },
        );
    }
    let rows = sqlx::query("SELECT address, slot, value FROM storage").fetch_all(&mut **tx).await?;
    let mut slots: Vec<(Address, U256, U256)> = Vec::with_capacity(rows.len());
    for row in rows {
        slots.push((
            bytes_address(row.try_get("address")?)?,
            bytes_u256(row.try_get::<&[u8], _>("slot")?)?,
            bytes_u256(row.try_get::<&[u8], _>("value")?)?,
        ));
    }
    state.insert_storage_many(slots);
    let checkpoint: i64 = sqlx::query_scalar("SELECT block_number FROM state_checkpoint")
        .fetch_one(&mut **tx)
        .await?;
    Ok((state, checkpoint as u64))
}

/// A `state_diffs` row's diff (columns `encoded` and `diff`).
pub(crate) fn decode_diff(number: u64, row: &sqlx::postgres::PgRow) -> Result<StateDiff> {
    let corrupt = |e: &dyn std::fmt::Display| StoreError::Corrupt(format!("diff {number}: {e}"));
    if let Some(encoded) = row.try_get::<Option<&[u8]>, _>("encoded")? {
        return StateDiff::decode_binary(encoded).map_err(|e| corrupt(&e));
    }
    // Written before binary diffs (migration 2).
    let json: serde_json::Value = row.try_get("diff")?;
    serde_json::from_value(json).map_err(|e| corrupt(&e))
}

async fn mark_dropped(tx: &mut Transaction<'_, Postgres>, dropped: &[SkippedTx]) -> Result<()> {
    if dropped.is_empty() {
        return Ok(());
    }
    let hashes: Vec<&[u8]> = dropped.iter().map(|d| d.hash.as_slice()).collect();
    let reasons: Vec<String> = dropped
        .iter()
        .map(|d| match &d.reason {
            rollup_executor::block::SkipReason::Deferred(r)
            | rollup_executor::block::SkipReason::Invalid(r) => r.clone(),
        })
        .collect();
    sqlx::query(
        "UPDATE mempool m SET status = 2, drop_reason = d.reason
         FROM UNNEST($1::bytea[], $2::text[]) AS d(hash, reason)
         WHERE m.tx_hash = d.hash AND m.status = 0",
    )
    .bind(&hashes)
    .bind(&reasons)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn insert_block_row(
    tx: &mut Transaction<'_, Postgres>,
    hash: B256,
    header: &Header,
    tx_count: usize,
) -> Result<()> {
    let mut rlp = Vec::with_capacity(600);
    header.encode(&mut rlp);
    sqlx::query(
        "INSERT INTO blocks (number, hash, parent_hash, header, timestamp, gas_used, base_fee, tx_count)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(to_i64(header.number))
    .bind(hash.as_slice())
    .bind(header.parent_hash.as_slice())
    .bind(rlp)
    .bind(to_i64(header.timestamp))
    .bind(to_i64(header.gas_used))
    .bind(to_i64(header.base_fee_per_gas.unwrap_or_default()))
    .bind(tx_count as i32)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Stores the block's body blob and its transactions' lookup rows.
async fn insert_body(
    tx: &mut Transaction<'_, Postgres>,
    block: &SealedBlock,
    senders: &[Address],
) -> Result<()> {
    let executed = &block.block;
    if executed.transactions.is_empty() {
        return Ok(());
    }
    let hashes = executed.transactions.iter().map(|t| *t.inner().tx_hash());
    body::insert(tx, executed.header.number, body::encode(executed, senders), hashes).await
}

/// The genesis state as a diff from nothing.
fn genesis_diff(accounts: &[AccountSnapshot], state: &MemoryState) -> StateDiff {
    let mut diff = StateDiff::default();
    for AccountSnapshot { address, account, storage } in accounts {
        let storage = storage
            .iter()
            .map(|(slot, value)| {
                (*slot, rollup_executor::state::SlotChange { before: U256::ZERO, after: *value })
            })
            .collect();
        diff.accounts.insert(
            *address,
            rollup_executor::state::AccountDiff {
                before: None,
                after: Some(*account),
                storage_cleared: false,
                storage,
            },
        );
    }
    diff.code = state.code_snapshot();
    diff
}
