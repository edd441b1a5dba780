//! The head-state tables as a checkpoint of the diff log.
//!
//! A block commit writes the block's state diff (every changed account and
//! slot, old and new value) in the block's own database transaction: the diff
//! log is the durable record of the state. The `accounts`, `storage` and
//! `code` tables are a checkpoint of that log at block
//! `state_checkpoint.block_number`; [`Store::advance_state_checkpoint`] folds
//! the diffs after it into the tables, many blocks per database transaction,
//! off the block producer's critical path. Loading the head state reads the
//! checkpoint and replays the diffs above it (see docs/decisions.md, "Block
//! commit: per-block blobs, state checkpoint").

use crate::{Result, Store, StoreError, head_state, to_i64};
use rollup_executor::{MemoryState, StateDiff};
use sqlx::Row;

/// zstd level of state snapshots: the fastest; padding zeros and repeated
/// empty-trie hashes compress well even there.
const SNAPSHOT_ZSTD_LEVEL: i32 = 1;

/// Largest state snapshot decompressed (a corrupt header cannot make it
/// allocate more).
const MAX_SNAPSHOT_BYTES: u64 = 16 << 30;

/// Decompresses a stored state snapshot in one allocation (the frame header
/// holds the size).
pub(crate) fn decompress_snapshot(stored: &[u8]) -> Result<Vec<u8>> {
    let corrupt =
        |what: &dyn std::fmt::Display| StoreError::Corrupt(format!("state snapshot: {what}"));
    let size = zstd::zstd_safe::get_frame_content_size(stored)
        .ok()
        .flatten()
        .filter(|&size| size <= MAX_SNAPSHOT_BYTES)
        .ok_or_else(|| corrupt(&"no usable content size"))?;
    zstd::bulk::decompress(stored, size as usize).map_err(|e| corrupt(&e))
}

impl Store {
    /// Stores a snapshot of the state after block `number`
    /// ([`MemoryState::encode_snapshot`]), zstd-compressed, and deletes older
    /// ones.
    pub async fn save_state_snapshot(&self, number: u64, snapshot: &[u8]) -> Result<()> {
        let snapshot = zstd::bulk::compress(snapshot, SNAPSHOT_ZSTD_LEVEL)
            .map_err(|e| StoreError::Corrupt(format!("compress the state snapshot: {e}")))?;
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO state_snapshots (block_number, data) VALUES ($1, $2)
             ON CONFLICT (block_number) DO NOTHING",
        )
        .bind(to_i64(number))
        .bind(&snapshot)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM state_snapshots WHERE block_number < $1")
            .bind(to_i64(number))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The block the head-state tables reflect.
    pub async fn state_checkpoint(&self) -> Result<u64> {
        let number: i64 = sqlx::query_scalar("SELECT block_number FROM state_checkpoint")
            .fetch_one(&self.pool)
            .await?;
        Ok(number as u64)
    }

    /// Folds the diffs of up to `max_blocks` committed blocks after the
    /// checkpoint into the head-state tables, in one database transaction;
    /// returns the new checkpoint. Safe to run from several processes at
    /// once (the checkpoint row is locked) and to crash anywhere.
    pub async fn advance_state_checkpoint(&self, max_blocks: u64) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        let checkpoint: i64 =
            sqlx::query_scalar("SELECT block_number FROM state_checkpoint FOR UPDATE")
                .fetch_one(&mut *tx)
                .await?;
        let checkpoint = checkpoint as u64;
        let rows = sqlx::query(
            "SELECT block_number, encoded, diff FROM state_diffs
             WHERE block_number > $1 AND block_number <= $2 ORDER BY block_number",
        )
        .bind(to_i64(checkpoint))
        .bind(to_i64(checkpoint.saturating_add(max_blocks)))
        .fetch_all(&mut *tx)
        .await?;
        let mut composed: Option<StateDiff> = None;
        let mut through = checkpoint;
        for row in &rows {
            let number = row.try_get::<i64, _>("block_number")? as u64;
            if number != through + 1 {
                return Err(StoreError::Corrupt(format!(
                    "state diff of block {} is missing above the checkpoint",
                    through + 1
                )));
            }
            let diff = crate::chain::decode_diff(number, row)?;
            composed = Some(match composed {
                None => wipe_removed_storage(diff),
                Some(earlier) => compose(earlier, diff),
            });
            through = number;
        }
        let Some(composed) = composed else { return Ok(checkpoint) };
        head_state::write(&mut tx, &composed).await?;
        sqlx::query("UPDATE state_checkpoint SET block_number = $1")
            .bind(to_i64(through))
            .execute(&mut *tx)
            .await?;
        crate::failpoint::hit("checkpoint:before_commit");
        tx.commit().await?;
        Ok(through)
    }
}

/// `earlier` then `later`, as one diff for the tables.
fn compose(earlier: StateDiff, later: StateDiff) -> StateDiff {
    // The tables only need `before` to know whether a row exists, which the
    // earlier diff already says; a slot's pre-wipe value is never needed, so
    // an empty state stands in for the base state.
    match earlier.then(wipe_removed_storage(later), &MemoryState::new()) {
        Ok(composed) => composed,
        Err(never) => match never {},
    }
}

/// Marks the storage of every removed account wiped, so a later re-creation
/// in the same composed diff starts from empty storage in the tables too.
fn wipe_removed_storage(mut diff: StateDiff) -> StateDiff {
    for change in diff.accounts.values_mut() {
        if change.after.is_none() {
            change.storage_cleared = true;
        }
    }
    diff
}
