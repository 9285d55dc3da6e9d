//! The single SQLite writer: one thread owns the write connection and commits jobs in
//! batches (group commit). Each caller's future resolves only after the transaction
//! holding its job has committed, so many requests share one fsync and none is
//! answered early.
//!
//! A commit only counts if it went into the file that a restart will open: after each
//! commit the writer checks that the file at the database's path is still the one it
//! has open. If it was deleted or replaced, or the connection broke (read-only, I/O
//! error), the batch is answered as failed, the connection is dropped, and the next
//! batch opens the file at the path again, once there is a usable one.

use std::sync::Arc;
use std::thread::JoinHandle;

use rusqlite::{Connection, ErrorCode};
use tokio::sync::{mpsc, oneshot};

use super::file::{Connector, FileIdentity, set_aside_orphans};
use crate::store::StoreError;

/// Jobs committed together at most; bounds the latency a long queue adds to one commit.
const MAX_BATCH: usize = 1024;
/// Jobs waiting for the writer before callers are made to wait (backpressure).
const QUEUE_DEPTH: usize = 8192;

type CommitResult = Result<(), Arc<WriteFailure>>;

/// Why a batch was not committed to the database file.
#[derive(Debug, thiserror::Error)]
pub enum WriteFailure {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error("the database file cannot be used")]
    Unusable(#[source] StoreError),
    #[error(
        "the database file at its path was deleted or replaced; what was written went to the old file"
    )]
    FileGone,
}
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
    pub fn start(conn: Connection, connector: Connector) -> std::io::Result<Self> {
        let (queue, receiver) = mpsc::channel(QUEUE_DEPTH);
        let open = Some(OpenFile::new(conn, &connector));
        let thread = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || write_loop(open, connector, receiver))?;
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

/// The write connection and the identity of the file it opened.
struct OpenFile {
    conn: Connection,
    identity: Option<FileIdentity>,
}

impl OpenFile {
    fn new(conn: Connection, connector: &Connector) -> Self {
        Self {
            identity: connector.identity(),
            conn,
        }
    }
}

fn write_loop(
    mut open: Option<OpenFile>,
    connector: Connector,
    mut receiver: mpsc::Receiver<Message>,
) {
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
            let commit = match usable(&mut open, &connector) {
                Ok(file) => {
                    let commit = commit_batch(&file.conn, &mut batch, &mut replies)
                        .and_then(|()| still_at_path(file, &connector));
                    if let Err(failure) = &commit
                        && breaks_connection(failure)
                    {
                        tracing::error!(
                            component = "store",
                            path = %connector.path().display(),
                            error = failure.as_ref() as &dyn std::error::Error,
                            "Database file unusable; writes are refused until it can be opened again"
                        );
                        open = None;
                        connector.invalidate_readers();
                        for aside in set_aside_orphans(connector.path()) {
                            tracing::warn!(
                                component = "store",
                                file = %aside.display(),
                                "The deleted database's WAL was set aside so that a restored file does not replay it"
                            );
                        }
                    }
                    commit
                }
                Err(failure) => {
                    replies.extend(batch.drain(..).map(|job| job(None)));
                    Err(failure)
                }
            };
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

/// The open file, or a fresh connection to the file at the path when the last one
/// was dropped.
fn usable<'a>(
    open: &'a mut Option<OpenFile>,
    connector: &Connector,
) -> Result<&'a OpenFile, Arc<WriteFailure>> {
    if open.is_none() {
        let conn = connector
            .reopen()
            .map_err(|e| Arc::new(WriteFailure::Unusable(e)))?;
        tracing::info!(
            component = "store",
            path = %connector.path().display(),
            "Database file opened again; writes resume"
        );
        connector.invalidate_readers();
        *open = Some(OpenFile::new(conn, connector));
    }
    Ok(open.as_ref().expect("opened above"))
}

/// A commit into a file that is no longer at the path would not be found after a
/// restart: it counts as failed.
fn still_at_path(file: &OpenFile, connector: &Connector) -> CommitResult {
    match (&file.identity, connector.identity()) {
        (Some(opened), Some(now)) if *opened == now => Ok(()),
        _ => Err(Arc::new(WriteFailure::FileGone)),
    }
}

/// Failures after which the connection is not trusted again: the file is gone or
/// replaced, or SQLite fell back to read-only or hit an I/O error. A full disk or a
/// busy lock is not among them: those pass with the connection intact.
fn breaks_connection(failure: &WriteFailure) -> bool {
    match failure {
        WriteFailure::FileGone | WriteFailure::Unusable(_) => true,
        WriteFailure::Sqlite(error) => matches!(
            error.sqlite_error_code(),
            Some(
                ErrorCode::ReadOnly
                    | ErrorCode::SystemIoFailure
                    | ErrorCode::CannotOpen
                    | ErrorCode::NotADatabase
                    | ErrorCode::DatabaseCorrupt
            )
        ),
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
        return Err(Arc::new(error.into()));
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
            return Err(Arc::new(error.into()));
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
            Err(Arc::new(error.into()))
        }
    }
}
