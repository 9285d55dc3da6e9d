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
use super::watch::{CommitWatch, WriterLook};
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
/// One caller's writes: run against the open transaction (again, if the batch has to
/// be redone), then answered once the commit's fate is known.
trait Job: Send {
    /// Runs the work; `isolated` wraps it in a savepoint so that its failure leaves
    /// its batch-mates' writes in place. Returns whether it succeeded.
    fn run(&mut self, conn: &Connection, isolated: bool) -> bool;
    /// Answers the caller: the work's result if the commit held, else the failure.
    fn answer(self: Box<Self>, commit: CommitResult);
}

struct WriteJob<T, F> {
    work: F,
    outcome: Option<rusqlite::Result<T>>,
    answer: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> Job for WriteJob<T, F>
where
    T: Send,
    F: FnMut(&Connection) -> rusqlite::Result<T> + Send,
{
    fn run(&mut self, conn: &Connection, isolated: bool) -> bool {
        let outcome = if isolated {
            run_atomically(conn, &mut self.work)
        } else {
            (self.work)(conn)
        };
        let ok = outcome.is_ok();
        self.outcome = Some(outcome);
        ok
    }

    fn answer(self: Box<Self>, commit: CommitResult) {
        let result = match (commit, self.outcome) {
            (Err(cause), _) => Err(StoreError::Unavailable(Box::new(cause))),
            (Ok(()), Some(result)) => result.map_err(StoreError::from),
            (Ok(()), None) => Err(StoreError::WriterStopped),
        };
        let _ = self.answer.send(result);
    }
}

type BoxedJob = Box<dyn Job>;

enum Message {
    Job(BoxedJob),
    Close,
}

pub struct Writer {
    queue: mpsc::Sender<Message>,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Writer {
    /// With `watch`, the writer looks for other processes' commits after each batch.
    pub fn start(
        conn: Connection,
        connector: Connector,
        watch: Option<Arc<CommitWatch>>,
    ) -> std::io::Result<Self> {
        let (queue, receiver) = mpsc::channel(QUEUE_DEPTH);
        let open = Some(OpenFile::new(conn, &connector));
        let thread = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || write_loop(open, connector, watch, receiver))?;
        Ok(Self {
            queue,
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }

    /// Runs `work` inside the next batch's transaction; resolves after the commit.
    /// `work` may run twice: should a batch-mate fail, the batch is rolled back and
    /// done again with each job in a savepoint of its own.
    pub async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnMut(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel();
        let job: BoxedJob = Box::new(WriteJob {
            work,
            outcome: None,
            answer,
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
    work: &mut impl FnMut(&Connection) -> rusqlite::Result<T>,
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

/// The write connection, the identity of the file it opened, and what it saw of
/// other connections' commits.
struct OpenFile {
    conn: Connection,
    identity: Option<FileIdentity>,
    look: WriterLook,
}

impl OpenFile {
    fn new(conn: Connection, connector: &Connector) -> Self {
        Self {
            identity: connector.identity(),
            conn,
            look: WriterLook::default(),
        }
    }
}

fn write_loop(
    mut open: Option<OpenFile>,
    connector: Connector,
    watch: Option<Arc<CommitWatch>>,
    mut receiver: mpsc::Receiver<Message>,
) {
    let mut batch: Vec<BoxedJob> = Vec::with_capacity(MAX_BATCH);
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
            if let Some(watch) = &watch {
                watch.batch_started();
            }
            let mut look = None;
            let commit = match usable(&mut open, &connector) {
                Ok(file) => {
                    let commit = commit_batch(&file.conn, &mut batch)
                        .and_then(|()| still_at_path(file, &connector));
                    if watch.is_some() {
                        look = file.look.others_committed(&file.conn);
                    }
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
                Err(failure) => Err(failure),
            };
            for job in batch.drain(..) {
                job.answer(commit.clone());
            }
            if let Some(watch) = &watch {
                watch.batch_finished(look);
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
) -> Result<&'a mut OpenFile, Arc<WriteFailure>> {
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
    Ok(open.as_mut().expect("opened above"))
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

/// Runs the batch in one transaction and commits it. Jobs run back to back with no
/// savepoint of their own, which would copy every page each job touches; should one
/// fail, the batch is rolled back and run again with each job in a savepoint, so that
/// only the failed job's writes are left out.
fn commit_batch(conn: &Connection, batch: &mut [BoxedJob]) -> CommitResult {
    begin(conn)?;
    if batch.iter_mut().all(|job| job.run(conn, false)) && !conn.is_autocommit() {
        return commit(conn);
    }
    if !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    begin(conn)?;
    for job in batch.iter_mut() {
        job.run(conn, true);
        if conn.is_autocommit() {
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
    commit(conn)
}

fn begin(conn: &Connection) -> CommitResult {
    conn.prepare_cached("BEGIN IMMEDIATE")
        .and_then(|mut s| s.execute([]))
        .map(drop)
        .map_err(|error| {
            tracing::error!(
                error = &error as &dyn std::error::Error,
                "Cannot start a write transaction"
            );
            Arc::new(error.into())
        })
}

fn commit(conn: &Connection) -> CommitResult {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A failing job is answered with its error; the jobs committed beside it keep
    /// their writes (the batch is redone with a savepoint per job).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_job_does_not_fail_its_batch_mates() {
        let dir = tempfile::tempdir().unwrap();
        let connector = Connector::new(dir.path().join("w.db"));
        let conn = connector.create().unwrap();
        conn.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t (n INTEGER PRIMARY KEY)")
            .unwrap();
        let writer = Arc::new(Writer::start(conn, connector.clone(), None).unwrap());
        let writes = (0..200).map(|n| {
            let writer = writer.clone();
            tokio::spawn(async move {
                writer
                    .write(move |conn| {
                        conn.execute("INSERT INTO t (n) VALUES (?1)", [n])?;
                        // Two statements: the first must not survive the second's failure.
                        if n % 10 == 0 {
                            conn.execute("INSERT INTO missing (n) VALUES (1)", [])?;
                        }
                        Ok(n)
                    })
                    .await
            })
        });
        let mut failed = 0;
        for write in writes.collect::<Vec<_>>() {
            failed += usize::from(write.await.unwrap().is_err());
        }
        assert_eq!(failed, 20);
        writer.close().await;
        let check = rusqlite::Connection::open(dir.path().join("w.db")).unwrap();
        let (rows, multiples): (i64, i64) = check
            .query_row("SELECT COUNT(*), SUM(n % 10 = 0) FROM t", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((rows, multiples), (180, 0));
    }
}
