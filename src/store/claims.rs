//! Claims under a lease, and the outcomes written back under it.

use std::time::Duration;

use bytes::Bytes;

use super::records::{AttemptRecord, DeliveryId};
use crate::domain::alert::AlertRules;
use crate::domain::event::EventId;
use crate::domain::lifecycle::EventStatus;
use crate::domain::outcomes::Observed;
use crate::domain::protection::{BreakerChange, BreakerPolicy, Fault, Limits, Wait};
use crate::domain::time::Timestamp;

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
    /// The event's type, when its source or a route recorded one.
    pub event_type: Option<String>,
    /// The delivery's ordering key (as stored: long keys are their digest).
    pub ordering_key: Option<String>,
    /// The trace context the event was taken in under (see [`NewEvent`]).
    ///
    /// [`NewEvent`]: crate::store::NewEvent
    pub trace_context: Option<String>,
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
