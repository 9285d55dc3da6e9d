//! How a worker without an API beside it learns of other processes' commits (new
//! events, replays, pauses) within milliseconds.
//!
//! `PRAGMA data_version` on a connection changes when any *other* connection commits,
//! and to a watching connection this process's own writer is another connection: a
//! watcher alone wakes the worker after each of its own claims and outcomes, and every
//! wake-up is a claim round through the writer. The writer's connection, though, sees
//! only the others' commits. So the writer looks after each batch, and the watcher
//! leaves to it the changes that come while it is busy: it wakes the worker itself
//! only when the writer was idle, or did not look again by the next poll.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::Notify;

use super::file::{Connector, open_connection};
use crate::store::StoreError;

/// How often the watcher looks for commits made by other processes.
const WATCH_INTERVAL: Duration = Duration::from_millis(5);

/// What the writer and the watcher share.
pub struct CommitWatch {
    signal: Arc<Notify>,
    /// Odd while the writer runs a batch; even once it has looked for others' commits
    /// after it. Only ever grows.
    writer_phase: AtomicU64,
}

impl CommitWatch {
    pub fn new(signal: Arc<Notify>) -> Arc<Self> {
        Arc::new(Self {
            signal,
            writer_phase: AtomicU64::new(0),
        })
    }

    pub fn batch_started(&self) {
        self.writer_phase.fetch_add(1, Ordering::SeqCst);
    }

    /// After a batch: `look` is what the writer's connection said of others' commits
    /// since its last look (`None`: it could not tell, so the worker looks).
    pub fn batch_finished(&self, look: Option<bool>) {
        if look != Some(false) {
            self.signal.notify_one();
        }
        self.writer_phase.fetch_add(1, Ordering::SeqCst);
    }

    fn phase(&self) -> u64 {
        self.writer_phase.load(Ordering::SeqCst)
    }
}

/// The writer connection's view: the `data_version` it saw last.
#[derive(Default)]
pub struct WriterLook {
    seen: Option<i64>,
}

impl WriterLook {
    /// Whether another connection committed since the last look. The first look on a
    /// connection cannot tell, and says so.
    pub fn others_committed(&mut self, conn: &Connection) -> Option<bool> {
        let now = data_version(conn).ok()?;
        let before = self.seen.replace(now)?;
        Some(before != now)
    }
}

fn data_version(conn: &Connection) -> rusqlite::Result<i64> {
    // Cached: the writer asks after every batch.
    conn.prepare_cached("PRAGMA data_version")?
        .query_row([], |r| r.get(0))
}

/// The watcher's reasoning, apart from its thread: given the `data_version` its
/// connection reads at each poll and the writer's phase read just after, whether to
/// wake the worker.
struct Watcher {
    last_version: i64,
    last_phase: u64,
    /// A change seen while the writer was busy, left to the writer's look: settled
    /// once the phase reaches this (the end of a batch that began after the change).
    left_until: Option<u64>,
}

impl Watcher {
    fn new(version: i64, phase: u64) -> Self {
        Self {
            last_version: version,
            last_phase: phase,
            left_until: None,
        }
    }

    fn poll(&mut self, version: i64, phase: u64) -> bool {
        // A change left to the writer at the last poll that it has not looked after
        // since: the worker looks.
        let mut wake = self.left_until.take().is_some_and(|until| phase < until);
        if version != self.last_version {
            self.last_version = version;
            if wake || (phase == self.last_phase && writer_idle(phase)) {
                // Waking anyway, or the writer neither ran nor finished a batch since
                // the last poll (the commit was another process's).
                wake = true;
            } else {
                // Perhaps the writer's own; its next look will tell. That look must
                // begin after this poll: the end of the next batch that starts now.
                let next_start = if writer_idle(phase) {
                    phase + 1
                } else {
                    phase + 2
                };
                self.left_until = Some(next_start + 1);
            }
        }
        self.last_phase = phase;
        wake
    }
}

/// Whether the writer was between batches when its phase was read.
fn writer_idle(phase: u64) -> bool {
    phase.is_multiple_of(2)
}

/// Starts the watcher thread; it stops once `stop` is set.
pub fn watch_other_writers(
    connector: Connector,
    watch: Arc<CommitWatch>,
    stop: Arc<AtomicBool>,
) -> Result<(), StoreError> {
    let conn = open_connection(connector.path(), false)?;
    let mut watcher = Watcher::new(data_version(&conn)?, watch.phase());
    let mut watching = Some((connector.generation(), conn));
    std::thread::Builder::new()
        .name("sqlite-watch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(WATCH_INTERVAL);
                // The file was found gone or replaced: let go of the old one.
                let generation = connector.generation();
                if watching.as_ref().is_some_and(|(g, _)| *g != generation) {
                    watching = None;
                }
                let Some((_, conn)) = &watching else {
                    watching = open_connection(connector.path(), false)
                        .ok()
                        .map(|conn| (generation, conn));
                    if let Some((_, conn)) = &watching {
                        // Whatever happened meanwhile, look for work once.
                        watch.signal.notify_one();
                        if let Ok(version) = data_version(conn) {
                            watcher = Watcher::new(version, watch.phase());
                        }
                    }
                    continue;
                };
                let Ok(version) = data_version(conn) else {
                    continue;
                };
                // Read after the version: a batch that starts from here on commits
                // after the change was seen.
                if watcher.poll(version, watch.phase()) {
                    watch.signal.notify_one();
                }
            }
        })
        .map_err(|e| StoreError::Unavailable(Box::new(e)))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_while_the_writer_is_idle_wakes_the_worker_at_once() {
        let mut watcher = Watcher::new(1, 4);
        assert!(!watcher.poll(1, 4));
        assert!(watcher.poll(2, 4));
        assert!(!watcher.poll(2, 4));
    }

    #[test]
    fn a_change_while_the_writer_is_busy_is_left_to_its_next_look() {
        // In a batch at the poll that sees the change: that batch's look may have
        // begun before it, so only the next batch's end settles it.
        let mut watcher = Watcher::new(1, 4);
        assert!(!watcher.poll(2, 5));
        assert!(!watcher.poll(2, 8));
        // Idle at the poll, but a batch ran since the last one.
        let mut watcher = Watcher::new(1, 4);
        assert!(!watcher.poll(2, 6));
        assert!(!watcher.poll(2, 8));
    }

    #[test]
    fn a_change_the_writer_did_not_look_after_wakes_the_worker_at_the_next_poll() {
        let mut watcher = Watcher::new(1, 4);
        assert!(!watcher.poll(2, 5));
        // The batch under way finished, its look perhaps from before the change.
        assert!(watcher.poll(2, 6));
        let mut watcher = Watcher::new(1, 4);
        assert!(!watcher.poll(2, 6));
        // A batch started since, not finished.
        assert!(watcher.poll(2, 7));
        assert!(!watcher.poll(2, 7));
    }

    #[test]
    fn a_change_on_top_of_one_left_to_the_writer_is_weighed_again() {
        let mut watcher = Watcher::new(1, 4);
        assert!(!watcher.poll(2, 5));
        // Not looked after (phase 6 < 8): the worker wakes, and looks after the change
        // seen at the same poll too, so nothing is left over.
        assert!(watcher.poll(3, 6));
        assert!(!watcher.poll(3, 6));
    }

    /// The writer's connection tells others' commits from its own.
    #[test]
    fn the_writer_look_sees_other_connections_commits_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let writer = open_connection(&path, true).unwrap();
        writer
            .execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t (n INTEGER)")
            .unwrap();
        let other = open_connection(&path, false).unwrap();
        let mut look = WriterLook::default();
        assert_eq!(look.others_committed(&writer), None);
        assert_eq!(look.others_committed(&writer), Some(false));
        writer.execute("INSERT INTO t VALUES (1)", []).unwrap();
        assert_eq!(look.others_committed(&writer), Some(false));
        other.execute("INSERT INTO t VALUES (2)", []).unwrap();
        assert_eq!(look.others_committed(&writer), Some(true));
        assert_eq!(look.others_committed(&writer), Some(false));
    }

    /// The worker is woken by another process's commit, and hardly ever by its own
    /// writer's: a watcher that could not tell them apart woke it at every poll while
    /// the writer was busy.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_worker_wakes_for_others_commits_not_for_its_own() {
        use std::sync::atomic::AtomicUsize;
        use std::time::Instant;

        let dir = tempfile::tempdir().unwrap();
        let connector = Connector::new(dir.path().join("w.db"));
        let conn = connector.create().unwrap();
        conn.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t (n INTEGER)")
            .unwrap();
        let signal = Arc::new(Notify::new());
        let watch = CommitWatch::new(signal.clone());
        let stop = Arc::new(AtomicBool::new(false));
        watch_other_writers(connector.clone(), watch.clone(), stop.clone()).unwrap();
        let writer =
            super::super::writer::Writer::start(conn, connector.clone(), Some(watch)).unwrap();
        let wakes = Arc::new(AtomicUsize::new(0));
        let counter = tokio::spawn({
            let (signal, wakes) = (signal.clone(), wakes.clone());
            async move {
                loop {
                    signal.notified().await;
                    wakes.fetch_add(1, Ordering::SeqCst);
                }
            }
        });

        // Half a second of this process's own writes: about a hundred polls.
        let busy = Instant::now();
        let mut n = 0;
        while busy.elapsed() < Duration::from_millis(500) {
            n += 1;
            writer
                .write(move |conn| conn.execute("INSERT INTO t VALUES (?1)", [n]))
                .await
                .unwrap();
        }
        tokio::time::sleep(WATCH_INTERVAL * 4).await;
        // A few wake-ups come when the writer is slow to look (a starved machine); one
        // per commit is what the watcher alone would cause.
        let own = wakes.load(Ordering::SeqCst);
        assert!(
            own <= 10.max(n as usize / 10),
            "{own} wake-ups for {n} of its own commits"
        );

        // Another process's commit, with the writer idle.
        let other = open_connection(connector.path(), false).unwrap();
        other.execute("INSERT INTO t VALUES (0)", []).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while wakes.load(Ordering::SeqCst) == own {
            assert!(
                Instant::now() < deadline,
                "another process's commit woke nobody"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        stop.store(true, Ordering::Relaxed);
        counter.abort();
        writer.close().await;
    }

    /// Another process's commit while this process's writer is busy: the watcher leaves
    /// it to the writer, whose look after its next batch must wake the worker.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn another_process_commit_while_the_writer_is_busy_wakes_the_worker() {
        use std::sync::atomic::AtomicUsize;
        use std::time::Instant;

        let dir = tempfile::tempdir().unwrap();
        let connector = Connector::new(dir.path().join("w.db"));
        let conn = connector.create().unwrap();
        conn.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t (n INTEGER)")
            .unwrap();
        let signal = Arc::new(Notify::new());
        let watch = CommitWatch::new(signal.clone());
        let stop = Arc::new(AtomicBool::new(false));
        watch_other_writers(connector.clone(), watch.clone(), stop.clone()).unwrap();
        let writer = Arc::new(
            super::super::writer::Writer::start(conn, connector.clone(), Some(watch)).unwrap(),
        );
        let wakes = Arc::new(AtomicUsize::new(0));
        let counter = tokio::spawn({
            let (signal, wakes) = (signal.clone(), wakes.clone());
            async move {
                loop {
                    signal.notified().await;
                    wakes.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        let busy = Arc::new(AtomicBool::new(true));
        let writing = tokio::spawn({
            let (writer, busy) = (writer.clone(), busy.clone());
            async move {
                let mut n = 0;
                while busy.load(Ordering::SeqCst) {
                    n += 1;
                    writer
                        .write(move |conn| conn.execute("INSERT INTO t VALUES (?1)", [n]))
                        .await
                        .unwrap();
                }
            }
        });

        // Past the first look (which cannot tell) and into steady writing.
        tokio::time::sleep(WATCH_INTERVAL * 20).await;
        let before = wakes.load(Ordering::SeqCst);
        let other = open_connection(connector.path(), false).unwrap();
        other.execute("INSERT INTO t VALUES (0)", []).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while wakes.load(Ordering::SeqCst) == before {
            assert!(
                Instant::now() < deadline,
                "another process's commit during busy writing woke nobody"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        busy.store(false, Ordering::SeqCst);
        writing.await.unwrap();
        stop.store(true, Ordering::Relaxed);
        counter.abort();
        writer.close().await;
    }
}
