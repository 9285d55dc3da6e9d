//! Durable storage of events and attempts behind one `Store` trait.

pub mod postgres;
mod sql;
pub mod sqlite;
mod url;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use thiserror::Error;
use tokio::sync::Notify;

use crate::domain::event::{EventId, IdempotencyKey, SourceName};
use crate::domain::lifecycle::{self, EventStatus};
use crate::domain::time::Timestamp;
pub use url::DatabaseUrl;

#[derive(Debug, Error)]
pub enum StoreError {
    /// The database cannot be reached or written right now (down, locked, full,
    /// the file gone): the caller may retry later.
    #[error("database unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the database writer has stopped")]
    WriterStopped,
    /// A fault of ours: a statement the database refused, a value that does not fit
    /// the schema. Retrying will not help.
    #[error("database fault")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The schema is missing or older than this build.
    #[error("{0}")]
    Schema(String),
    #[error("unsupported database: {0}")]
    Unsupported(String),
}

impl StoreError {
    /// Whether the failure is the database's availability (503, retry later), not a
    /// fault of ours (500).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::WriterStopped)
    }

    pub fn internal(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Internal(Box::new(error))
    }
}

/// An event as the API hands it to the store.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub id: EventId,
    pub source: SourceName,
    pub key: IdempotencyKey,
    pub content_type: Option<String>,
    /// The request headers as a JSON array of `[name, value]` pairs.
    pub headers: String,
    pub body: Bytes,
    pub received_at: Timestamp,
    pub max_attempts: u32,
    /// The source had a destination when the event arrived.
    pub forward: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertOutcome {
    Accepted(EventId),
    /// The source already sent this key; the id is the first event's.
    Duplicate(EventId),
}

#[derive(Debug, Clone)]
pub struct EventRecord {
    /// Arrival order; the cursor of event listings.
    pub seq: i64,
    pub id: EventId,
    pub source: String,
    pub status: EventStatus,
    pub attempts: u32,
    pub max_attempts: u32,
    pub last_error: Option<String>,
    pub next_retry_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub content_type: Option<String>,
    pub headers: String,
    pub body: Vec<u8>,
    pub idempotency_key: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRecord {
    pub attempt: u32,
    pub started_at: Timestamp,
    pub duration: Duration,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub response_body: Option<String>,
}

/// An event a worker now holds a lease on.
#[derive(Debug, Clone)]
pub struct ClaimedEvent {
    pub id: EventId,
    /// When the event arrived.
    pub received_at: Timestamp,
    pub source: String,
    /// The number of this attempt, 1-based.
    pub attempt: u32,
    pub max_attempts: u32,
    /// Attempts made before the last replay (0 if never replayed).
    pub attempts_at_replay: u32,
    /// It arrived for a destination: never for the built-in processor.
    pub forward: bool,
    pub content_type: Option<String>,
    pub headers: String,
    pub body: Bytes,
}

impl ClaimedEvent {
    /// This attempt's number since the last replay: what the backoff grows with, so
    /// that a replayed event is retried at the policy's pace, not hours apart.
    pub fn attempt_in_round(&self) -> u32 {
        self.attempt.saturating_sub(self.attempts_at_replay).max(1)
    }
}

/// An event whose worker stopped before finishing; its attempt was recorded as failed.
#[derive(Debug, Clone)]
pub struct ReclaimedEvent {
    pub id: EventId,
    pub source: String,
    pub attempt: u32,
    pub status: EventStatus,
}

#[derive(Debug, Default)]
pub struct Claim {
    pub events: Vec<ClaimedEvent>,
    pub reclaimed: Vec<ReclaimedEvent>,
    /// The earliest moment more work becomes due (a retry or a lease running out).
    pub next_due: Option<Timestamp>,
}

/// The result of one attempt, written in one transaction with its attempt record.
#[derive(Debug, Clone)]
pub struct FinishedAttempt {
    pub id: EventId,
    pub attempt: u32,
    pub status: EventStatus,
    pub record: AttemptRecord,
    pub next_attempt_at: Option<Timestamp>,
}

/// Which events an operator asks for. Every field narrows the set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventFilter {
    pub status: Option<EventStatus>,
    pub source: Option<String>,
    /// Received at or after.
    pub since: Option<Timestamp>,
    /// Received before.
    pub until: Option<Timestamp>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum FilterError {
    #[error("status must be queued, processing, retrying, delivered or dead_lettered")]
    Status,
    #[error("source must be 1-64 characters of A-Z a-z 0-9 _ - .")]
    Source,
    #[error("{0:?} is not an RFC 3339 time such as 2026-11-30T12:00:00Z")]
    Timestamp(String),
}

impl EventFilter {
    /// Builds a filter from text as an operator writes it (query string, CLI flags).
    pub fn parse(
        status: Option<&str>,
        source: Option<String>,
        since: Option<&str>,
        until: Option<&str>,
    ) -> Result<Self, FilterError> {
        let status = status
            .map(|s| s.parse::<EventStatus>().map_err(|_| FilterError::Status))
            .transpose()?;
        // A name no source can have would match nothing: say so rather than answer empty.
        if let Some(source) = &source {
            SourceName::parse(source).map_err(|_| FilterError::Source)?;
        }
        // Any RFC 3339 time; also the looser UTC forms people type
        // (`2026-11-30 12:00:00`), as earlier releases accepted them.
        let time = |text: &str| {
            Timestamp::parse_rfc3339(text)
                .or_else(|| {
                    humantime::parse_rfc3339_weak(text)
                        .ok()
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .map(|d| Timestamp(d.as_micros() as i64))
                })
                .ok_or_else(|| FilterError::Timestamp(text.to_owned()))
        };
        Ok(Self {
            status,
            source,
            since: since.map(time).transpose()?,
            until: until.map(time).transpose()?,
        })
    }
}

#[derive(Debug)]
pub struct EventPage {
    /// Newest first.
    pub events: Vec<EventRecord>,
    /// Pass back as `before` for the next page; `None` on the last page.
    pub next_cursor: Option<i64>,
}

impl EventPage {
    /// A page from up to `limit + 1` rows read newest first: the extra row only says
    /// that there is another page.
    pub fn from_rows(mut events: Vec<EventRecord>, limit: usize) -> Self {
        let next_cursor = if events.len() > limit {
            events.truncate(limit);
            events.last().map(|e| e.seq)
        } else {
            None
        };
        Self {
            events,
            next_cursor,
        }
    }
}

impl From<lifecycle::ReplayRefused> for ReplayOutcome {
    fn from(refused: lifecycle::ReplayRefused) -> Self {
        match refused {
            lifecycle::ReplayRefused::NotFound => Self::NotFound,
            lifecycle::ReplayRefused::NotReplayable(status) => Self::NotReplayable(status),
        }
    }
}

/// What `/metrics` reports about the queue.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueGauges {
    pub queued: i64,
    pub retrying: i64,
    pub processing: i64,
    pub dead_lettered: i64,
    /// How long the oldest due event has waited past its due time.
    pub queue_lag: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayOutcome {
    Queued,
    NotReplayable(EventStatus),
    NotFound,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Stores the event durably, or finds the earlier one with the same key.
    async fn insert_event(&self, event: NewEvent) -> Result<InsertOutcome, StoreError>;

    async fn get_event(&self, id: &EventId) -> Result<Option<EventRecord>, StoreError>;

    /// The event a source sent with this idempotency key, if it is still kept.
    async fn find_by_key(&self, source: &str, key: &str)
    -> Result<Option<EventRecord>, StoreError>;

    /// `None` when the event does not exist.
    async fn list_attempts(&self, id: &EventId) -> Result<Option<Vec<AttemptRecord>>, StoreError>;

    /// Fails attempts whose lease ran out, then leases up to `limit` due events.
    async fn claim(&self, limit: usize, lease: Duration) -> Result<Claim, StoreError>;

    /// Extends the leases of attempts still running. Returns how many were extended.
    async fn renew_leases(
        &self,
        attempts: Vec<(EventId, u32)>,
        lease: Duration,
    ) -> Result<usize, StoreError>;

    /// Records an attempt's outcome. Returns false if the lease was lost meanwhile.
    async fn finish_attempt(&self, finished: FinishedAttempt) -> Result<bool, StoreError>;

    /// Hands an unfinished attempt back (graceful stop): it does not count.
    async fn release(&self, id: &EventId, attempt: u32) -> Result<(), StoreError>;

    /// Events matching `filter`, newest first, older than the cursor `before`.
    async fn list_events(
        &self,
        filter: &EventFilter,
        limit: usize,
        before: Option<i64>,
    ) -> Result<EventPage, StoreError>;

    /// Queues a delivered or dead-lettered event again with `fresh_attempts` more
    /// attempts; its history is kept.
    async fn replay(&self, id: &EventId, fresh_attempts: u32) -> Result<ReplayOutcome, StoreError>;

    /// Replays every delivered or dead-lettered event matching `filter`.
    async fn replay_matching(
        &self,
        filter: &EventFilter,
        fresh_attempts: u32,
    ) -> Result<u64, StoreError>;

    /// Deletes up to `batch` finished events (and their attempts) last updated before
    /// the cutoffs: delivered ones before `delivered_before`, dead-lettered ones before
    /// `dead_before` when given. Returns how many were deleted.
    async fn prune(
        &self,
        delivered_before: Timestamp,
        dead_before: Option<Timestamp>,
        batch: usize,
    ) -> Result<u64, StoreError>;

    /// Counts by status (from partial indexes, never the whole history) and queue lag.
    async fn gauges(&self) -> Result<QueueGauges, StoreError>;

    /// Delivered events, counted up to `cap`: delivered events are the history, and
    /// counting all of them would read all of it.
    async fn count_delivered(&self, cap: u64) -> Result<u64, StoreError>;

    /// Proves the database can be reached and written.
    async fn check_writable(&self) -> Result<(), StoreError>;

    /// Signalled when new work may be due (a new event, a replay).
    fn work_signal(&self) -> Arc<Notify>;

    /// Finishes pending writes; called once on shutdown.
    async fn close(&self);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenOptions {
    pub migrate: bool,
    /// This process accepts webhooks (and so tells other processes of new work).
    pub runs_api: bool,
    /// This process runs a worker (and so listens for work from other processes).
    pub runs_worker: bool,
    /// Connections per process (PostgreSQL).
    pub pool_size: usize,
}

pub async fn open(url: &DatabaseUrl, options: OpenOptions) -> Result<Arc<dyn Store>, StoreError> {
    match url {
        DatabaseUrl::Sqlite { path } => Ok(Arc::new(
            sqlite::SqliteStore::open(path.clone(), options).await?,
        )),
        DatabaseUrl::Postgres { url } => {
            Ok(Arc::new(postgres::PostgresStore::open(url, options).await?))
        }
    }
}

/// Rows one bulk replay changes per transaction: a replay of millions of events must
/// not hold the writer (and every webhook waiting on it) for the whole of it.
pub const REPLAY_BATCH: usize = 500;

/// One batch of a bulk replay: how many events it queued, how many it looked at, and
/// the last `seq` it saw.
pub struct ReplayBatch {
    pub replayed: u64,
    pub last_seq: Option<i64>,
    pub examined: usize,
}

/// Runs `batch(after_seq)` until a batch comes back short. Each event is considered
/// once, in `seq` order, so an event that is replayed and finishes again while the
/// replay runs is not replayed twice.
pub async fn replay_in_batches<F, Fut>(mut batch: F) -> Result<u64, StoreError>
where
    F: FnMut(i64) -> Fut,
    Fut: std::future::Future<Output = Result<ReplayBatch, StoreError>>,
{
    let mut total = 0;
    let mut after_seq = 0;
    loop {
        let ReplayBatch {
            replayed,
            last_seq,
            examined,
        } = batch(after_seq).await?;
        total += replayed;
        match last_seq {
            Some(last) if examined >= REPLAY_BATCH => after_seq = last,
            _ => return Ok(total),
        }
    }
}
