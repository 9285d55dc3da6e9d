//! Writes in groups: items that arrive while earlier groups are being written go
//! together in the next one (one transaction, often one statement). Each caller still
//! waits for its own item's result; a few groups are written at once, so one slow
//! write does not hold everything behind it. PostgreSQL's webhook inserts and every
//! worker's outcomes use it.
//!
//! A group that fails for its data (not because the database is unavailable) is
//! written again one item at a time, so one bad item never fails its neighbours.

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

impl<I: Clone + Send + 'static, O: Send + 'static> Grouped<I, O> {
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
    I: Clone + Send + 'static,
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
            write_group(&*write, items, replies).await;
            drop(slot);
        });
    }
}

/// Writes one group and answers each caller. A data error on a group of several is
/// not the others' error: each item is then written alone and answered with its own
/// result (the failed transaction wrote nothing).
async fn write_group<I, O, F, Fut>(write: &F, items: Vec<I>, replies: Vec<Reply<O>>)
where
    I: Clone,
    F: Fn(Vec<I>) -> Fut,
    Fut: Future<Output = Result<Vec<O>, StoreError>>,
{
    let alone = (items.len() > 1).then(|| items.clone());
    let error = match write(items).await {
        Ok(results) => return answer_each(replies, results),
        Err(error) => error,
    };
    match alone {
        Some(items) if !error.is_unavailable() => {
            tracing::warn!(
                component = "store",
                error = %crate::telemetry::error_chain(&error),
                "A group write failed for its data; writing its {} items one by one",
                items.len()
            );
            for (item, reply) in items.into_iter().zip(replies) {
                let result = write(vec![item])
                    .await
                    .and_then(|mut one| one.pop().ok_or(StoreError::WriterStopped));
                let _ = reply.send(result);
            }
        }
        _ => answer_all_with(replies, error),
    }
}

fn answer_each<O>(replies: Vec<Reply<O>>, results: Vec<O>) {
    for (reply, result) in replies.into_iter().zip(results) {
        let _ = reply.send(Ok(result));
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Fails a whole group for its data when it holds a negative item, as a statement
    /// with one bad row does.
    fn writer() -> Grouped<i32, i32> {
        Grouped::start(
            64,
            1,
            CancellationToken::new(),
            |items: Vec<i32>| async move {
                if items.iter().any(|&i| i < 0) {
                    Err(StoreError::Internal("bad row".into()))
                } else {
                    Ok(items.iter().map(|i| i * 10).collect())
                }
            },
        )
    }

    #[tokio::test]
    async fn a_bad_item_fails_alone_and_its_neighbours_are_written() {
        let grouped = writer();
        let results = futures_join(&grouped, &[1, -2, 3, 4]).await;
        assert_eq!(results[0].as_ref().ok(), Some(&10));
        assert!(matches!(results[1], Err(StoreError::Internal(_))));
        assert_eq!(results[2].as_ref().ok(), Some(&30));
        assert_eq!(results[3].as_ref().ok(), Some(&40));
    }

    #[tokio::test]
    async fn unavailability_fails_the_whole_group_without_retrying_it() {
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = calls.clone();
        let grouped: Grouped<i32, i32> =
            Grouped::start(64, 1, CancellationToken::new(), move |_items: Vec<i32>| {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async { Err(StoreError::Unavailable("down".into())) }
            });
        let results = futures_join(&grouped, &[1, 2, 3]).await;
        assert!(
            results
                .iter()
                .all(|r| matches!(r, Err(StoreError::Unavailable(_))))
        );
        // One group (or a few, as items arrived), never one write per item after a
        // failed group.
        assert!(calls.load(std::sync::atomic::Ordering::SeqCst) <= 3);
    }

    /// Submits every item at once, so that they share groups.
    async fn futures_join(
        grouped: &Grouped<i32, i32>,
        items: &[i32],
    ) -> Vec<Result<i32, StoreError>> {
        let pending: Vec<_> = items
            .iter()
            .map(|&i| {
                let grouped = grouped.clone();
                tokio::spawn(async move { grouped.submit(i).await })
            })
            .collect();
        let mut results = Vec::new();
        for task in pending {
            results.push(task.await.unwrap());
        }
        results
    }
}
