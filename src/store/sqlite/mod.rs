//! The embedded backend: one SQLite file in WAL mode with `synchronous=FULL`.
//!
//! All writes go through one writer thread that commits in batches (group commit);
//! reads use a small pool of their own connections, which WAL lets run beside the
//! writer. Several processes may share the file: SQLite's locks order their writers.

mod alerts;
mod claims;
mod events;
mod figures;
mod file;
mod flows;
mod outcomes;
mod replays;
mod schema;
mod watch;
mod writer;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::Connection;
use tokio::sync::Notify;

use super::{
    AlertOutbox, AlertOutcome, AlertRecord, AttemptBudget, AttemptRecord, Claim, ClaimRequest,
    DeliveryId, DeliveryQueue, DestinationSample, DestinationStats, EventFilter, EventLog,
    EventPage, EventRecord, FinishedAttempt, Housekeeping, InsertOutcome, MinuteCount, MinuteRow,
    NewDelivery, NewEvent, OpenOptions, OperatorView, QueueGauges, REPLAY_BATCH, Recorded,
    ReplayOutcome, StoreError, replay_in_batches,
};
use crate::domain::event::EventId;
use crate::domain::time::Timestamp;
use file::Connector;
use schema::{check_schema, migrate};
use writer::Writer;

impl From<rusqlite::Error> for StoreError {
    /// The database's state (busy, full, gone, read-only, I/O) is "unavailable": a
    /// retry may succeed. Anything else is a statement or value of ours it refused.
    fn from(error: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode::*;
        let unavailable = matches!(
            error.sqlite_error_code(),
            Some(
                DatabaseBusy
                    | DatabaseLocked
                    | DiskFull
                    | SystemIoFailure
                    | CannotOpen
                    | ReadOnly
                    | NotADatabase
                    | DatabaseCorrupt
                    | OutOfMemory
                    | FileLockingProtocolFailed
                    | PermissionDenied
                    | OperationInterrupted
                    | OperationAborted
            )
        );
        if unavailable {
            StoreError::Unavailable(Box::new(error))
        } else {
            StoreError::Internal(Box::new(error))
        }
    }
}

pub struct SqliteStore {
    writer: Writer,
    sweep: super::SweepClock,
    readers: Connector,
    work_signal: Arc<Notify>,
    stop_watching: Arc<AtomicBool>,
}

impl SqliteStore {
    pub async fn open(path: PathBuf, options: OpenOptions) -> Result<Self, StoreError> {
        tokio::task::spawn_blocking(move || Self::open_blocking(path, options))
            .await
            .map_err(|e| StoreError::Unavailable(Box::new(e)))?
    }

    fn open_blocking(path: PathBuf, options: OpenOptions) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Unavailable(Box::new(e)))?;
        }
        let connector = Connector::new(path.clone());
        let conn = connector.create()?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        if options.migrate {
            migrate(&conn)?;
        } else {
            check_schema(&conn)?;
        }
        let work_signal = Arc::new(Notify::new());
        let stop_watching = Arc::new(AtomicBool::new(false));
        // A worker without an API beside it learns of new events from other processes.
        let watch = (options.runs_worker && !options.runs_api)
            .then(|| watch::CommitWatch::new(work_signal.clone()));
        if let Some(watch) = &watch {
            watch::watch_other_writers(connector.clone(), watch.clone(), stop_watching.clone())?;
        }
        Ok(Self {
            writer: Writer::start(conn, connector.clone(), watch)
                .map_err(|e| StoreError::Unavailable(Box::new(e)))?,
            readers: connector,
            sweep: super::SweepClock::default(),
            work_signal,
            stop_watching,
        })
    }

    async fn read<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let readers = self.readers.clone();
        tokio::task::spawn_blocking(move || readers.read(work))
            .await
            .map_err(|e| StoreError::Unavailable(Box::new(e)))?
    }
}

#[async_trait]
impl EventLog for SqliteStore {
    async fn insert_event(&self, event: NewEvent) -> Result<InsertOutcome, StoreError> {
        let outcome = self
            .writer
            .write(move |conn| events::insert_event(conn, &event))
            .await?;
        if matches!(outcome, InsertOutcome::Accepted(_)) {
            self.work_signal.notify_one();
        }
        Ok(outcome)
    }

    async fn check_writable(&self) -> Result<(), StoreError> {
        self.writer.write(figures::probe_write).await
    }
}

#[async_trait]
impl DeliveryQueue for SqliteStore {
    async fn claim(&self, request: ClaimRequest) -> Result<Claim, StoreError> {
        let sweep = self.sweep.due();
        self.writer
            .write(move |conn| claims::claim(conn, &request, sweep))
            .await
    }

    async fn renew_leases(
        &self,
        attempts: Vec<(DeliveryId, u32)>,
        lease: Duration,
    ) -> Result<usize, StoreError> {
        self.writer
            .write(move |conn| claims::renew_leases(conn, &attempts, lease))
            .await
    }

    async fn finish_attempts(
        &self,
        finished: Vec<FinishedAttempt>,
    ) -> Result<Vec<Recorded>, StoreError> {
        self.writer
            .write(move |conn| outcomes::finish_attempts(conn, &finished))
            .await
    }

    async fn release(&self, delivery: DeliveryId, attempt: u32) -> Result<(), StoreError> {
        self.writer
            .write(move |conn| claims::release(conn, delivery, attempt))
            .await
    }

    fn work_signal(&self) -> Arc<Notify> {
        self.work_signal.clone()
    }
}

#[async_trait]
impl OperatorView for SqliteStore {
    async fn get_event(&self, id: &EventId) -> Result<Option<EventRecord>, StoreError> {
        let id = id.clone();
        self.read(move |conn| events::get_event(conn, &id)).await
    }

    async fn find_by_key(
        &self,
        source: &str,
        key: &str,
    ) -> Result<Option<EventRecord>, StoreError> {
        let (source, key) = (source.to_owned(), key.to_owned());
        self.read(move |conn| events::find_by_key(conn, &source, &key))
            .await
    }

    async fn add_deliveries(
        &self,
        id: &EventId,
        deliveries: Vec<NewDelivery>,
    ) -> Result<bool, StoreError> {
        let id = id.clone();
        let added = self
            .writer
            .write(move |conn| events::add_deliveries(conn, &id, &deliveries))
            .await?;
        if added {
            self.work_signal.notify_one();
        }
        Ok(added)
    }

    async fn list_attempts(&self, id: &EventId) -> Result<Option<Vec<AttemptRecord>>, StoreError> {
        let id = id.clone();
        self.read(move |conn| events::list_attempts(conn, &id))
            .await
    }

    async fn set_paused(&self, destination: &str, paused: bool) -> Result<bool, StoreError> {
        let destination = destination.to_owned();
        let changed = self
            .writer
            .write(move |conn| flows::set_paused(conn, &destination, paused))
            .await?;
        if changed && !paused {
            self.work_signal().notify_one();
        }
        Ok(changed)
    }

    async fn list_events(
        &self,
        filter: &EventFilter,
        limit: usize,
        before: Option<i64>,
        bodies: bool,
    ) -> Result<EventPage, StoreError> {
        let filter = filter.clone();
        self.read(move |conn| events::list_events(conn, &filter, limit, before, bodies))
            .await
    }

    async fn replay(
        &self,
        id: &EventId,
        destination: Option<&str>,
        budget: &AttemptBudget,
    ) -> Result<ReplayOutcome, StoreError> {
        let id = id.clone();
        let destination = destination.map(str::to_owned);
        let budget = budget.clone();
        let outcome = self
            .writer
            .write(move |conn| replays::replay(conn, &id, destination.as_deref(), &budget))
            .await?;
        if matches!(outcome, ReplayOutcome::Queued(_)) {
            self.work_signal.notify_one();
        }
        Ok(outcome)
    }

    async fn replay_matching(
        &self,
        filter: &EventFilter,
        budget: &AttemptBudget,
    ) -> Result<u64, StoreError> {
        let upto_seq = self.read(events::last_seq).await?;
        // Each batch is its own job, so webhooks are committed between batches.
        replay_in_batches(|after_seq| {
            let filter = filter.clone();
            let budget = budget.clone();
            async move {
                let batch = self
                    .writer
                    .write(move |conn| {
                        replays::replay_matching(
                            conn,
                            &filter,
                            &budget,
                            after_seq,
                            upto_seq,
                            REPLAY_BATCH,
                        )
                    })
                    .await?;
                if batch.replayed > 0 {
                    self.work_signal.notify_one();
                }
                Ok(batch)
            }
        })
        .await
    }

    async fn destination_minutes(&self, since: Timestamp) -> Result<Vec<MinuteRow>, StoreError> {
        self.read(move |conn| alerts::destination_minutes(conn, since))
            .await
    }

    async fn gauges(&self) -> Result<QueueGauges, StoreError> {
        self.read(figures::gauges).await
    }

    async fn destination_stats(&self) -> Result<Vec<DestinationStats>, StoreError> {
        self.read(figures::destination_stats).await
    }

    async fn count_delivered(&self, cap: u64) -> Result<u64, StoreError> {
        self.read(move |conn| figures::count_delivered(conn, cap))
            .await
    }
}

#[async_trait]
impl AlertOutbox for SqliteStore {
    async fn claim_alerts(
        &self,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<AlertRecord>, StoreError> {
        self.writer
            .write(move |conn| alerts::claim_alerts(conn, limit, lease))
            .await
    }

    async fn finish_alert(
        &self,
        id: i64,
        attempts: u32,
        outcome: AlertOutcome,
    ) -> Result<bool, StoreError> {
        self.writer
            .write(move |conn| alerts::finish_alert(conn, id, attempts, &outcome))
            .await
    }

    async fn record_samples(
        &self,
        samples: Vec<DestinationSample>,
        counts: Vec<MinuteCount>,
        now: Timestamp,
        _settle: Duration,
    ) -> Result<usize, StoreError> {
        // Recoveries are raised with the outcomes that close breakers, not here.
        self.writer
            .write(move |conn| alerts::record_samples(conn, &samples, &counts, now))
            .await
    }
}

#[async_trait]
impl Housekeeping for SqliteStore {
    async fn prune(
        &self,
        delivered_before: Timestamp,
        dead_before: Option<Timestamp>,
        batch: usize,
    ) -> Result<u64, StoreError> {
        self.writer
            .write(move |conn| figures::prune(conn, delivered_before, dead_before, batch))
            .await
    }

    async fn prune_monitoring(
        &self,
        minutes_before: Timestamp,
        alerts_before: Timestamp,
    ) -> Result<u64, StoreError> {
        self.writer
            .write(move |conn| alerts::prune_monitoring(conn, minutes_before, alerts_before))
            .await
    }

    async fn close(&self) {
        self.stop_watching.store(true, Ordering::Relaxed);
        self.writer.close().await;
    }
}
