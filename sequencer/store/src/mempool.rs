//! Durable transaction intake and the block producer's view of pending work.

use crate::{Result, Store, bytes_address, bytes_b256, to_i64};
use alloy_primitives::{Address, B256, Bytes};
use sqlx::Row;

/// A validated transaction to store.
#[derive(Debug, Clone)]
pub struct NewTransaction {
    /// Transaction hash.
    pub hash: B256,
    /// Recovered sender.
    pub sender: Address,
    /// Nonce.
    pub nonce: u64,
    /// EIP-2718 encoding.
    pub raw: Bytes,
    /// The pending transaction (same sender and nonce) this one replaces.
    pub replaces: Option<B256>,
}

/// A stored transaction not yet included or dropped.
#[derive(Debug, Clone)]
pub struct PendingTransaction {
    /// Arrival order.
    pub seq: i64,
    /// Transaction hash.
    pub hash: B256,
    /// Recovered sender.
    pub sender: Address,
    /// Nonce.
    pub nonce: u64,
    /// EIP-2718 encoding.
    pub raw: Bytes,
}

/// Where a transaction is in its life, as the mempool table records it
/// (included transactions have left the mempool: see [`Store::transaction`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MempoolStatus {
    /// Waiting for a block.
    Pending,
    /// Dropped with a reason.
    Dropped(String),
}

/// Stores a group of new transactions; `$1..$4` are their hashes, senders,
/// nonces and raw bytes. Fails on a hash already stored: see [`INSERT`].
macro_rules! insert_new {
    () => {
        "INSERT INTO mempool (tx_hash, sender, nonce, raw)
         SELECT * FROM UNNEST($1::bytea[], $2::bytea[], $3::bigint[], $4::bytea[])"
    };
}

/// Marks the pending transactions `$5` dropped as replaced, atomically with
/// the insert that follows it.
///
/// Statements that find mempool rows by hash join on the unique hash index
/// (`FROM UNNEST(..) WHERE tx_hash = hash`) rather than filtering with
/// `tx_hash = ANY($n) AND status = 0`: under a generic plan over stale
/// statistics, the planner ran that filter as a bitmap AND of the whole
/// pending index with the hash index, visiting every pending row once per
/// statement. In the insert (it had this `UPDATE` even with no
/// replacements) that was half of Postgres' CPU under single requests.
macro_rules! replacing {
    () => {
        "WITH replaced AS (
             UPDATE mempool SET status = 2, drop_reason = 'replaced'
             FROM UNNEST($5::bytea[]) AS old (hash)
             WHERE mempool.tx_hash = old.hash AND mempool.status = 0
         ) "
    };
}

/// Ignores transactions already stored (identical resubmissions).
macro_rules! skip_stored {
    () => {
        " ON CONFLICT (tx_hash) DO NOTHING"
    };
}

/// The first try at storing a group: a plain insert, which fails with a
/// unique violation if a hash is already stored.
///
/// `ON CONFLICT DO NOTHING` inserts each row speculatively (an extra WAL
/// record and a second pass over the unique index per row): a fifth of the
/// insert's cost, paid on every row for a case that admission already
/// answers from memory (it returns the known hash without storing again).
/// Only a race reaches the database with a stored hash (the same bytes sent
/// twice within one group, or to two API processes), and then the group is
/// stored again with [`INSERT`].
const INSERT_NEW: &str = insert_new!();

/// [`INSERT_NEW`] that ignores hashes already stored.
const INSERT: &str = concat!(insert_new!(), skip_stored!());

/// [`INSERT_NEW`] that also drops the transactions it replaces.
const INSERT_NEW_REPLACING: &str = concat!(replacing!(), insert_new!());

/// [`INSERT`] that also drops the transactions it replaces.
const INSERT_REPLACING: &str = concat!(replacing!(), insert_new!(), skip_stored!());

/// Marks the still-pending transactions `$1` dropped as expired (by hash:
/// see [`INSERT_REPLACING`]).
const EXPIRE: &str = "UPDATE mempool SET status = 2, drop_reason = 'expired'
     FROM UNNEST($1::bytea[]) AS old (hash)
     WHERE mempool.tx_hash = old.hash AND mempool.status = 0";

/// Drops pending transaction `$1` with reason `$2`.
const DROP_PENDING: &str = "UPDATE mempool SET status = 2, drop_reason = $2
     WHERE tx_hash = $1 AND status = 0 RETURNING sender, nonce";

/// Sender `$1`'s nonce in the head-state tables (at least `$2`) and its
/// pending nonces from `$2` on.
///
/// The sender's rows are read through `mempool_sender_nonce` and filtered
/// by status outside an `OFFSET 0` subquery, which the planner keeps
/// whole: with `status = 0` beside the sender, a generic plan over stale
/// statistics took a bitmap AND with the partial pending index, reading
/// every pending entry on each `eth_getTransactionCount(.., "pending")`.
const PENDING_NONCES: &str =
    "SELECT GREATEST($2, (SELECT nonce FROM accounts WHERE address = $1)) AS base,
        ARRAY(SELECT DISTINCT sender_rows.nonce
              FROM (SELECT m.nonce, m.status FROM mempool m
                    WHERE m.sender = $1 AND m.nonce >= $2 OFFSET 0) AS sender_rows
              WHERE sender_rows.status = 0
              ORDER BY sender_rows.nonce LIMIT 10000) AS nonces";

/// The `$2` oldest pending transactions after arrival `$1`, reading only
/// those (see the function's migration).
const PENDING_IN_ORDER: &str =
    "SELECT seq, tx_hash, sender, nonce, raw FROM mempool_pending_in_order($1, $2)";

/// The hashes of pending transactions in arrival order, after a point.
const PENDING_HASHES_IN_ORDER: &str =
    "SELECT seq, tx_hash FROM mempool_pending_hashes_in_order($1, $2)";

impl Store {
    /// Stores transactions durably in one database transaction; identical
    /// resubmissions are ignored (the hash is unique) and replaced
    /// transactions are marked dropped. Returns once committed.
    pub async fn insert_transactions(&self, txs: &[NewTransaction]) -> Result<()> {
        if txs.is_empty() {
            return Ok(());
        }
        let hashes: Vec<&[u8]> = txs.iter().map(|t| t.hash.as_slice()).collect();
        let senders: Vec<&[u8]> = txs.iter().map(|t| t.sender.as_slice()).collect();
        let nonces: Vec<i64> = txs.iter().map(|t| to_i64(t.nonce)).collect();
        let raws: Vec<&[u8]> = txs.iter().map(|t| t.raw.as_ref()).collect();
        let replaced: Vec<&[u8]> =
            txs.iter().filter_map(|t| t.replaces.as_ref()).map(|h| h.as_slice()).collect();
        // One statement, so one round trip and atomic without BEGIN/COMMIT.
        let run = |statement| {
            let query =
                sqlx::query(statement).bind(&hashes).bind(&senders).bind(&nonces).bind(&raws);
            let query = if replaced.is_empty() { query } else { query.bind(&replaced) };
            query.execute(&self.pool)
        };
        let (first, again) = if replaced.is_empty() {
            (INSERT_NEW, INSERT)
        } else {
            (INSERT_NEW_REPLACING, INSERT_REPLACING)
        };
        match run(first).await {
            Err(sqlx::Error::Database(error)) if error.is_unique_violation() => {
                run(again).await?;
            }
            done => {
                done?;
            }
        }
        Ok(())
    }

    /// Drops one pending transaction with `reason`; returns its sender and
    /// nonce if it was pending.
    pub async fn drop_pending(&self, hash: B256, reason: &str) -> Result<Option<(Address, u64)>> {
        let row = sqlx::query(DROP_PENDING)
            .bind(hash.as_slice())
            .bind(reason)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| {
            Ok((bytes_address(row.try_get("sender")?)?, row.try_get::<i64, _>("nonce")? as u64))
        })
        .transpose()
    }

    /// Sets the operator's pause flag of block production.
    pub async fn set_sequencing_paused(&self, paused: bool) -> Result<()> {
        sqlx::query(
            "INSERT INTO chain_meta (key, value) VALUES ('sequencing_paused', $1)
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
        )
        .bind(paused.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Whether an operator paused block production.
    pub async fn sequencing_paused(&self) -> Result<bool> {
        let value: Option<String> =
            sqlx::query_scalar("SELECT value FROM chain_meta WHERE key = 'sequencing_paused'")
                .fetch_optional(&self.pool)
                .await?;
        Ok(value.as_deref() == Some("true"))
    }

    /// Marks still-pending transactions dropped as expired.
    pub async fn expire_transactions(&self, hashes: &[B256]) -> Result<u64> {
        let hashes: Vec<&[u8]> = hashes.iter().map(|h| h.as_slice()).collect();
        let done = sqlx::query(EXPIRE).bind(&hashes).execute(&self.pool).await?;
        Ok(done.rows_affected())
    }

    /// Up to `limit` pending transactions in arrival order, those that
    /// arrived after `after_seq` (a [`PendingTransaction::seq`]; 0 for the
    /// oldest).
    pub async fn pending_transactions(
        &self,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<PendingTransaction>> {
        let rows =
            sqlx::query(PENDING_IN_ORDER).bind(after_seq).bind(limit).fetch_all(&self.pool).await?;
        rows.into_iter()
            .map(|row| {
                Ok(PendingTransaction {
                    seq: row.try_get("seq")?,
                    hash: bytes_b256(row.try_get::<&[u8], _>("tx_hash")?)?,
                    sender: bytes_address(row.try_get("sender")?)?,
                    nonce: row.try_get::<i64, _>("nonce")? as u64,
                    raw: Bytes::copy_from_slice(row.try_get::<&[u8], _>("raw")?),
                })
            })
            .collect()
    }

    /// Up to `limit` pending transactions that arrived after `after_seq`,
    /// as (arrival order, hash), oldest first: what a pending-transaction
    /// filter reports.
    pub async fn pending_hashes(&self, after_seq: i64, limit: i64) -> Result<Vec<(i64, B256)>> {
        let rows = sqlx::query(PENDING_HASHES_IN_ORDER)
            .bind(after_seq)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|row| Ok((row.try_get("seq")?, bytes_b256(row.try_get::<&[u8], _>("tx_hash")?)?)))
            .collect()
    }

    /// The arrival order the latest transaction was given (0: none yet),
    /// read from the sequence: no table scan, and arrivals whose commit is
    /// still running count (they are after it either way).
    pub async fn latest_arrival(&self) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM mempool_seq_seq",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// Deletes dropped transactions that arrived more than `retention` ago
    /// (their lifecycle then reads as unknown); returns how many.
    pub async fn prune_dropped_transactions(&self, retention: std::time::Duration) -> Result<u64> {
        let done = sqlx::query(
            "DELETE FROM mempool
             WHERE status = 2 AND received_at < now() - make_interval(secs => $1)",
        )
        .bind(retention.as_secs_f64())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Number of pending transactions.
    pub async fn pending_count(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM mempool WHERE status = 0")
            .fetch_one(&self.pool)
            .await?)
    }

    /// The raw bytes and status of a mempool transaction.
    pub async fn mempool_transaction(
        &self,
        hash: B256,
    ) -> Result<Option<(Bytes, Address, MempoolStatus)>> {
        let row =
            sqlx::query("SELECT raw, sender, status, drop_reason FROM mempool WHERE tx_hash = $1")
                .bind(hash.as_slice())
                .fetch_optional(&self.pool)
                .await?;
        let Some(row) = row else { return Ok(None) };
        let status = match row.try_get::<i16, _>("status")? {
            0 => MempoolStatus::Pending,
            _ => MempoolStatus::Dropped(
                row.try_get::<Option<String>, _>("drop_reason")?.unwrap_or_default(),
            ),
        };
        Ok(Some((
            Bytes::copy_from_slice(row.try_get::<&[u8], _>("raw")?),
            bytes_address(row.try_get("sender")?)?,
            status,
        )))
    }

    /// The next nonce of `sender` as geth's `pending` counts it: from the
    /// sender's nonce (the larger of `state_nonce` and the state checkpoint's),
    /// past every consecutive nonce the mempool holds pending (a gap stops
    /// the count). Included transactions have left the mempool, so
    /// `state_nonce` must be the database head's: the RPC brings its view to
    /// the head first.
    pub async fn pending_nonce(&self, sender: Address, state_nonce: u64) -> Result<u64> {
        let row = sqlx::query(PENDING_NONCES)
            .bind(sender.as_slice())
            .bind(to_i64(state_nonce))
            .fetch_one(&self.pool)
            .await?;
        let mut next = row.try_get::<i64, _>("base")? as u64;
        for nonce in row.try_get::<Vec<i64>, _>("nonces")? {
            let nonce = nonce as u64;
            if nonce > next {
                break;
            }
            if nonce == next {
                next += 1;
            }
        }
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::{
        DROP_PENDING, EXPIRE, INSERT, INSERT_NEW_REPLACING, INSERT_REPLACING,
        PENDING_HASHES_IN_ORDER, PENDING_IN_ORDER, PENDING_NONCES,
    };
    use crate::testing::TestDatabase;
    use sqlx::{Connection, PgConnection};

    /// A connection to a mempool of 20,000 pending rows whose statistics
    /// were taken while it was empty (autovacuum off), as after a burst.
    async fn mempool_with_stale_statistics(db: &TestDatabase) -> PgConnection {
        let mut conn = PgConnection::connect(&db.url).await.unwrap();
        for setup in [
            "ALTER TABLE mempool SET (autovacuum_enabled = false)",
            "ANALYZE mempool",
            "INSERT INTO mempool (tx_hash, sender, nonce, raw)
             SELECT sha256(i::text::bytea), substring(sha256((i % 1000)::text::bytea), 1, 20),
                    i / 1000, '\\x00'
             FROM generate_series(1, 20000) AS i",
        ] {
            sqlx::query(setup).execute(&mut conn).await.unwrap();
        }
        conn
    }

    /// Entries of the pending index read so far in `tx`.
    async fn pending_index_entries_read(tx: &mut PgConnection) -> i64 {
        sqlx::query_scalar("SELECT pg_stat_get_xact_tuples_returned('mempool_pending'::regclass)")
            .fetch_one(tx)
            .await
            .unwrap()
    }

    /// The hash-keyed statements stay on the unique hash index as generic
    /// plans over stale statistics: never a walk of the pending index,
    /// which visits every pending row.
    #[tokio::test]
    async fn hash_keyed_statements_never_walk_the_pending_index() {
        let db = TestDatabase::new().await;
        let mut conn = mempool_with_stale_statistics(&db).await;
        sqlx::query("SET plan_cache_mode = force_generic_plan").execute(&mut conn).await.unwrap();
        for (name, statement, arguments) in [
            ("insert", INSERT, "'{}', '{}', '{}', '{}'"),
            ("insert_replacing", INSERT_REPLACING, "'{}', '{}', '{}', '{}', '{}'"),
            ("insert_new_replacing", INSERT_NEW_REPLACING, "'{}', '{}', '{}', '{}', '{}'"),
            ("expire", EXPIRE, "'{}'"),
            ("drop_pending", DROP_PENDING, "'\\x00', 'reason'"),
        ] {
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("PREPARE {name} AS {statement}")))
                .execute(&mut conn)
                .await
                .unwrap();
            let plan: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "EXPLAIN EXECUTE {name}({arguments})"
            )))
            .fetch_all(&mut conn)
            .await
            .unwrap();
            let plan = plan.join("\n");
            assert!(plan.contains("mempool_pkey"), "{name}:\n{plan}");
            assert!(!plan.contains("mempool_pending"), "{name}:\n{plan}");
        }
    }

    /// A sender's pending nonces are read through the sender's rows, never
    /// through the pending index, as a generic plan over stale statistics.
    #[tokio::test]
    async fn pending_nonces_never_walk_the_pending_index() {
        let db = TestDatabase::new().await;
        let mut conn = mempool_with_stale_statistics(&db).await;
        sqlx::query("SET plan_cache_mode = force_generic_plan").execute(&mut conn).await.unwrap();
        let mut tx = conn.begin().await.unwrap();
        let sender = "substring(sha256('5'::bytea), 1, 20)";
        for statement in [
            format!("PREPARE pending_nonces AS {PENDING_NONCES}"),
            format!("EXECUTE pending_nonces({sender}, 0)"),
        ] {
            sqlx::raw_sql(sqlx::AssertSqlSafe(statement)).execute(&mut *tx).await.unwrap();
        }
        let pending_entries_read = pending_index_entries_read(&mut tx).await;
        let plan: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "EXPLAIN EXECUTE pending_nonces({sender}, 0)"
        )))
        .fetch_all(&mut *tx)
        .await
        .unwrap();
        let plan = plan.join("\n");
        assert_eq!(pending_entries_read, 0, "{plan}");
        assert!(plan.contains("mempool_sender_nonce"), "{plan}");
    }

    /// The producer's read of the oldest pending transactions reads as many
    /// pending index entries as it returns, not every pending one, even
    /// when the statistics say the mempool is nearly empty.
    #[tokio::test]
    async fn the_oldest_pending_are_read_without_reading_the_rest() {
        let db = TestDatabase::new().await;
        let mut conn = mempool_with_stale_statistics(&db).await;
        for statement in [PENDING_IN_ORDER, PENDING_HASHES_IN_ORDER] {
            let mut tx = conn.begin().await.unwrap();
            // The backend's counts carry over until they are flushed.
            let before = pending_index_entries_read(&mut tx).await;
            for _ in 0..6 {
                // Past five runs a prepared statement may take a generic plan.
                let rows =
                    sqlx::query(statement).bind(0_i64).bind(100_i64).fetch_all(&mut *tx).await;
                assert_eq!(rows.unwrap().len(), 100);
            }
            let index_entries_read = pending_index_entries_read(&mut tx).await - before;
            assert!(
                index_entries_read <= 6 * 101,
                "{statement}: read {index_entries_read} entries"
            );
            tx.rollback().await.unwrap();
        }
    }
}
