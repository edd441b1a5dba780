//! Local infrastructure for the dev network and the tests: a private Postgres
//! cluster and an anvil L1 node, started as child processes and stopped when
//! their handle drops.
//!
//! Children get `PR_SET_PDEATHSIG`, so even a SIGKILL of the parent stops
//! them: Postgres with a fast shutdown (SIGINT), anvil with SIGTERM, after
//! which anvil writes its state file. Linux sends that signal when the
//! *thread* that spawned the child ends, so start them from a thread that
//! lives as long as they should (the main thread, a test's thread), never
//! from a pooled thread such as tokio's `spawn_blocking`.
//!
//! ```no_run
//! use rollup_devnet::{Postgres, PostgresOptions, free_port};
//! let pg = Postgres::start(PostgresOptions::throwaway(free_port()?))?;
//! println!("{}", pg.url("postgres"));
//! # Ok::<(), rollup_devnet::DevnetError>(())
//! ```

mod anvil;
mod postgres;
mod process;

pub use anvil::{Anvil, AnvilOptions, DEV_MNEMONIC, find_anvil, find_node_binary};
pub use postgres::{Postgres, PostgresOptions, pg_bin_dir, postgres_reachable_dir};
pub use process::{free_port, terminate_with_parent};

use std::path::PathBuf;

/// Errors starting or stopping local infrastructure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DevnetError {
    /// A file or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A program this needs is not installed.
    #[error("{0} not found; run `make dev` or `make test` once to install it")]
    NotInstalled(String),
    /// A command ran but failed.
    #[error("{command} failed: {detail}")]
    CommandFailed {
        /// The command.
        command: String,
        /// Its output or exit status.
        detail: String,
    },
    /// A server did not become ready in time.
    #[error("{what} did not become ready within {seconds}s; see {log}")]
    NotReady {
        /// The server.
        what: String,
        /// How long we waited.
        seconds: u64,
        /// Its log file.
        log: PathBuf,
    },
}

/// `Result` with [`DevnetError`].
pub type Result<T, E = DevnetError> = std::result::Result<T, E>;

pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> DevnetError {
    let context = context.into();
    move |source| DevnetError::Io { context, source }
}
