//! What is stored and read back: events, deliveries, attempts, alerts.

use std::time::Duration;

use bytes::Bytes;

use crate::domain::alert::AlertKind;
use crate::domain::event::{EventId, IdempotencyKey, SourceName};
use crate::domain::lifecycle::{self, DeliveryState, EventStatus};
use crate::domain::time::Timestamp;

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
    /// The ingest span's W3C trace context, kept so that every attempt joins its
    /// trace; `None` when tracing is off.
    pub trace_context: Option<String>,
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
    /// See [`NewEvent::trace_context`].
    pub trace_context: Option<String>,
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

impl From<lifecycle::ReplayRefused> for ReplayOutcome {
    fn from(refused: lifecycle::ReplayRefused) -> Self {
        match refused {
            lifecycle::ReplayRefused::NotFound => Self::NoDelivery,
            lifecycle::ReplayRefused::NotReplayable(status) => Self::NotReplayable(status),
        }
    }
}
