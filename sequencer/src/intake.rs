//! Group commit of admitted transactions: concurrent submissions wait on one
//! channel; a few committer tasks each take everything queued (up to a
//! limit) and store it in one database round trip, then acknowledge every
//! submitter. A transaction is acknowledged only after its commit.

use rollup_store::{NewTransaction, Store};
use std::sync::Arc;
use tokio::sync::{Mutex, mpsc, oneshot};

/// Most transactions stored in one round trip.
pub const MAX_GROUP: usize = 2_000;
/// Committer tasks (round trips in flight at once).
pub const COMMITTERS: usize = 4;
/// Submissions that may wait for a committer before callers are told the
/// node is overloaded.
pub const QUEUE_CAPACITY: usize = 50_000;

/// Why a submission was not stored.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum IntakeError {
    /// Too many submissions are waiting.
    #[error("too many pending submissions, retry later")]
    Overloaded,
    /// The database did not commit.
    #[error("database: {0}")]
    Database(String),
    /// The committers have stopped (shutting down).
    #[error("shutting down")]
    Closed,
}

struct Submission {
    txs: Vec<NewTransaction>,
    done: oneshot::Sender<Result<(), IntakeError>>,
}

/// Handle for submitting transactions; cheap to clone.
#[derive(Debug, Clone)]
pub struct Intake {
    queue: mpsc::Sender<Submission>,
}

impl std::fmt::Debug for Submission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Submission").field("txs", &self.txs.len()).finish()
    }
}

impl Intake {
    /// Starts the committers.
    pub fn spawn(store: Store) -> Self {
        let (queue, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..COMMITTERS {
            tokio::spawn(commit_loop(store.clone(), receiver.clone()));
        }
        Self { queue }
    }

    /// Stores `txs` durably; returns once they are committed.
    pub async fn submit(&self, txs: Vec<NewTransaction>) -> Result<(), IntakeError> {
        let (done, committed) = oneshot::channel();
        self.queue.try_send(Submission { txs, done }).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => IntakeError::Overloaded,
            mpsc::error::TrySendError::Closed(_) => IntakeError::Closed,
        })?;
        committed.await.map_err(|_| IntakeError::Closed)?
    }
}

async fn commit_loop(store: Store, receiver: Arc<Mutex<mpsc::Receiver<Submission>>>) {
    loop {
        let mut group: Vec<Submission> = Vec::new();
        let mut count = 0;
        {
            let mut receiver = receiver.lock().await;
            let Some(first) = receiver.recv().await else { return };
            count += first.txs.len();
            group.push(first);
            while count < MAX_GROUP {
                match receiver.try_recv() {
                    Ok(next) => {
                        count += next.txs.len();
                        group.push(next);
                    }
                    Err(_) => break,
                }
            }
        }
        let txs: Vec<NewTransaction> = group.iter().flat_map(|s| s.txs.iter().cloned()).collect();
        let result =
            store.insert_transactions(&txs).await.map_err(|e| IntakeError::Database(e.to_string()));
        if let Err(error) = &result {
            tracing::warn!(%error, txs = txs.len(), "group commit failed");
        }
        for submission in group {
            let _ = submission.done.send(result.clone());
        }
    }
}
