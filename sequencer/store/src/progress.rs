//! Progress of the L1-facing roles: batches and state-root proposals.
//!
//! A batch row is written before it is posted and never changes afterwards,
//! so a restarted batcher posts exactly the same bytes; the posted marks say
//! what L1 has confirmed.

use crate::{Result, Store, StoreError, bytes_address, bytes_b256, to_i64};
use alloy_primitives::{B256, Bytes};
use sqlx::Row;

/// A batch as the batcher recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRecord {
    /// Index in the settlement contract's batch list.
    pub index: u64,
    /// First L2 block in the batch.
    pub first_block: u64,
    /// Last L2 block in the batch.
    pub last_block: u64,
    /// The encoded, compressed batch.
    pub data: Bytes,
    /// keccak256 of `data` (what the contract records).
    pub data_hash: B256,
    /// The L1 transaction that appended it, once posted.
    pub l1_tx_hash: Option<B256>,
    /// The L1 block it landed in, once posted.
    pub l1_block: Option<u64>,
}

/// A state-root proposal as the proposer recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProposalRecord {
    /// L2 block number.
    pub l2_block: u64,
    /// Its block hash.
    pub block_hash: B256,
    /// Its state root.
    pub state_root: B256,
    /// The L1 transaction.
    pub l1_tx_hash: B256,
}

impl Store {
    /// The newest batch, posted or not.
    pub async fn latest_batch(&self) -> Result<Option<BatchRecord>> {
        self.one_batch("TRUE ORDER BY idx DESC").await
    }

    /// The oldest batch not yet on L1.
    pub async fn first_unposted_batch(&self) -> Result<Option<BatchRecord>> {
        self.one_batch("l1_tx_hash IS NULL ORDER BY idx").await
    }

    /// Forgets the L1 inclusion of batches from `index` on (L1 lost them in a
    /// reorg or a reset); they will be posted again with the same bytes.
    pub async fn unmark_batches_from(&self, index: u64) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE batches SET l1_tx_hash = NULL, l1_block = NULL, posted_at = NULL
             WHERE idx >= $1 AND l1_tx_hash IS NOT NULL",
        )
        .bind(to_i64(index))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn one_batch(&self, condition: &str) -> Result<Option<BatchRecord>> {
        let sql = format!(
            "SELECT idx, first_block, last_block, data, data_hash, l1_tx_hash, l1_block
             FROM batches WHERE {condition} LIMIT 1"
        );
        // `condition` is one of this module's constant strings.
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_optional(&self.pool).await?;
        row.map(|row| {
            Ok(BatchRecord {
                index: row.try_get::<i64, _>("idx")? as u64,
                first_block: row.try_get::<i64, _>("first_block")? as u64,
                last_block: row.try_get::<i64, _>("last_block")? as u64,
                data: Bytes::copy_from_slice(row.try_get::<&[u8], _>("data")?),
                data_hash: bytes_b256(row.try_get::<&[u8], _>("data_hash")?)?,
                l1_tx_hash: row
                    .try_get::<Option<&[u8]>, _>("l1_tx_hash")?
                    .map(bytes_b256)
                    .transpose()?,
                l1_block: row.try_get::<Option<i64>, _>("l1_block")?.map(|n| n as u64),
            })
        })
        .transpose()
    }

    /// Records a new batch before it is posted. Idempotent for identical rows.
    pub async fn insert_batch(&self, batch: &BatchRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO batches (idx, first_block, last_block, data, data_hash)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (idx) DO NOTHING",
        )
        .bind(to_i64(batch.index))
        .bind(to_i64(batch.first_block))
        .bind(to_i64(batch.last_block))
        .bind(batch.data.as_ref())
        .bind(batch.data_hash.as_slice())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Marks a batch as appended on L1.
    pub async fn mark_batch_posted(
        &self,
        index: u64,
        l1_tx_hash: B256,
        l1_block: u64,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE batches SET l1_tx_hash = $2, l1_block = $3, posted_at = now() WHERE idx = $1",
        )
        .bind(to_i64(index))
        .bind(l1_tx_hash.as_slice())
        .bind(to_i64(l1_block))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The last L2 block whose batch is on L1 (0 when none is).
    pub async fn last_posted_block(&self) -> Result<u64> {
        let n: Option<i64> =
            sqlx::query_scalar("SELECT max(last_block) FROM batches WHERE l1_tx_hash IS NOT NULL")
                .fetch_one(&self.pool)
                .await?;
        Ok(n.unwrap_or(0) as u64)
    }

    /// Number of batches not yet on L1.
    pub async fn unposted_batches(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM batches WHERE l1_tx_hash IS NULL")
            .fetch_one(&self.pool)
            .await?)
    }

    /// Raw transactions of blocks `from..=to`, grouped by block, with timestamps.
    pub async fn blocks_for_batch(
        &self,
        from: u64,
        to: u64,
    ) -> Result<Vec<(u64, u64, Vec<Bytes>)>> {
        let blocks = sqlx::query(
            "SELECT b.number, b.timestamp, bb.body FROM blocks b
             LEFT JOIN block_bodies bb ON bb.number = b.number
             WHERE b.number BETWEEN $1 AND $2 ORDER BY b.number",
        )
        .bind(to_i64(from))
        .bind(to_i64(to))
        .fetch_all(&self.pool)
        .await?;
        blocks
            .iter()
            .map(|row| {
                let number = row.try_get::<i64, _>("number")? as u64;
                let raws = match row.try_get::<Option<&[u8]>, _>("body")? {
                    Some(body) => crate::body::raw_transactions(number, body)?,
                    None => Vec::new(),
                };
                Ok((number, row.try_get::<i64, _>("timestamp")? as u64, raws))
            })
            .collect()
    }

    /// The newest recorded proposal.
    pub async fn latest_proposal(&self) -> Result<Option<ProposalRecord>> {
        let row = sqlx::query(
            "SELECT l2_block, block_hash, state_root, l1_tx_hash FROM proposals
             ORDER BY l2_block DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(ProposalRecord {
                l2_block: row.try_get::<i64, _>("l2_block")? as u64,
                block_hash: bytes_b256(row.try_get::<&[u8], _>("block_hash")?)?,
                state_root: bytes_b256(row.try_get::<&[u8], _>("state_root")?)?,
                l1_tx_hash: bytes_b256(row.try_get::<&[u8], _>("l1_tx_hash")?)?,
            })
        })
        .transpose()
    }

    /// Records a proposal made on L1.
    pub async fn record_proposal(&self, proposal: &ProposalRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO proposals (l2_block, block_hash, state_root, l1_tx_hash)
             VALUES ($1, $2, $3, $4) ON CONFLICT (l2_block) DO NOTHING",
        )
        .bind(to_i64(proposal.l2_block))
        .bind(proposal.block_hash.as_slice())
        .bind(proposal.state_root.as_slice())
        .bind(proposal.l1_tx_hash.as_slice())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// Where a transaction is in its life, as `rollup_getTransactionStatus` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionLifecycle {
    /// Stage name: `received`, `queued` (waits for a missing nonce),
    /// `sequenced`, `batched`, `posted`, `finalized` or `dropped`.
    pub stage: &'static str,
    /// Its block, once sequenced.
    pub block_number: Option<u64>,
    /// Its batch, once batched.
    pub batch_index: Option<u64>,
    /// The L1 transaction carrying its batch, once posted.
    pub l1_tx_hash: Option<B256>,
    /// The L1 block holding its batch, once posted.
    pub l1_block: Option<u64>,
    /// Why it was dropped.
    pub drop_reason: Option<String>,
}

impl Store {
    /// Records the newest L1 block L1 reports `finalized` (never moves back).
    pub async fn set_l1_finalized_block(&self, number: u64) -> Result<()> {
        sqlx::query(
            "INSERT INTO chain_meta (key, value) VALUES ('l1_finalized_block', $1)
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value
             WHERE chain_meta.value::bigint < EXCLUDED.value::bigint",
        )
        .bind(number.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The newest finalized L1 block recorded by the batcher, if any.
    pub async fn l1_finalized_block(&self) -> Result<Option<u64>> {
        let value: Option<String> =
            sqlx::query_scalar("SELECT value FROM chain_meta WHERE key = 'l1_finalized_block'")
                .fetch_optional(&self.pool)
                .await?;
        value
            .map(|v| {
                v.parse().map_err(|_| StoreError::Corrupt(format!("l1_finalized_block {v:?}")))
            })
            .transpose()
    }

    /// The lifecycle of a transaction the mempool has seen.
    ///
    /// A pending transaction is `queued` while a lower nonce of its sender is
    /// missing (neither in the state nor pending), else `received`. A posted
    /// one is `finalized` once its batch's L1 block is final on L1.
    pub async fn transaction_lifecycle(&self, hash: B256) -> Result<Option<TransactionLifecycle>> {
        if let Some(included) = self.transaction(hash).await? {
            return self.included_lifecycle(included.block_number).await.map(Some);
        }
        let row = sqlx::query(
            "SELECT m.status, m.sender, m.nonce, m.drop_reason,
                    (SELECT a.nonce FROM accounts a WHERE a.address = m.sender) AS state_nonce
             FROM mempool m WHERE m.tx_hash = $1",
        )
        .bind(hash.as_slice())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let stage = match row.try_get::<i16, _>("status")? {
            0 => {
                let sender = bytes_address(row.try_get("sender")?)?;
                let nonce = row.try_get::<i64, _>("nonce")? as u64;
                let state_nonce = row.try_get::<Option<i64>, _>("state_nonce")?.unwrap_or(0);
                let ready_up_to = self.pending_nonce(sender, state_nonce as u64).await?;
                if nonce > ready_up_to { "queued" } else { "received" }
            }
            _ => "dropped",
        };
        Ok(Some(TransactionLifecycle {
            stage,
            block_number: None,
            batch_index: None,
            l1_tx_hash: None,
            l1_block: None,
            drop_reason: row.try_get("drop_reason")?,
        }))
    }

    /// The lifecycle of a transaction included in block `block_number`.
    async fn included_lifecycle(&self, block_number: u64) -> Result<TransactionLifecycle> {
        let row = sqlx::query(
            "SELECT b.idx, b.l1_tx_hash, b.l1_block,
                    (SELECT value::bigint FROM chain_meta WHERE key = 'l1_finalized_block')
                        AS l1_finalized
             FROM (SELECT 1) AS one
             LEFT JOIN batches b ON $1 BETWEEN b.first_block AND b.last_block",
        )
        .bind(to_i64(block_number))
        .fetch_one(&self.pool)
        .await?;
        let batch_index = row.try_get::<Option<i64>, _>("idx")?.map(|n| n as u64);
        let l1_tx_hash =
            row.try_get::<Option<&[u8]>, _>("l1_tx_hash")?.map(bytes_b256).transpose()?;
        let l1_block = row.try_get::<Option<i64>, _>("l1_block")?.map(|n| n as u64);
        let l1_finalized = row.try_get::<Option<i64>, _>("l1_finalized")?.map(|n| n as u64);
        let stage = match (batch_index, l1_tx_hash) {
            (None, _) => "sequenced",
            (Some(_), None) => "batched",
            (Some(_), Some(_)) => match (l1_block, l1_finalized) {
                (Some(block), Some(finalized)) if block <= finalized => "finalized",
                _ => "posted",
            },
        };
        Ok(TransactionLifecycle {
            stage,
            block_number: Some(block_number),
            batch_index,
            l1_tx_hash,
            l1_block,
            drop_reason: None,
        })
    }
}
