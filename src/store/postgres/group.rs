//! Group commit for PostgreSQL: webhooks that arrive while earlier ones are being
//! committed are inserted together, events and deliveries, in one statement and one
//! commit. Each request still waits for its own commit before it is answered; a few
//! batches run at once, so a slow commit does not hold everything behind it.

use std::sync::Arc;

use deadpool_postgres::Pool;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::queries;
use crate::store::{InsertOutcome, NewEvent, StoreError};

/// The most events one statement inserts.
const MAX_BATCH: usize = 256;

type Reply = oneshot::Sender<Result<InsertOutcome, StoreError>>;

/// Hands inserts to the batching task.
#[derive(Clone)]
pub struct GroupCommit {
    queue: mpsc::UnboundedSender<(NewEvent, Reply)>,
}

impl GroupCommit {
    /// `concurrent`: batches committed at the same time (connections used).
    pub fn start(pool: Pool, concurrent: usize, stop: CancellationToken) -> Self {
        let (queue, pending) = mpsc::unbounded_channel();
        tokio::spawn(run(pool, pending, concurrent.max(1), stop));
        Self { queue }
    }

    pub async fn insert(&self, event: NewEvent) -> Result<InsertOutcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((event, reply))
            .map_err(|_| StoreError::WriterStopped)?;
        answer.await.map_err(|_| StoreError::WriterStopped)?
    }
}

async fn run(
    pool: Pool,
    mut pending: mpsc::UnboundedReceiver<(NewEvent, Reply)>,
    concurrent: usize,
    stop: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(concurrent));
    loop {
        // Wait for a free slot first: while every slot is committing, arrivals queue
        // up and go together in the next batch.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let first = tokio::select! {
            () = stop.cancelled() => return,
            first = pending.recv() => match first {
                Some(first) => first,
                None => return,
            },
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match pending.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let pool = pool.clone();
        tokio::spawn(async move {
            commit(&pool, batch).await;
            drop(slot);
        });
    }
}

async fn commit(pool: &Pool, batch: Vec<(NewEvent, Reply)>) {
    let (events, replies): (Vec<NewEvent>, Vec<Reply>) = batch.into_iter().unzip();
    let outcomes = match pool.get().await {
        Ok(client) => queries::insert_events(&client, &events).await,
        Err(error) => Err(error.into()),
    };
    match outcomes {
        Ok(outcomes) => {
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(Ok(outcome));
            }
        }
        Err(error) => {
            // Nothing of the batch was committed: each request is told so, with the
            // one cause.
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
