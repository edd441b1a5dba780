//! Group commit of admitted transactions. Submissions wait on one channel; a
//! single dispatcher takes everything queued (up to a limit) as one group and
//! stores it in one database transaction, then acknowledges every submitter.
//! At most [`COMMITS_IN_FLIGHT`] groups commit at once: while one does, new
//! submissions gather in the channel and leave together as soon as it
//! finishes, so the group size follows the load (one transaction when idle,
//! hundreds under load). A transaction is acknowledged only after its
//! commit.

use rollup_store::{NewTransaction, Store};
use std::sync::Arc;
use tokio::sync::{Semaphore, mpsc, oneshot};

/// Most transactions stored in one round trip.
pub const MAX_GROUP: usize = 2_000;
/// Group commits in flight at once. One: what arrives during a commit
/// (its round trip and fsync) joins the next group, so groups are as large
/// as the load allows and Postgres pays its per-commit cost least often.
/// Two overlapped one commit's fsync with the next one's round trip but
/// halved the groups; with single requests on two cores, one slot took 7%
/// more transactions a second for less Postgres CPU, and batches the same
/// (docs/decisions.md, "Ingress: where the CPU goes").
pub const COMMITS_IN_FLIGHT: usize = 1;
/// Submissions that may wait for a commit before callers are told the node
/// is overloaded.
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
    /// Starts the dispatcher. `store` should have a connection for each of
    /// the [`COMMITS_IN_FLIGHT`] commits.
    pub fn spawn(store: Store) -> Self {
        let (queue, receiver) = mpsc::channel(QUEUE_CAPACITY);
        tokio::spawn(dispatch(store, receiver));
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

/// Forms groups and starts their commits; returns when every [`Intake`]
/// handle is gone. Commits already started finish on their own.
async fn dispatch(store: Store, mut receiver: mpsc::Receiver<Submission>) {
    let slots = Arc::new(Semaphore::new(COMMITS_IN_FLIGHT));
    loop {
        // A free slot first: what arrives while every slot commits waits in
        // the channel and joins the next group.
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let Some(first) = receiver.recv().await else { return };
        let mut count = first.txs.len();
        let mut group = vec![first];
        while count < MAX_GROUP {
            match receiver.try_recv() {
                Ok(next) => {
                    count += next.txs.len();
                    group.push(next);
                }
                Err(_) => break,
            }
        }
        let store = store.clone();
        tokio::spawn(async move {
            commit(&store, group, count).await;
            drop(slot);
        });
    }
}

/// Stores one group in one database transaction and answers its submitters.
async fn commit(store: &Store, mut group: Vec<Submission>, count: usize) {
    let mut txs = Vec::with_capacity(count);
    for submission in &mut group {
        txs.append(&mut submission.txs);
    }
    let result =
        store.insert_transactions(&txs).await.map_err(|e| IntakeError::Database(e.to_string()));
    if let Err(error) = &result {
        tracing::warn!(%error, txs = txs.len(), "group commit failed");
    }
    for submission in group {
        let _ = submission.done.send(result.clone());
    }
}
