//! The single SQLite writer: one thread owns the write connection and commits jobs in
//! batches (group commit). Each caller's future resolves only after the transaction
//! holding its job has committed, so many requests share one fsync and none is
//! answered early.

use std::sync::Arc;
use std::thread::JoinHandle;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use crate::store::StoreError;

/// Jobs committed together at most; bounds the latency a long queue adds to one commit.
const MAX_BATCH: usize = 1024;
/// Jobs waiting for the writer before callers are made to wait (backpressure).
const QUEUE_DEPTH: usize = 8192;

type CommitResult = Result<(), Arc<rusqlite::Error>>;
type Reply = Box<dyn FnOnce(CommitResult) + Send>;
/// Runs against the open transaction (or is told there is none) and returns how to
/// answer its caller once the commit's fate is known.
type Job = Box<dyn FnOnce(Option<&Connection>) -> Reply + Send>;

enum Message {
    Job(Job),
    Close,
}

pub struct Writer {
    queue: mpsc::Sender<Message>,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Writer {
    pub fn start(conn: Connection) -> std::io::Result<Self> {
        let (queue, receiver) = mpsc::channel(QUEUE_DEPTH);
        let thread = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || write_loop(conn, receiver))?;
        Ok(Self {
            queue,
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }

    /// Runs `work` inside the next batch's transaction; resolves after the commit.
    pub async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let outcome = conn.map(|conn| run_atomically(conn, work));
            Box::new(move |commit: CommitResult| {
                let result = match (commit, outcome) {
                    (Err(cause), _) => Err(StoreError::Unavailable(Box::new(cause))),
                    (Ok(()), Some(result)) => result.map_err(StoreError::from),
                    (Ok(()), None) => Err(StoreError::WriterStopped),
                };
                let _ = answer.send(result);
            })
        });
        self.queue
            .send(Message::Job(job))
            .await
            .map_err(|_| StoreError::WriterStopped)?;
        answered.await.map_err(|_| StoreError::WriterStopped)?
    }

    /// Commits what is queued, then stops the thread.
    pub async fn close(&self) {
        let _ = self.queue.send(Message::Close).await;
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

/// A job's statements apply together or not at all, without failing its batch-mates.
fn run_atomically<T>(
    conn: &Connection,
    work: impl FnOnce(&Connection) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    conn.prepare_cached("SAVEPOINT job")?.execute([])?;
    match work(conn) {
        Ok(value) => {
            conn.prepare_cached("RELEASE job")?.execute([])?;
            Ok(value)
        }
        Err(error) => {
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK TO job; RELEASE job");
            }
            Err(error)
        }
    }
}

fn write_loop(conn: Connection, mut receiver: mpsc::Receiver<Message>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    let mut replies: Vec<Reply> = Vec::with_capacity(MAX_BATCH);
    loop {
        let mut closing = false;
        match receiver.blocking_recv() {
            Some(Message::Job(job)) => batch.push(job),
            Some(Message::Close) | None => closing = true,
        }
        while !closing && batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(Message::Job(job)) => batch.push(job),
                Ok(Message::Close) => closing = true,
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            let commit = commit_batch(&conn, &mut batch, &mut replies);
            for reply in replies.drain(..) {
                reply(commit.clone());
            }
        }
        if closing {
            // Anything queued after the close is refused by dropping the receiver.
            return;
        }
    }
}

fn commit_batch(conn: &Connection, batch: &mut Vec<Job>, replies: &mut Vec<Reply>) -> CommitResult {
    if let Err(error) = conn
        .prepare_cached("BEGIN IMMEDIATE")
        .and_then(|mut s| s.execute([]))
    {
        tracing::error!(
            error = &error as &dyn std::error::Error,
            "Cannot start a write transaction"
        );
        replies.extend(batch.drain(..).map(|job| job(None)));
        return Err(Arc::new(error));
    }
    let mut jobs = batch.drain(..);
    while let Some(job) = jobs.next() {
        replies.push(job(Some(conn)));
        if conn.is_autocommit() {
            replies.extend(jobs.map(|job| job(None)));
            // SQLite rolled the whole transaction back (disk full, I/O error): every
            // job in it is lost, so every caller must hear so.
            let error = rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ABORT),
                Some("transaction rolled back by the database".into()),
            );
            tracing::error!("Write transaction rolled back by the database");
            return Err(Arc::new(error));
        }
    }
    match conn
        .prepare_cached("COMMIT")
        .and_then(|mut s| s.execute([]))
    {
        Ok(_) => Ok(()),
        Err(error) => {
            tracing::error!(error = &error as &dyn std::error::Error, "Commit failed");
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            Err(Arc::new(error))
        }
    }
}
