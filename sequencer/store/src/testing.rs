//! Test support: a fresh database per test on one throwaway cluster.
//!
//! `make test` starts one cluster for the whole run and exports its admin URL
//! as `ROLLUP_TEST_PG_URL`; each test then creates its own database there.
//! Without the variable (plain `cargo test`), each test starts a private
//! cluster of its own, stopped when the [`TestDatabase`] drops.

use crate::Store;
use rollup_devnet::{Postgres, PostgresOptions, free_port};
use sqlx::{Connection, PgConnection};
use std::sync::atomic::{AtomicU32, Ordering};

/// A migrated database for one test.
#[derive(Debug)]
pub struct TestDatabase {
    /// The database's URL.
    pub url: String,
    /// A store connected to it.
    pub store: Store,
    _cluster: Option<Postgres>,
}

impl TestDatabase {
    /// Creates a fresh, migrated database.
    pub async fn new() -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let (admin_url, cluster) = match std::env::var("ROLLUP_TEST_PG_URL") {
            Ok(url) => (url, None),
            Err(_) => {
                let port = free_port().expect("free port");
                // On the test's own thread: the parent-death signal fires when
                // the spawning thread ends.
                let cluster = Postgres::start(PostgresOptions::throwaway(port))
                    .expect("start a throwaway Postgres cluster");
                (cluster.url("postgres"), Some(cluster))
            }
        };
        let name = format!(
            "test_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0)
        );
        let mut admin = PgConnection::connect(&admin_url).await.expect("connect to test cluster");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("create test database");
        let url = match admin_url.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{name}"),
            None => panic!("bad admin url {admin_url}"),
        };
        let store = Store::connect(&url, 8).await.expect("connect to test database");
        store.migrate().await.expect("migrate");
        Self { url, store, _cluster: cluster }
    }
}
