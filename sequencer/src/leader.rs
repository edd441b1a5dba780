//! Leader election of the block producer: a Postgres session-level advisory
//! lock. The holder produces; standbys retry every second and take over as
//! soon as the leader's session ends (its process died or lost the database).
//! Commits are fenced in the store, so even a deposed leader that still runs
//! cannot fork the chain.

use rollup_store::Store;
use sqlx::{Connection, PgConnection};
use std::time::Duration;

/// The advisory lock key of the block producer ("rollupPR" in ASCII).
pub const PRODUCER_LOCK_KEY: i64 = 0x726f_6c6c_7570_5052;

/// A held leadership: the lock lives as long as this connection.
#[derive(Debug)]
pub struct Leadership {
    connection: PgConnection,
}

impl Leadership {
    /// Tries once to become the leader (on a session of its own).
    pub async fn try_acquire(store: &Store) -> Result<Option<Self>, sqlx::Error> {
        let mut connection = PgConnection::connect_with(&store.pool().connect_options()).await?;
        let acquired: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(PRODUCER_LOCK_KEY)
            .fetch_one(&mut connection)
            .await?;
        Ok(acquired.then_some(Self { connection }))
    }

    /// Waits until this process leads, retrying every `retry`.
    pub async fn acquire(store: &Store, retry: Duration) -> Self {
        let mut announced = false;
        loop {
            match Self::try_acquire(store).await {
                Ok(Some(leadership)) => return leadership,
                Ok(None) if !announced => {
                    tracing::info!("another block producer leads; standing by");
                    announced = true;
                }
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "cannot reach the database to elect a leader"),
            }
            tokio::time::sleep(retry).await;
        }
    }

    /// Whether the lock's session is still alive, and so the lock still held
    /// (a session-level advisory lock ends only with its session).
    pub async fn still_held(&mut self) -> bool {
        let ping = self.connection.ping();
        matches!(tokio::time::timeout(Duration::from_secs(5), ping).await, Ok(Ok(())))
    }
}
