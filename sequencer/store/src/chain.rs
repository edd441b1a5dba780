//! The chain: genesis, fenced block commits, the head state, and chain reads.

use crate::{Result, Store, StoreError, bytes_address, bytes_b256, bytes_u256, to_i64, u256_bytes};
use alloy_consensus::{Header, ReceiptEnvelope};
use alloy_eips::{Decodable2718, Encodable2718};
use alloy_primitives::{Address, B256, Bytes, U256};
use alloy_rlp::{Decodable, Encodable};
use rollup_executor::{
    MemoryState, SealedBlock, StateDiff,
    block::SkippedTx,
    genesis::ChainGenesis,
    state::{AccountSnapshot, BasicAccount},
};
use sqlx::{Postgres, Row, Transaction};

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
        insert_block_row(&mut tx, genesis.hash, &genesis.header).await?;
        let accounts = genesis.state.accounts_snapshot();
        write_state(&mut tx, &genesis_diff(&accounts, &genesis.state)).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Commits a block, its transactions, receipts, state changes, state diff
    /// and the mempool status changes in one database transaction.
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
        insert_block_row(&mut tx, block.hash, header).await.map_err(|e| match e {
            StoreError::Database(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                StoreError::NotOnHead { number, reason: "another producer committed it".into() }
            }
            other => other,
        })?;
        crate::failpoint::hit("commit:after_block");
        insert_transactions(&mut tx, block, senders).await?;
        crate::failpoint::hit("commit:after_transactions");
        write_state(&mut tx, &block.block.diff).await?;
        crate::failpoint::hit("commit:after_state");
        sqlx::query("INSERT INTO state_diffs (block_number, encoded) VALUES ($1, $2)")
            .bind(to_i64(number))
            .bind(block.block.diff.encode_binary())
            .execute(&mut *tx)
            .await?;

        let included: Vec<&[u8]> =
            block.block.transactions.iter().map(|t| t.inner().tx_hash().as_slice()).collect();
        sqlx::query("UPDATE mempool SET status = 1, block_number = $1 WHERE tx_hash = ANY($2)")
            .bind(to_i64(number))
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

    /// Loads the head state into memory, with the head header and hash.
    pub async fn load_head_state(&self) -> Result<(MemoryState, Header, B256)> {
        let mut state = MemoryState::new();
        let rows = sqlx::query("SELECT hash, code FROM code").fetch_all(&self.pool).await?;
        for row in rows {
            state.insert_code(Bytes::copy_from_slice(row.try_get::<&[u8], _>("code")?));
        }
        let rows = sqlx::query("SELECT address, nonce, balance, code_hash FROM accounts")
            .fetch_all(&self.pool)
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
        let rows =
            sqlx::query("SELECT address, slot, value FROM storage").fetch_all(&self.pool).await?;
        let mut slots: Vec<(Address, U256, U256)> = Vec::with_capacity(rows.len());
        for row in rows {
            slots.push((
                bytes_address(row.try_get("address")?)?,
                bytes_u256(row.try_get::<&[u8], _>("slot")?)?,
                bytes_u256(row.try_get::<&[u8], _>("value")?)?,
            ));
        }
        state.insert_storage_many(slots);
        let rows = sqlx::query("SELECT number, hash FROM blocks ORDER BY number DESC LIMIT 256")
            .fetch_all(&self.pool)
            .await?;
        for row in rows.iter().rev() {
            state.insert_block_hash(
                row.try_get::<i64, _>("number")? as u64,
                bytes_b256(row.try_get::<&[u8], _>("hash")?)?,
            );
        }
        let head = self
            .block_by_number(self.head_number().await?)
            .await?
            .ok_or_else(|| StoreError::Corrupt("no head block: run genesis first".into()))?;
        Ok((state, head.header, head.hash))
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
        let hashes: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT hash FROM transactions WHERE block_number = $1 ORDER BY idx",
        )
        .bind(to_i64(number))
        .fetch_all(&self.pool)
        .await?;
        Ok(Some(StoredBlock {
            hash: bytes_b256(row.try_get::<&[u8], _>("hash")?)?,
            header,
            transactions: hashes.iter().map(|h| bytes_b256(h)).collect::<Result<_>>()?,
        }))
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

    /// An included transaction with its receipt.
    pub async fn transaction(&self, hash: B256) -> Result<Option<StoredTransaction>> {
        let rows = self.transactions_where("t.hash = $1", hash.as_slice()).await?;
        Ok(rows.into_iter().next())
    }

    /// All transactions of a block, in order, with receipts.
    pub async fn block_transactions(&self, number: u64) -> Result<Vec<StoredTransaction>> {
        self.transactions_where("t.block_number = $1", to_i64(number)).await
    }

    async fn transactions_where<'q, T>(
        &self,
        filter: &str,
        value: T,
    ) -> Result<Vec<StoredTransaction>>
    where
        T: 'q + sqlx::Encode<'q, Postgres> + sqlx::Type<Postgres> + Send,
    {
        let sql = format!(
            "SELECT t.hash, t.raw, t.sender, t.block_number, b.hash AS block_hash, t.idx, t.receipt,
                    t.gas_used, t.effective_gas_price, t.contract_address, t.first_log_index
             FROM transactions t JOIN blocks b ON b.number = t.block_number
             WHERE {filter} ORDER BY t.block_number, t.idx"
        );
        // `filter` is one of this module's constant strings, never request input.
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(value).fetch_all(&self.pool).await?;
        rows.into_iter()
            .map(|row| {
                let receipt =
                    ReceiptEnvelope::decode_2718(&mut row.try_get::<&[u8], _>("receipt")?)
                        .map_err(|e| StoreError::Corrupt(format!("receipt: {e}")))?;
                Ok(StoredTransaction {
                    hash: bytes_b256(row.try_get::<&[u8], _>("hash")?)?,
                    raw: Bytes::copy_from_slice(row.try_get::<&[u8], _>("raw")?),
                    sender: bytes_address(row.try_get("sender")?)?,
                    block_number: row.try_get::<i64, _>("block_number")? as u64,
                    block_hash: bytes_b256(row.try_get::<&[u8], _>("block_hash")?)?,
                    index: row.try_get::<i32, _>("idx")? as u64,
                    receipt,
                    gas_used: row.try_get::<i64, _>("gas_used")? as u64,
                    effective_gas_price: bytes_u256(
                        row.try_get::<&[u8], _>("effective_gas_price")?,
                    )?
                    .saturating_to(),
                    contract_address: row
                        .try_get::<Option<&[u8]>, _>("contract_address")?
                        .map(Address::from_slice),
                    first_log_index: row.try_get::<i32, _>("first_log_index")? as u64,
                })
            })
            .collect()
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
        let done = sqlx::query("DELETE FROM state_diffs WHERE block_number < $1")
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
        let Some(row) = row else { return Ok(None) };
        let corrupt =
            |e: &dyn std::fmt::Display| StoreError::Corrupt(format!("diff {number}: {e}"));
        if let Some(encoded) = row.try_get::<Option<&[u8]>, _>("encoded")? {
            return StateDiff::decode_binary(encoded).map(Some).map_err(|e| corrupt(&e));
        }
        // Written before binary diffs (migration 2).
        let json: serde_json::Value = row.try_get("diff")?;
        serde_json::from_value(json).map(Some).map_err(|e| corrupt(&e))
    }
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
) -> Result<()> {
    let mut rlp = Vec::with_capacity(600);
    header.encode(&mut rlp);
    sqlx::query(
        "INSERT INTO blocks (number, hash, parent_hash, header, timestamp, gas_used, base_fee, tx_count)
         VALUES ($1, $2, $3, $4, $5, $6, $7,
                 0)",
    )
    .bind(to_i64(header.number))
    .bind(hash.as_slice())
    .bind(header.parent_hash.as_slice())
    .bind(rlp)
    .bind(to_i64(header.timestamp))
    .bind(to_i64(header.gas_used))
    .bind(to_i64(header.base_fee_per_gas.unwrap_or_default()))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn insert_transactions(
    tx: &mut Transaction<'_, Postgres>,
    block: &SealedBlock,
    senders: &[Address],
) -> Result<()> {
    let executed = &block.block;
    let count = executed.transactions.len();
    if count == 0 {
        return Ok(());
    }
    let mut hashes = Vec::with_capacity(count);
    let mut indexes = Vec::with_capacity(count);
    let mut raws = Vec::with_capacity(count);
    let mut receipts = Vec::with_capacity(count);
    let mut gas = Vec::with_capacity(count);
    let mut prices = Vec::with_capacity(count);
    let mut created = Vec::with_capacity(count);
    let mut first_logs = Vec::with_capacity(count);
    let mut log_index = 0i32;
    for (i, ((t, receipt), outcome)) in
        executed.transactions.iter().zip(&executed.receipts).zip(&executed.outcomes).enumerate()
    {
        hashes.push(t.inner().tx_hash().to_vec());
        indexes.push(i as i32);
        raws.push(t.inner().encoded_2718());
        receipts.push(receipt.encoded_2718());
        gas.push(to_i64(outcome.gas_used));
        prices.push(u256_bytes(U256::from(outcome.effective_gas_price)));
        created.push(outcome.contract_address.map(|a| a.to_vec()));
        first_logs.push(log_index);
        log_index += receipt.logs().len() as i32;
    }
    let sender_bytes: Vec<&[u8]> = senders.iter().map(|s| s.as_slice()).collect();
    sqlx::query(
        "INSERT INTO transactions (hash, block_number, idx, sender, raw, receipt, gas_used,
                                   effective_gas_price, contract_address, first_log_index)
         SELECT d.hash, $1, d.idx, d.sender, d.raw, d.receipt, d.gas_used, d.price, d.created, d.first_log
         FROM UNNEST($2::bytea[], $3::int[], $4::bytea[], $5::bytea[], $6::bytea[], $7::bigint[],
                     $8::bytea[], $9::bytea[], $10::int[])
              AS d(hash, idx, sender, raw, receipt, gas_used, price, created, first_log)",
    )
    .bind(to_i64(executed.header.number))
    .bind(&hashes)
    .bind(&indexes)
    .bind(&sender_bytes)
    .bind(&raws)
    .bind(&receipts)
    .bind(&gas)
    .bind(&prices)
    .bind(&created)
    .bind(&first_logs)
    .execute(&mut **tx)
    .await?;
    sqlx::query("UPDATE blocks SET tx_count = $2 WHERE number = $1")
        .bind(to_i64(executed.header.number))
        .bind(count as i32)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Writes a diff's new values into the head-state tables.
async fn write_state(tx: &mut Transaction<'_, Postgres>, diff: &StateDiff) -> Result<()> {
    let (mut upsert_addr, mut upsert_nonce, mut upsert_balance, mut upsert_code) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut removed = Vec::new();
    let mut cleared = Vec::new();
    let (mut slot_addr, mut slot_key, mut slot_value) = (Vec::new(), Vec::new(), Vec::new());
    let (mut zero_addr, mut zero_key) = (Vec::new(), Vec::new());
    for (address, change) in &diff.accounts {
        match change.after {
            Some(after) => {
                upsert_addr.push(address.to_vec());
                upsert_nonce.push(to_i64(after.nonce));
                upsert_balance.push(u256_bytes(after.balance));
                upsert_code.push(after.code_hash.to_vec());
            }
            None => removed.push(address.to_vec()),
        }
        if change.storage_cleared || change.after.is_none() {
            cleared.push(address.to_vec());
        }
        for (slot, value) in &change.storage {
            if value.after.is_zero() {
                zero_addr.push(address.to_vec());
                zero_key.push(u256_bytes(*slot));
            } else {
                slot_addr.push(address.to_vec());
                slot_key.push(u256_bytes(*slot));
                slot_value.push(u256_bytes(value.after));
            }
        }
    }
    if !diff.code.is_empty() {
        let hashes: Vec<&[u8]> = diff.code.keys().map(|h| h.as_slice()).collect();
        let codes: Vec<&[u8]> = diff.code.values().map(|c| c.as_ref()).collect();
        sqlx::query(
            "INSERT INTO code (hash, code) SELECT * FROM UNNEST($1::bytea[], $2::bytea[])
             ON CONFLICT (hash) DO NOTHING",
        )
        .bind(&hashes)
        .bind(&codes)
        .execute(&mut **tx)
        .await?;
    }
    if !removed.is_empty() {
        sqlx::query("DELETE FROM accounts WHERE address = ANY($1)")
            .bind(&removed)
            .execute(&mut **tx)
            .await?;
    }
    if !cleared.is_empty() {
        sqlx::query("DELETE FROM storage WHERE address = ANY($1)")
            .bind(&cleared)
            .execute(&mut **tx)
            .await?;
    }
    if !upsert_addr.is_empty() {
        sqlx::query(
            "INSERT INTO accounts (address, nonce, balance, code_hash)
             SELECT * FROM UNNEST($1::bytea[], $2::bigint[], $3::bytea[], $4::bytea[])
             ON CONFLICT (address) DO UPDATE
             SET nonce = EXCLUDED.nonce, balance = EXCLUDED.balance, code_hash = EXCLUDED.code_hash",
        )
        .bind(&upsert_addr)
        .bind(&upsert_nonce)
        .bind(&upsert_balance)
        .bind(&upsert_code)
        .execute(&mut **tx)
        .await?;
    }
    if !zero_addr.is_empty() {
        sqlx::query(
            "DELETE FROM storage s USING UNNEST($1::bytea[], $2::bytea[]) AS d(address, slot)
             WHERE s.address = d.address AND s.slot = d.slot",
        )
        .bind(&zero_addr)
        .bind(&zero_key)
        .execute(&mut **tx)
        .await?;
    }
    if !slot_addr.is_empty() {
        sqlx::query(
            "INSERT INTO storage (address, slot, value)
             SELECT * FROM UNNEST($1::bytea[], $2::bytea[], $3::bytea[])
             ON CONFLICT (address, slot) DO UPDATE SET value = EXCLUDED.value",
        )
        .bind(&slot_addr)
        .bind(&slot_key)
        .bind(&slot_value)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
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
