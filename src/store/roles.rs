//! The store's roles, each the part of durable storage one component uses: ingest
//! an `EventLog`, the worker a `DeliveryQueue`, operators an `OperatorView`, alerts an
//! `AlertOutbox`, retention `Housekeeping`. A backend implements them all (`Store`).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;

use super::claims::{Claim, ClaimRequest, FinishedAttempt, Recorded};
use super::errors::StoreError;
use super::filter::{EventFilter, EventPage};
use super::records::{
    AlertOutcome, AlertRecord, AttemptBudget, AttemptRecord, DeliveryId, EventRecord,
    InsertOutcome, NewDelivery, NewEvent, ReplayOutcome,
};
use super::rows::{DestinationSample, DestinationStats, MinuteCount, MinuteRow, QueueGauges};
use crate::domain::event::EventId;
use crate::domain::time::Timestamp;

/// Where ingest writes: each webhook durably, or the earlier one with its key.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Stores the event durably, or finds the earlier one with the same key.
    async fn insert_event(&self, event: NewEvent) -> Result<InsertOutcome, StoreError>;

    /// Proves the database can be reached and written.
    async fn check_writable(&self) -> Result<(), StoreError>;
}

/// What a worker takes and gives back: claims under a lease, renewals, outcomes, hand-backs.
#[async_trait]
pub trait DeliveryQueue: Send + Sync + 'static {
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

    /// Hands an unfinished attempt back (graceful stop): it does not count.
    async fn release(&self, delivery: DeliveryId, attempt: u32) -> Result<(), StoreError>;

    /// Signalled when new work may be due (a new event, a replay).
    fn work_signal(&self) -> Arc<Notify>;
}

/// What operators read and do: events, attempts, replays, pauses and the figures.
#[async_trait]
pub trait OperatorView: Send + Sync + 'static {
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

    /// Pauses or resumes a destination (for every worker). Returns whether it changed.
    async fn set_paused(&self, destination: &str, paused: bool) -> Result<bool, StoreError>;

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

    /// Each destination's minutes since `since`, oldest first.
    async fn destination_minutes(&self, since: Timestamp) -> Result<Vec<MinuteRow>, StoreError>;

    /// Counts by status (from partial indexes, never the whole history, each up to
    /// [`WAITING_COUNT_CAP`](crate::store::WAITING_COUNT_CAP)) and queue lag.
    async fn gauges(&self) -> Result<QueueGauges, StoreError>;

    /// Each destination that has deliveries or outcomes on record.
    async fn destination_stats(&self) -> Result<Vec<DestinationStats>, StoreError>;

    /// Delivered deliveries among the newest `10 × cap`, counted up to `cap`: delivered
    /// events are the history, and counting all of them would read all of it.
    async fn count_delivered(&self, cap: u64) -> Result<u64, StoreError>;
}

/// Alerts waiting to be sent, and the samples that raise lag alerts.
#[async_trait]
pub trait AlertOutbox: Send + Sync + 'static {
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
    /// `settle`: how long a recovery alert raised here waits (see [`AlertRules`](crate::domain::alert::AlertRules)).
    async fn record_samples(
        &self,
        samples: Vec<DestinationSample>,
        counts: Vec<MinuteCount>,
        now: Timestamp,
        settle: Duration,
    ) -> Result<usize, StoreError>;
}

/// What keeps the database small, and its end.
#[async_trait]
pub trait Housekeeping: Send + Sync + 'static {
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

    /// Deletes minutes that started before `minutes_before` and sent alerts raised
    /// before `alerts_before`. Returns how many rows went.
    async fn prune_monitoring(
        &self,
        minutes_before: Timestamp,
        alerts_before: Timestamp,
    ) -> Result<u64, StoreError>;

    /// Finishes pending writes; called once on shutdown.
    async fn close(&self);
}

/// Every role at once: what a backend implements, and what a process opens.
pub trait Store: EventLog + DeliveryQueue + OperatorView + AlertOutbox + Housekeeping {}

impl<T: EventLog + DeliveryQueue + OperatorView + AlertOutbox + Housekeeping> Store for T {}
