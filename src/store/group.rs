//! Writes in groups: items that arrive while earlier groups are being written go
//! together in the next one (one transaction, often one statement). Each caller still
//! waits for its own item's result; a few groups are written at once, so one slow
//! write does not hold everything behind it. PostgreSQL's webhook inserts and every
//! worker's outcomes use it.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::StoreError;

type Reply<O> = oneshot::Sender<Result<O, StoreError>>;

/// Hands items to the grouping task.
pub struct Grouped<I, O> {
    queue: mpsc::UnboundedSender<(I, Reply<O>)>,
}

impl<I, O> Clone for Grouped<I, O> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
        }
    }
}

impl<I: Send + 'static, O: Send + 'static> Grouped<I, O> {
    /// `write` writes one group and returns one result per item, in order. The task
    /// ends when `stop` is cancelled or every handle is dropped.
    pub fn start<F, Fut>(
        max_group: usize,
        concurrent: usize,
        stop: CancellationToken,
        write: F,
    ) -> Self
    where
        F: Fn(Vec<I>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<O>, StoreError>> + Send + 'static,
    {
        let (queue, pending) = mpsc::unbounded_channel();
        tokio::spawn(run(
            pending,
            max_group,
            concurrent.max(1),
            stop,
            Arc::new(write),
        ));
        Self { queue }
    }

    pub async fn submit(&self, item: I) -> Result<O, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((item, reply))
            .map_err(|_| StoreError::WriterStopped)?;
        answer.await.map_err(|_| StoreError::WriterStopped)?
    }
}

async fn run<I, O, F, Fut>(
    mut pending: mpsc::UnboundedReceiver<(I, Reply<O>)>,
    max_group: usize,
    concurrent: usize,
    stop: CancellationToken,
    write: Arc<F>,
) where
    I: Send + 'static,
    O: Send + 'static,
    F: Fn(Vec<I>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Vec<O>, StoreError>> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(concurrent));
    loop {
        // A free slot first: while every slot is writing, arrivals queue up and go
        // together in the next group.
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
        let mut group = vec![first];
        while group.len() < max_group {
            match pending.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        let write = write.clone();
        tokio::spawn(async move {
            let (items, replies): (Vec<I>, Vec<Reply<O>>) = group.into_iter().unzip();
            match write(items).await {
                Ok(results) => {
                    for (reply, result) in replies.into_iter().zip(results) {
                        let _ = reply.send(Ok(result));
                    }
                }
                Err(error) => answer_all_with(replies, error),
            }
            drop(slot);
        });
    }
}

/// Nothing of the group was written: each caller is told so, with the one cause.
fn answer_all_with<O>(replies: Vec<Reply<O>>, error: StoreError) {
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
