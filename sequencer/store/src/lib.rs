//! The rollup's Postgres store: one interface over the mempool, blocks,
//! receipts, state and the progress of every role.
//!
//! Every multi-step write happens in one database transaction; a block commit
//! is fenced (it must extend the current head), so a deposed producer can
//! never fork the chain. Migrations live in the workspace's `migrations/` and
//! are embedded here.
//!
//! - [`chain`]: genesis, block commits, head state and chain reads.
//! - [`mempool`]: durable transaction intake and the producer's pending view.
//! - [`progress`]: batches and state-root proposals, so restarts neither skip
//!   nor repeat L1 work.

mod body;
pub mod chain;
mod checkpoint;
pub mod failpoint;
mod head_state;
pub mod mempool;
pub mod progress;
#[cfg(feature = "test-utils")]
pub mod testing;

use alloy_primitives::{Address, B256, U256};
use sqlx::{PgPool, postgres::PgPoolOptions};

pub use chain::{StoredBlock, StoredTransaction};
pub use mempool::{MempoolStatus, NewTransaction, PendingTransaction};
pub use progress::{BatchRecord, ProposalRecord, TransactionLifecycle};

/// Errors from the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database failed or is unreachable (retryable).
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Applying migrations failed.
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A block did not extend the current head (another producer moved it).
    #[error("block {number} does not extend the head: {reason}")]
    NotOnHead {
        /// The block's number.
        number: u64,
        /// What the head is instead.
        reason: String,
    },
    /// The database belongs to another chain.
    #[error("database holds chain {found}, but the config is for chain {expected}")]
    WrongChain {
        /// From the config.
        expected: String,
        /// From the database.
        found: String,
    },
    /// Stored bytes do not decode (a bug or a corrupted row).
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

/// `Result` with [`StoreError`].
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The embedded migrations.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// Handle to the rollup's database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: PgPool,
    bodies: std::sync::Arc<body::BodyCache>,
}

impl Store {
    /// Connects with a pool of up to `max_connections`.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect(url)
            .await?;
        Ok(Self::from_pool(pool))
    }

    /// Wraps an existing pool.
    pub fn from_pool(pool: PgPool) -> Self {
        Self { pool, bodies: Default::default() }
    }

    /// Applies pending migrations.
    pub async fn migrate(&self) -> Result<()> {
        MIGRATOR.run(&self.pool).await?;
        body::convert_legacy_transactions(&self.pool).await
    }

    /// The connection pool.
    pub const fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }
}

pub(crate) fn u256_bytes(value: U256) -> Vec<u8> {
    value.to_be_bytes::<32>().to_vec()
}

pub(crate) fn bytes_u256(bytes: &[u8]) -> Result<U256> {
    if bytes.len() > 32 {
        return Err(StoreError::Corrupt(format!("{}-byte integer", bytes.len())));
    }
    Ok(U256::from_be_slice(bytes))
}

pub(crate) fn bytes_b256(bytes: &[u8]) -> Result<B256> {
    B256::try_from(bytes).map_err(|_| StoreError::Corrupt(format!("{}-byte hash", bytes.len())))
}

pub(crate) fn bytes_address(bytes: &[u8]) -> Result<Address> {
    Address::try_from(bytes)
        .map_err(|_| StoreError::Corrupt(format!("{}-byte address", bytes.len())))
}

pub(crate) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
