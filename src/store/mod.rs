//! Durable storage of events and attempts behind one `Store` trait.

pub mod group;
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

use crate::domain::alert::{AlertKind, AlertRules, LagChange};
use crate::domain::event::{EventId, IdempotencyKey, SourceName};
use crate::domain::lifecycle::{self, DeliveryState, EventStatus};
use crate::domain::outcomes::Observed;
use crate::domain::protection::{BreakerChange, BreakerPolicy, Fault, FlowState, Limits, Wait};
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

/// An event as the API hands it to the store, with the deliveries its routes chose.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub id: EventId,
    pub source: SourceName,
    pub key: IdempotencyKey,
    pub event_type: Option<String>,
    pub content_type: Option<String>,
    /// The request headers as a JSON array of `[name, value]` pairs.
    pub headers: String,
    pub body: Bytes,
    pub received_at: Timestamp,
    /// None: the event matched no route and is kept as `filtered`.
    pub deliveries: Vec<NewDelivery>,
}

/// A delivery decided at ingest (or when a filtered event is routed again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    pub destination: String,
    pub max_attempts: u32,
    /// The ordering key of an ordered destination's delivery (`""`: the event has
    /// none); `None` for unordered destinations.
    pub ordering_key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertOutcome {
    Accepted(EventId),
    /// The source already sent this key; the id is the first event's.
    Duplicate(EventId),
}

/// A delivery's row id: what claims, leases and outcomes are fenced on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeliveryId(pub i64);

#[derive(Debug, Clone)]
pub struct EventRecord {
    /// Arrival order; the cursor of event listings.
    pub seq: i64,
    pub id: EventId,
    pub source: String,
    pub event_type: Option<String>,
    pub created_at: Timestamp,
    pub content_type: Option<String>,
    pub headers: String,
    pub body: Vec<u8>,
    pub idempotency_key: String,
    /// In the order they were made.
    pub deliveries: Vec<DeliveryRecord>,
}

impl EventRecord {
    /// The event's state as one delivery's: see [`lifecycle::summarize`].
    pub fn summary(&self) -> Option<&DeliveryState> {
        lifecycle::summarize(self.deliveries.iter().map(|d| &d.state))
    }

    /// The event's status: its summary's, or `filtered` with no delivery.
    pub fn status(&self) -> EventStatus {
        self.summary()
            .map_or(EventStatus::Filtered, |summary| summary.status)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryRecord {
    pub destination: String,
    pub state: DeliveryState,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRecord {
    /// Where the attempt went (a destination's name, or the built-in processor).
    pub destination: String,
    pub attempt: u32,
    pub started_at: Timestamp,
    pub duration: Duration,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub response_body: Option<String>,
    /// The attempt probed an open breaker.
    pub probe: bool,
}

/// A delivery a worker now holds a lease on, with its event.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub delivery: DeliveryId,
    pub event_id: EventId,
    pub destination: String,
    /// When the event arrived.
    pub received_at: Timestamp,
    pub source: String,
    /// The number of this attempt, 1-based.
    pub attempt: u32,
    pub max_attempts: u32,
    /// Attempts made before the last replay (0 if never replayed).
    pub attempts_at_replay: u32,
    pub content_type: Option<String>,
    pub headers: String,
    pub body: Bytes,
    /// This attempt probes the destination's open breaker.
    pub probe: bool,
}

impl ClaimedDelivery {
    /// This attempt's number since the last replay: what the backoff grows with, so
    /// that a replayed delivery is retried at the policy's pace, not hours apart.
    pub fn attempt_in_round(&self) -> u32 {
        self.attempt.saturating_sub(self.attempts_at_replay).max(1)
    }
}

/// A delivery whose worker stopped before finishing; its attempt was recorded as failed.
#[derive(Debug, Clone)]
pub struct ReclaimedDelivery {
    pub event_id: EventId,
    pub destination: String,
    pub attempt: u32,
    pub status: EventStatus,
}

/// What a worker asks one claim for: up to `limit` due deliveries to each destination
/// it has room for, within that destination's limits.
#[derive(Debug, Clone)]
pub struct ClaimRequest {
    pub lease: Duration,
    pub wants: Vec<Want>,
}

#[derive(Debug, Clone)]
pub struct Want {
    pub destination: String,
    pub limit: usize,
    pub limits: Limits,
}

#[derive(Debug, Default)]
pub struct Claim {
    pub deliveries: Vec<ClaimedDelivery>,
    pub reclaimed: Vec<ReclaimedDelivery>,
    /// The earliest moment more work becomes due (a retry or a lease running out) for
    /// a destination that is not waiting.
    pub next_due: Option<Timestamp>,
    /// Destinations whose due deliveries wait, and why.
    pub waits: Vec<(String, Wait)>,
}

/// The result of one attempt, written in one transaction with its attempt record.
#[derive(Debug, Clone)]
pub struct FinishedAttempt {
    pub delivery: DeliveryId,
    pub event_id: EventId,
    pub attempt: u32,
    pub max_attempts: u32,
    pub status: EventStatus,
    pub record: AttemptRecord,
    pub next_attempt_at: Option<Timestamp>,
    /// Whose failure it was: what the destination's breaker counts.
    pub fault: Fault,
    /// The destination's breaker, `None` when it is off.
    pub breaker: Option<BreakerPolicy>,
    /// How alerts are raised, `None` when no `[alerts]` are configured.
    pub alerts: Option<AlertRules>,
}

/// What recording an outcome did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    /// The lease still held: the outcome was written.
    pub held: bool,
    /// The outcome opened or closed its destination's breaker.
    pub breaker: Option<BreakerChange>,
    /// The status written: the attempt's, or `retrying` when it failed behind an
    /// open breaker.
    pub status: EventStatus,
}

impl FinishedAttempt {
    /// The outcome as the domain decides on it.
    pub fn observed(&self) -> Observed<'_> {
        Observed {
            destination: &self.record.destination,
            event_id: self.event_id.as_str(),
            status: self.status,
            next_attempt_at: self.next_attempt_at,
            error: self.record.error.as_deref(),
            attempt: self.attempt,
            max_attempts: self.max_attempts,
            fault: self.fault,
            probe: self.record.probe,
            breaker: self.breaker,
            alerts: self.alerts,
        }
    }
}

/// How many fresh attempts a replay grants, by destination.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AttemptBudget {
    pub default: u32,
    pub by_destination: std::collections::HashMap<String, u32>,
}

impl AttemptBudget {
    pub fn of(&self, destination: &str) -> u32 {
        self.by_destination
            .get(destination)
            .copied()
            .unwrap_or(self.default)
    }
}

/// One destination as the database knows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DestinationStats {
    pub name: String,
    /// Deliveries due now (queued, or retrying and due), up to [`WAITING_COUNT_CAP`].
    pub backlog: i64,
    /// Deliveries waiting for a later retry, up to [`WAITING_COUNT_CAP`].
    pub scheduled: i64,
    /// Pause, breaker and bucket, as every worker sees them.
    pub flow: FlowState,
    /// The last time a claim held deliveries back for `rate` or `max_in_flight`.
    pub throttled_at: Option<Timestamp>,
    /// Since when it has been paused.
    pub paused_at: Option<Timestamp>,
    pub in_flight: i64,
    /// When the oldest due delivery became due.
    pub oldest_due: Option<Timestamp>,
    pub last_success_at: Option<Timestamp>,
    pub last_failure_at: Option<Timestamp>,
    /// Since when its oldest due delivery has waited longer than `lag`.
    pub lagging_since: Option<Timestamp>,
    /// The last alert raised about it.
    pub last_alert: Option<AlertRecord>,
}

impl DestinationStats {
    /// One entry per destination from the three reads both backends make: due and
    /// scheduled deliveries, attempts in flight, last outcomes.
    pub fn merge(
        waiting: Vec<(String, i64, i64, Option<i64>)>,
        in_flight: Vec<(String, i64)>,
        rows: Vec<DestinationRow>,
        last_alerts: Vec<AlertRecord>,
    ) -> Vec<Self> {
        let mut all: std::collections::BTreeMap<String, Self> = Default::default();
        fn entry(
            all: &mut std::collections::BTreeMap<String, DestinationStats>,
            name: String,
        ) -> &mut DestinationStats {
            all.entry(name.clone()).or_insert_with(|| DestinationStats {
                name,
                ..DestinationStats::default()
            })
        }
        for (name, due, scheduled, oldest) in waiting {
            let stats = entry(&mut all, name);
            stats.backlog = due;
            stats.scheduled = scheduled;
            stats.oldest_due = oldest.map(Timestamp);
        }
        for (name, running) in in_flight {
            entry(&mut all, name).in_flight = running;
        }
        for row in rows {
            let stats = entry(&mut all, row.name);
            stats.last_success_at = row.last_success_at;
            stats.last_failure_at = row.last_failure_at;
            stats.flow = row.flow;
            stats.throttled_at = row.throttled_at;
            stats.paused_at = row.paused_at.filter(|_| row.flow.paused);
            stats.lagging_since = row.lagging_since;
        }
        for alert in last_alerts {
            let name = alert.destination.clone();
            entry(&mut all, name).last_alert = Some(alert);
        }
        all.into_values().collect()
    }
}

/// A destination's row in `destinations`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DestinationRow {
    pub name: String,
    pub last_success_at: Option<Timestamp>,
    pub last_failure_at: Option<Timestamp>,
    pub flow: FlowState,
    pub throttled_at: Option<Timestamp>,
    pub paused_at: Option<Timestamp>,
    pub lagging_since: Option<Timestamp>,
}

/// The columns both backends read a [`FlowState`] from, in this order.
pub const FLOW_COLUMNS: &str =
    "paused, failures, breaker_since, probe_at, probe_pause_us, tokens, tokens_at";

/// A [`FlowState`] from [`FLOW_COLUMNS`]' values.
pub fn flow_state(
    paused: bool,
    failures: i64,
    breaker_since: Option<i64>,
    probe_at: Option<i64>,
    probe_pause_us: Option<i64>,
    tokens: Option<f64>,
    tokens_at: Option<i64>,
) -> FlowState {
    use crate::domain::protection::OpenBreaker;
    FlowState {
        paused,
        failures: failures.clamp(0, i64::from(u32::MAX)) as u32,
        breaker: breaker_since.map(|since| OpenBreaker {
            since: Timestamp(since),
            probe_at: Timestamp(probe_at.unwrap_or(since)),
            pause: Duration::from_micros(probe_pause_us.unwrap_or(0).max(0) as u64),
        }),
        tokens: tokens.zip(tokens_at.map(Timestamp)),
    }
}

/// A [`FlowState`] as the values of `failures, breaker_since, probe_at,
/// probe_pause_us, tokens, tokens_at` (pause is written apart).
#[allow(clippy::type_complexity)]
pub fn flow_values(
    flow: &FlowState,
) -> (
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<f64>,
    Option<i64>,
) {
    (
        i64::from(flow.failures),
        flow.breaker.map(|b| b.since.0),
        flow.breaker.map(|b| b.probe_at.0),
        flow.breaker.map(|b| b.pause.as_micros() as i64),
        flow.tokens.map(|(t, _)| t),
        flow.tokens.map(|(_, at)| at.0),
    )
}

/// An alert as stored: raised once, sent until a receiver takes it.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRecord {
    pub id: i64,
    pub kind: AlertKind,
    pub destination: String,
    pub created_at: Timestamp,
    /// The start of the episode it is about: the breaker's opening, the lag's start,
    /// the dead-letter digest's window.
    pub episode: Option<Timestamp>,
    /// Dead-letter digests: how many deliveries were dead-lettered.
    pub count: i64,
    /// Dead-letter digests: the latest dead-lettered event.
    pub event_id: Option<String>,
    /// What the message says (JSON), fixed when the alert was raised.
    pub details: String,
    /// Tries so far, counting the one a sender is making after a claim.
    pub attempts: u32,
    pub sent_at: Option<Timestamp>,
    pub last_error: Option<String>,
}

/// What trying to send an alert did.
#[derive(Debug, Clone, PartialEq)]
pub enum AlertOutcome {
    Sent,
    /// The receiver did not take it: try again at `at`.
    Retry {
        at: Timestamp,
        error: String,
    },
}

/// What a worker saw of a destination while sampling: the backlog for the charts, and
/// the change of its lag episode the domain decided.
#[derive(Debug, Clone, PartialEq)]
pub struct DestinationSample {
    pub destination: String,
    /// Deliveries not finished: due, scheduled and in flight.
    pub waiting: i64,
    pub lag: Option<LagChange>,
}

/// Outcomes a worker counted for one destination and minute, added to the minute's.
#[derive(Debug, Clone, PartialEq)]
pub struct MinuteCount {
    pub destination: String,
    pub minute: Timestamp,
    pub delivered: i64,
    pub failed: i64,
}

/// One destination's minute for the dashboard's charts.
#[derive(Debug, Clone, PartialEq)]
pub struct MinuteRow {
    pub destination: String,
    /// The minute's start.
    pub minute: Timestamp,
    pub delivered: i64,
    pub failed: i64,
    /// The most deliveries seen waiting in that minute (`None`: no worker looked).
    pub backlog: Option<i64>,
}

/// The start of the minute `at` falls in.
pub fn minute_of(at: Timestamp) -> Timestamp {
    const MINUTE: i64 = 60_000_000;
    Timestamp(at.0.div_euclid(MINUTE) * MINUTE)
}

/// Which events an operator asks for. Every field narrows the set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventFilter {
    /// An event matches when one of its deliveries (to `destination`, when given) is
    /// in this status; `filtered` matches events with none.
    pub status: Option<EventStatus>,
    pub source: Option<String>,
    /// Events with a delivery to this destination.
    pub destination: Option<String>,
    /// Received at or after.
    pub since: Option<Timestamp>,
    /// Received before.
    pub until: Option<Timestamp>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum FilterError {
    #[error("status must be queued, processing, retrying, delivered, dead_lettered or filtered")]
    Status,
    #[error("source must be 1-64 characters of A-Z a-z 0-9 _ - .")]
    Source,
    #[error("destination must be 1-64 characters of A-Z a-z 0-9 _ - .")]
    Destination,
    #[error("{0:?} is not an RFC 3339 time such as 2026-11-30T12:00:00Z")]
    Timestamp(String),
}

impl EventFilter {
    /// Builds a filter from text as an operator writes it (query string, CLI flags).
    pub fn parse(
        status: Option<&str>,
        source: Option<String>,
        destination: Option<String>,
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
        if let Some(destination) = &destination {
            SourceName::parse(destination).map_err(|_| FilterError::Destination)?;
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
            destination,
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
            lifecycle::ReplayRefused::NotFound => Self::NoDelivery,
            lifecycle::ReplayRefused::NotReplayable(status) => Self::NotReplayable(status),
        }
    }
}

/// Waiting deliveries are counted up to this many per figure, so that a read costs
/// the same with a day's outage waiting as with none; the age of the oldest due
/// delivery (the lag) is always exact.
pub const WAITING_COUNT_CAP: i64 = 10_000;

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
    /// This many deliveries were queued again.
    Queued(u64),
    /// Nothing was finished: the event's (or the named delivery's) status.
    NotReplayable(EventStatus),
    NotFound,
    /// The event has no delivery to the destination named.
    NoDelivery,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Stores the event durably, or finds the earlier one with the same key.
    async fn insert_event(&self, event: NewEvent) -> Result<InsertOutcome, StoreError>;

    async fn get_event(&self, id: &EventId) -> Result<Option<EventRecord>, StoreError>;

    /// The event a source sent with this idempotency key, if it is still kept.
    async fn find_by_key(&self, source: &str, key: &str)
    -> Result<Option<EventRecord>, StoreError>;

    /// Adds deliveries to an event that has none (a filtered event routed again).
    /// Returns false when the event is gone or has deliveries already.
    async fn add_deliveries(
        &self,
        id: &EventId,
        deliveries: Vec<NewDelivery>,
    ) -> Result<bool, StoreError>;

    /// `None` when the event does not exist.
    async fn list_attempts(&self, id: &EventId) -> Result<Option<Vec<AttemptRecord>>, StoreError>;

    /// Fails attempts whose lease ran out, then leases due deliveries to each
    /// destination wanted, as its pause, breaker, rate, attempts in flight and
    /// ordering allow.
    async fn claim(&self, request: ClaimRequest) -> Result<Claim, StoreError>;

    /// Extends the leases of attempts still running. Returns how many were extended.
    async fn renew_leases(
        &self,
        attempts: Vec<(DeliveryId, u32)>,
        lease: Duration,
    ) -> Result<usize, StoreError>;

    /// Records an attempt's outcome. Returns false if the lease was lost meanwhile.
    async fn finish_attempt(&self, finished: FinishedAttempt) -> Result<bool, StoreError> {
        let mut recorded = self.finish_attempts(vec![finished]).await?;
        Ok(recorded.pop().is_some_and(|r| r.held))
    }

    /// Records many outcomes in one transaction, with what they do to their
    /// destinations' breakers; for each, what was recorded (in the order given).
    async fn finish_attempts(
        &self,
        finished: Vec<FinishedAttempt>,
    ) -> Result<Vec<Recorded>, StoreError>;

    /// Pauses or resumes a destination (for every worker). Returns whether it changed.
    async fn set_paused(&self, destination: &str, paused: bool) -> Result<bool, StoreError>;

    /// Hands an unfinished attempt back (graceful stop): it does not count.
    async fn release(&self, delivery: DeliveryId, attempt: u32) -> Result<(), StoreError>;

    /// Events matching `filter`, newest first, older than the cursor `before`; their
    /// bodies only with `bodies` (a list rarely shows them, and they are most of its
    /// size).
    async fn list_events(
        &self,
        filter: &EventFilter,
        limit: usize,
        before: Option<i64>,
        bodies: bool,
    ) -> Result<EventPage, StoreError>;

    /// Queues an event's delivered or dead-lettered deliveries (only the one to
    /// `destination`, when given) again with fresh attempts; history is kept.
    async fn replay(
        &self,
        id: &EventId,
        destination: Option<&str>,
        budget: &AttemptBudget,
    ) -> Result<ReplayOutcome, StoreError>;

    /// Replays every delivered or dead-lettered delivery of the events matching
    /// `filter` (to its destination, when it names one). Returns how many.
    async fn replay_matching(
        &self,
        filter: &EventFilter,
        budget: &AttemptBudget,
    ) -> Result<u64, StoreError>;

    /// Deletes up to `batch` finished events (with their deliveries and attempts) whose
    /// deliveries were all last updated before the cutoffs: delivered ones before
    /// `delivered_before`, dead-lettered ones before `dead_before` when given (never,
    /// when not). Filtered events count as delivered. Returns how many were deleted.
    async fn prune(
        &self,
        delivered_before: Timestamp,
        dead_before: Option<Timestamp>,
        batch: usize,
    ) -> Result<u64, StoreError>;

    /// Leases up to `limit` alerts that are due to be sent (oldest first), counting the
    /// try; a digest is due once its window has closed.
    async fn claim_alerts(
        &self,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<AlertRecord>, StoreError>;

    /// Records a try of a claimed alert, fenced on its `attempts`. Returns false if
    /// its lease was taken over meanwhile.
    async fn finish_alert(
        &self,
        id: i64,
        attempts: u32,
        outcome: AlertOutcome,
    ) -> Result<bool, StoreError>;

    /// Writes what a worker saw (backlog per minute) and the outcomes it counted, and
    /// applies lag episode changes,
    /// each fenced on the episode's state so that of several workers seeing the same
    /// change, one raises its alert. Returns the alerts raised.
    /// `settle`: how long a recovery alert raised here waits (see [`AlertRules`]).
    async fn record_samples(
        &self,
        samples: Vec<DestinationSample>,
        counts: Vec<MinuteCount>,
        now: Timestamp,
        settle: Duration,
    ) -> Result<usize, StoreError>;

    /// Each destination's minutes since `since`, oldest first.
    async fn destination_minutes(&self, since: Timestamp) -> Result<Vec<MinuteRow>, StoreError>;

    /// Deletes minutes that started before `minutes_before` and sent alerts raised
    /// before `alerts_before`. Returns how many rows went.
    async fn prune_monitoring(
        &self,
        minutes_before: Timestamp,
        alerts_before: Timestamp,
    ) -> Result<u64, StoreError>;

    /// Counts by status (from partial indexes, never the whole history, each up to
    /// [`WAITING_COUNT_CAP`]) and queue lag.
    async fn gauges(&self) -> Result<QueueGauges, StoreError>;

    /// Each destination that has deliveries or outcomes on record.
    async fn destination_stats(&self) -> Result<Vec<DestinationStats>, StoreError>;

    /// Delivered deliveries among the newest `10 × cap`, counted up to `cap`: delivered
    /// events are the history, and counting all of them would read all of it.
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

/// Expired leases are looked for on every claim that finds nothing to do, and at least
/// this often while workers are busy: they are rare, and the look costs a query.
pub const SWEEP_INTERVAL: Duration = Duration::from_millis(250);

/// When this process last looked for expired leases.
#[derive(Debug, Default)]
pub struct SweepClock(std::sync::Mutex<Option<std::time::Instant>>);

impl SweepClock {
    /// Whether a saturated claim should look now (and note that it does).
    pub fn due(&self) -> bool {
        let Ok(mut last) = self.0.lock() else {
            return true;
        };
        let due = last.is_none_or(|at| at.elapsed() >= SWEEP_INTERVAL);
        if due {
            *last = Some(std::time::Instant::now());
        }
        due
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
