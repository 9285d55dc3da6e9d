//! The `Store` contract, one file per role: the same tests against SQLite and
//! PostgreSQL, through the traits alone. Insert and duplicates, claims and leases, fencing of a stale worker,
//! release, expiry, replays single and in batches, pruning, gauges, the schema's
//! refusal of a status the lifecycle does not know; fan-out (one delivery per
//! destination), filtered events, replays per destination and destination stats.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hookrelay::domain::event::{EventId, IdempotencyKey, SourceName};
use hookrelay::domain::lifecycle::EventStatus;
use hookrelay::domain::protection::{Fault, Limits};
use hookrelay::domain::time::Timestamp;
use hookrelay::store::{
    self, AttemptBudget, AttemptRecord, ClaimRequest, ClaimedDelivery, DatabaseUrl,
    FinishedAttempt, InsertOutcome, NewDelivery, NewEvent, OpenOptions, Store, Want,
};

use crate::support::helpers::*;

mod alert_outbox;
mod delivery_queue;
mod event_log;
mod housekeeping;
mod operator_view;

struct Fixture {
    store: Arc<dyn Store>,
    database: TestDatabase,
    _dir: tempfile::TempDir,
}

async fn fixture(backend: Backend) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let database = TestDatabase::create(backend, dir.path()).await;
    let store = store::open(
        &DatabaseUrl::parse(&database.url).unwrap(),
        OpenOptions {
            migrate: true,
            runs_api: true,
            runs_worker: true,
            pool_size: 4,
        },
    )
    .await
    .expect("store opens");
    Fixture {
        store,
        database,
        _dir: dir,
    }
}

/// The trace context every test event was taken in under.
const TRACE_CONTEXT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\nvendor=x";

fn event(source: &str, key: &str, max_attempts: u32) -> NewEvent {
    routed(source, key, &[("built-in", max_attempts)])
}

fn routed(source: &str, key: &str, destinations: &[(&str, u32)]) -> NewEvent {
    NewEvent {
        id: EventId::generate(),
        source: SourceName::parse(source).unwrap(),
        key: IdempotencyKey::parse(key).unwrap(),
        event_type: Some("invoice.paid".into()),
        content_type: Some("application/json".into()),
        headers: "[]".into(),
        body: Bytes::from_static(b"{}"),
        received_at: Timestamp::now(),
        trace_context: Some(TRACE_CONTEXT.into()),
        deliveries: destinations
            .iter()
            .map(|(destination, max_attempts)| NewDelivery {
                destination: destination.to_string(),
                max_attempts: *max_attempts,
                ordering_key: None,
            })
            .collect(),
    }
}

/// A claim of up to `limit` due deliveries for each destination these tests use,
/// none of them limited.
fn wants(limit: usize, lease: Duration) -> ClaimRequest {
    ClaimRequest {
        lease,
        wants: ["built-in", "billing", "analytics", "archive"]
            .into_iter()
            .map(|destination| Want {
                destination: destination.into(),
                limit,
                limits: Limits::default(),
            })
            .collect(),
    }
}

fn budget(fresh: u32) -> AttemptBudget {
    AttemptBudget {
        default: fresh,
        ..AttemptBudget::default()
    }
}

async fn insert(store: &dyn Store, key: &str, max_attempts: u32) -> EventId {
    match store
        .insert_event(event("s", key, max_attempts))
        .await
        .unwrap()
    {
        InsertOutcome::Accepted(id) => id,
        other => panic!("{key}: {other:?}"),
    }
}

fn finished(claimed: &ClaimedDelivery, status: EventStatus) -> FinishedAttempt {
    FinishedAttempt {
        delivery: claimed.delivery,
        event_id: claimed.event_id.clone(),
        attempt: claimed.attempt,
        max_attempts: claimed.max_attempts,
        status,
        record: AttemptRecord {
            destination: claimed.destination.clone(),
            attempt: claimed.attempt,
            started_at: Timestamp::now(),
            duration: Duration::from_millis(1),
            status_code: Some(200),
            error: None,
            response_body: None,
            probe: claimed.probe,
        },
        next_attempt_at: (status == EventStatus::Retrying).then(Timestamp::now),
        fault: if status == EventStatus::Delivered {
            Fault::None
        } else {
            Fault::Event
        },
        breaker: None,
        alerts: None,
    }
}

async fn status_of(store: &dyn Store, id: &EventId) -> (EventStatus, u32) {
    let event = store.get_event(id).await.unwrap().expect("event exists");
    (event.status(), event.summary().map_or(0, |s| s.attempts))
}

const LEASE: Duration = Duration::from_secs(30);

/// A claim for one limited destination ("built-in" here).
fn limited(limit: usize, limits: Limits) -> ClaimRequest {
    ClaimRequest {
        lease: LEASE,
        wants: vec![Want {
            destination: "built-in".into(),
            limit,
            limits,
        }],
    }
}

/// Claims one due delivery, which there must be.
async fn claim_one(store: &dyn Store, lease: Duration) -> ClaimedDelivery {
    let mut claim = store.claim(wants(1, lease)).await.unwrap();
    assert!(!claim.deliveries.is_empty(), "nothing was due");
    claim.deliveries.remove(0)
}

/// Writes a claimed delivery's outcome; whether its lease still held.
async fn finish(store: &dyn Store, claimed: &ClaimedDelivery, status: EventStatus) -> bool {
    store
        .finish_attempt(finished(claimed, status))
        .await
        .unwrap()
}
