//! Outcomes written in groups: attempts that finish while earlier outcomes are being
//! written are recorded together, in one transaction (one statement on PostgreSQL).
//! Each attempt still waits for its own outcome to be committed.

use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::store::{FinishedAttempt, Store, StoreError};

/// The most outcomes one write records.
const MAX_GROUP: usize = 256;
/// Groups written at the same time.
const CONCURRENT: usize = 2;

type Reply = oneshot::Sender<Result<bool, StoreError>>;

#[derive(Clone)]
pub struct Recorder {
    queue: mpsc::UnboundedSender<(FinishedAttempt, Reply)>,
}

impl Recorder {
    /// Runs until every `Recorder` handle is dropped.
    pub fn start(store: Arc<dyn Store>) -> Self {
        let (queue, pending) = mpsc::unbounded_channel();
        tokio::spawn(run(store, pending));
        Self { queue }
    }

    /// Whether the lease still held when the outcome was written.
    pub async fn record(&self, finished: FinishedAttempt) -> Result<bool, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((finished, reply))
            .map_err(|_| StoreError::WriterStopped)?;
        answer.await.map_err(|_| StoreError::WriterStopped)?
    }
}

async fn run(
    store: Arc<dyn Store>,
    mut pending: mpsc::UnboundedReceiver<(FinishedAttempt, Reply)>,
) {
    let slots = Arc::new(Semaphore::new(CONCURRENT));
    let mut writing = tokio::task::JoinSet::new();
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let Some(first) = pending.recv().await else {
            break;
        };
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match pending.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        let store = store.clone();
        writing.spawn(async move {
            write(store.as_ref(), group).await;
            drop(slot);
        });
        while writing.try_join_next().is_some() {}
    }
    while writing.join_next().await.is_some() {}
}

async fn write(store: &dyn Store, group: Vec<(FinishedAttempt, Reply)>) {
    let (finished, replies): (Vec<_>, Vec<_>) = group.into_iter().unzip();
    match store.finish_attempts(finished).await {
        Ok(held) => {
            for (reply, held) in replies.into_iter().zip(held) {
                let _ = reply.send(Ok(held));
            }
        }
        Err(error) => {
            let unavailable = error.is_unavailable();
            let cause = Arc::new(error);
            for reply in replies {
                let shared = Box::new(cause.clone());
                let _ = reply.send(Err(if unavailable {
                    StoreError::Unavailable(shared)
                } else {
                    StoreError::Internal(shared)
                }));
            }
        }
    }
}
