//! Writing a block's state diff into the head-state tables (`accounts`,
//! `storage`, `code`).
//!
//! The diff says whether each account and slot existed before the block, so
//! rows are updated, inserted or deleted with plain statements over array
//! binds instead of `INSERT .. ON CONFLICT` upserts. Updates change no
//! indexed column and the tables leave free space on each page, so they stay
//! HOT (no index writes). Every statement checks its row count: a diff that
//! disagrees with the tables is a corrupt database, never a silent skip.

use crate::{Result, StoreError, to_i64, u256_bytes};
use rollup_executor::StateDiff;
use sqlx::{Postgres, Transaction};

/// Rows to write, gathered from one diff.
#[derive(Default)]
struct Rows {
    insert_accounts: AccountRows,
    update_accounts: AccountRows,
    removed_accounts: Vec<Vec<u8>>,
    cleared_storage: Vec<Vec<u8>>,
    insert_slots: SlotRows,
    update_slots: SlotRows,
    zeroed_slots: SlotRows,
}

#[derive(Default)]
struct AccountRows {
    address: Vec<Vec<u8>>,
    nonce: Vec<i64>,
    balance: Vec<Vec<u8>>,
    code_hash: Vec<Vec<u8>>,
}

#[derive(Default)]
struct SlotRows {
    address: Vec<Vec<u8>>,
    slot: Vec<Vec<u8>>,
    value: Vec<Vec<u8>>,
}

/// A statement being bound.
type PgQuery<'q> = sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>;

impl AccountRows {
    /// Binds the columns as `$1..$4`: address, nonce, balance, code hash.
    fn bind<'q>(&'q self, query: PgQuery<'q>) -> PgQuery<'q> {
        query.bind(&self.address).bind(&self.nonce).bind(&self.balance).bind(&self.code_hash)
    }
}

impl SlotRows {
    /// Binds the columns as `$1..$3`: address, slot, value.
    fn bind<'q>(&'q self, query: PgQuery<'q>) -> PgQuery<'q> {
        query.bind(&self.address).bind(&self.slot).bind(&self.value)
    }
}

impl Rows {
    fn of(diff: &StateDiff) -> Self {
        let mut rows = Self::default();
        for (address, change) in &diff.accounts {
            let address_bytes = address.to_vec();
            match (change.before.is_some(), change.after) {
                (true, None) => rows.removed_accounts.push(address_bytes.clone()),
                // Created and removed again within the diff: no row either way.
                (false, None) => {}
                (existed, Some(after)) => {
                    let target =
                        if existed { &mut rows.update_accounts } else { &mut rows.insert_accounts };
                    target.address.push(address_bytes.clone());
                    target.nonce.push(to_i64(after.nonce));
                    target.balance.push(u256_bytes(after.balance));
                    target.code_hash.push(after.code_hash.to_vec());
                }
            }
            let cleared = change.storage_cleared || change.after.is_none();
            if cleared {
                rows.cleared_storage.push(address_bytes.clone());
            }
            for (slot, value) in &change.storage {
                let target = match (value.after.is_zero(), cleared || value.before.is_zero()) {
                    (true, true) => continue,
                    (true, false) => &mut rows.zeroed_slots,
                    (false, true) => &mut rows.insert_slots,
                    (false, false) => &mut rows.update_slots,
                };
                target.address.push(address_bytes.clone());
                target.slot.push(u256_bytes(*slot));
                target.value.push(u256_bytes(value.after));
            }
        }
        rows
    }
}

/// Writes `diff`'s new values into the head-state tables.
pub(crate) async fn write(tx: &mut Transaction<'_, Postgres>, diff: &StateDiff) -> Result<()> {
    let rows = Rows::of(diff);
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
    if !rows.removed_accounts.is_empty() {
        let done = sqlx::query("DELETE FROM accounts WHERE address = ANY($1)")
            .bind(&rows.removed_accounts)
            .execute(&mut **tx)
            .await?;
        expect_rows("deleted accounts", done.rows_affected(), rows.removed_accounts.len())?;
    }
    if !rows.cleared_storage.is_empty() {
        sqlx::query("DELETE FROM storage WHERE address = ANY($1)")
            .bind(&rows.cleared_storage)
            .execute(&mut **tx)
            .await?;
    }
    let accounts = &rows.update_accounts;
    if !accounts.address.is_empty() {
        let done = accounts
            .bind(sqlx::query(
                "UPDATE accounts a
                 SET nonce = d.nonce, balance = d.balance, code_hash = d.code_hash
                 FROM UNNEST($1::bytea[], $2::bigint[], $3::bytea[], $4::bytea[])
                      AS d(address, nonce, balance, code_hash)
                 WHERE a.address = d.address",
            ))
            .execute(&mut **tx)
            .await?;
        expect_rows("updated accounts", done.rows_affected(), accounts.address.len())?;
    }
    let accounts = &rows.insert_accounts;
    if !accounts.address.is_empty() {
        accounts
            .bind(sqlx::query(
                "INSERT INTO accounts (address, nonce, balance, code_hash)
                 SELECT * FROM UNNEST($1::bytea[], $2::bigint[], $3::bytea[], $4::bytea[])",
            ))
            .execute(&mut **tx)
            .await?;
    }
    let slots = &rows.zeroed_slots;
    if !slots.address.is_empty() {
        let done = sqlx::query(
            "DELETE FROM storage s USING UNNEST($1::bytea[], $2::bytea[]) AS d(address, slot)
             WHERE s.address = d.address AND s.slot = d.slot",
        )
        .bind(&slots.address)
        .bind(&slots.slot)
        .execute(&mut **tx)
        .await?;
        expect_rows("zeroed slots", done.rows_affected(), slots.address.len())?;
    }
    let slots = &rows.update_slots;
    if !slots.address.is_empty() {
        let done = slots
            .bind(sqlx::query(
                "UPDATE storage s SET value = d.value
                 FROM UNNEST($1::bytea[], $2::bytea[], $3::bytea[]) AS d(address, slot, value)
                 WHERE s.address = d.address AND s.slot = d.slot",
            ))
            .execute(&mut **tx)
            .await?;
        expect_rows("updated slots", done.rows_affected(), slots.address.len())?;
    }
    let slots = &rows.insert_slots;
    if !slots.address.is_empty() {
        slots
            .bind(sqlx::query(
                "INSERT INTO storage (address, slot, value)
                 SELECT * FROM UNNEST($1::bytea[], $2::bytea[], $3::bytea[])",
            ))
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Fails unless a statement touched exactly the rows the diff names.
fn expect_rows(what: &str, affected: u64, expected: usize) -> Result<()> {
    if affected == expected as u64 {
        return Ok(());
    }
    Err(StoreError::Corrupt(format!(
        "{what}: the diff names {expected} rows, the head-state tables had {affected}"
    )))
}
