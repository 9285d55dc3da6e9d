//! The `Store` contract: the same tests against SQLite and PostgreSQL, through the
//! trait alone. Insert and duplicates, claims and leases, fencing of a stale worker,
//! release, expiry, replays single and in batches, pruning, gauges, and the schema's
//! refusal of a status the lifecycle does not know.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hookrelay::domain::event::{EventId, IdempotencyKey, SourceName};
use hookrelay::domain::lifecycle::EventStatus;
use hookrelay::domain::time::Timestamp;
use hookrelay::store::{
    self, AttemptRecord, ClaimedEvent, DatabaseUrl, EventFilter, FinishedAttempt, InsertOutcome,
    NewEvent, OpenOptions, ReplayOutcome, Store,
};

use crate::helpers::*;

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

fn event(source: &str, key: &str, max_attempts: u32) -> NewEvent {
    NewEvent {
        id: EventId::generate(),
        source: SourceName::parse(source).unwrap(),
        key: IdempotencyKey::parse(key).unwrap(),
        content_type: Some("application/json".into()),
        headers: "[]".into(),
        body: Bytes::from_static(b"{}"),
        received_at: Timestamp::now(),
        max_attempts,
        forward: false,
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

fn finished(claimed: &ClaimedEvent, status: EventStatus) -> FinishedAttempt {
    FinishedAttempt {
        id: claimed.id.clone(),
        attempt: claimed.attempt,
        status,
        record: AttemptRecord {
            attempt: claimed.attempt,
            started_at: Timestamp::now(),
            duration: Duration::from_millis(1),
            status_code: Some(200),
            error: None,
            response_body: None,
        },
        next_attempt_at: (status == EventStatus::Retrying).then(Timestamp::now),
    }
}

async fn status_of(store: &dyn Store, id: &EventId) -> (EventStatus, u32) {
    let event = store.get_event(id).await.unwrap().expect("event exists");
    (event.status, event.attempts)
}

const LEASE: Duration = Duration::from_secs(30);

async fn inserts_once_per_key(backend: Backend) {
    let f = fixture(backend).await;
    let first = insert(f.store.as_ref(), "k", 5).await;
    let again = f.store.insert_event(event("s", "k", 5)).await.unwrap();
    assert_eq!(again, InsertOutcome::Duplicate(first.clone()));
    // Keys are per source.
    let other = f.store.insert_event(event("t", "k", 5)).await.unwrap();
    assert!(matches!(other, InsertOutcome::Accepted(_)));
    let stored = f.store.get_event(&first).await.unwrap().unwrap();
    assert_eq!(
        (stored.status, stored.attempts, stored.max_attempts),
        (EventStatus::Queued, 0, 5)
    );
    assert_eq!(stored.idempotency_key, "k");
    let found = f.store.find_by_key("s", "k").await.unwrap().unwrap();
    assert_eq!(found.id, first);
    assert!(f.store.find_by_key("s", "nope").await.unwrap().is_none());
    assert!(
        f.store
            .get_event(&EventId::from_stored("evt_nope".into()))
            .await
            .unwrap()
            .is_none()
    );
}

async fn claims_lease_each_due_event_once(backend: Backend) {
    let f = fixture(backend).await;
    for key in ["a", "b", "c"] {
        insert(f.store.as_ref(), key, 5).await;
    }
    let first = f.store.claim(2, LEASE).await.unwrap();
    assert_eq!(first.events.len(), 2);
    assert!(first.events.iter().all(|e| e.attempt == 1));
    let second = f.store.claim(2, LEASE).await.unwrap();
    assert_eq!(second.events.len(), 1);
    assert!(f.store.claim(2, LEASE).await.unwrap().events.is_empty());
    for claimed in first.events.iter().chain(&second.events) {
        assert_eq!(
            status_of(f.store.as_ref(), &claimed.id).await,
            (EventStatus::Processing, 1)
        );
    }
    let gauges = f.store.gauges().await.unwrap();
    assert_eq!((gauges.queued, gauges.processing), (0, 3));
}

async fn outcomes_are_fenced_by_the_attempt_number(backend: Backend) {
    let f = fixture(backend).await;
    let id = insert(f.store.as_ref(), "k", 5).await;
    let claimed = f.store.claim(1, LEASE).await.unwrap().events.remove(0);
    let mut stale = finished(&claimed, EventStatus::Delivered);
    stale.attempt = 7;
    assert!(!f.store.finish_attempt(stale).await.unwrap());
    assert_eq!(
        status_of(f.store.as_ref(), &id).await,
        (EventStatus::Processing, 1)
    );
    assert!(
        f.store
            .finish_attempt(finished(&claimed, EventStatus::Retrying))
            .await
            .unwrap()
    );
    assert_eq!(
        status_of(f.store.as_ref(), &id).await,
        (EventStatus::Retrying, 1)
    );
    // The same outcome twice: the second finds no attempt to finish.
    assert!(
        !f.store
            .finish_attempt(finished(&claimed, EventStatus::Delivered))
            .await
            .unwrap()
    );
    assert_eq!(
        status_of(f.store.as_ref(), &id).await,
        (EventStatus::Retrying, 1)
    );
    let attempts = f.store.list_attempts(&id).await.unwrap().unwrap();
    assert_eq!(attempts.len(), 1);
}

async fn an_expired_lease_is_a_failed_attempt_and_fences_the_old_worker(backend: Backend) {
    let f = fixture(backend).await;
    let id = insert(f.store.as_ref(), "k", 5).await;
    let old = f
        .store
        .claim(1, Duration::from_millis(1))
        .await
        .unwrap()
        .events
        .remove(0);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let claim = f.store.claim(1, LEASE).await.unwrap();
    assert_eq!(claim.reclaimed.len(), 1);
    assert_eq!(claim.reclaimed[0].status, EventStatus::Retrying);
    // Due at once: the same claim takes it again, as attempt 2.
    assert_eq!(claim.events.len(), 1);
    assert_eq!(claim.events[0].attempt, 2);
    let attempts = f.store.list_attempts(&id).await.unwrap().unwrap();
    assert!(
        attempts[0]
            .error
            .as_deref()
            .unwrap()
            .contains("lease expired")
    );
    // The first worker comes back late: its outcome is refused.
    assert!(
        !f.store
            .finish_attempt(finished(&old, EventStatus::Delivered))
            .await
            .unwrap()
    );
    assert_eq!(
        status_of(f.store.as_ref(), &id).await,
        (EventStatus::Processing, 2)
    );

    // On the last attempt an expired lease dead-letters.
    let last = insert(f.store.as_ref(), "last", 1).await;
    let _ = f.store.claim(5, Duration::from_millis(1)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let claim = f.store.claim(5, LEASE).await.unwrap();
    let reclaimed = claim.reclaimed.iter().find(|r| r.id == last).unwrap();
    assert_eq!(reclaimed.status, EventStatus::DeadLettered);
}

async fn renewed_leases_do_not_expire(backend: Backend) {
    let f = fixture(backend).await;
    let id = insert(f.store.as_ref(), "k", 5).await;
    let claimed = f
        .store
        .claim(1, Duration::from_millis(50))
        .await
        .unwrap()
        .events
        .remove(0);
    let renewed = f
        .store
        .renew_leases(vec![(claimed.id.clone(), claimed.attempt)], LEASE)
        .await
        .unwrap();
    assert_eq!(renewed, 1);
    // A stale attempt number renews nothing.
    let stale = f
        .store
        .renew_leases(vec![(id.clone(), 9)], LEASE)
        .await
        .unwrap();
    assert_eq!(stale, 0);
    tokio::time::sleep(Duration::from_millis(80)).await;
    let claim = f.store.claim(1, LEASE).await.unwrap();
    assert!(claim.reclaimed.is_empty());
    assert_eq!(
        status_of(f.store.as_ref(), &id).await,
        (EventStatus::Processing, 1)
    );
}

async fn a_released_attempt_does_not_count(backend: Backend) {
    let f = fixture(backend).await;
    let id = insert(f.store.as_ref(), "k", 5).await;
    let claimed = f.store.claim(1, LEASE).await.unwrap().events.remove(0);
    f.store.release(&id, 9).await.unwrap();
    assert_eq!(
        status_of(f.store.as_ref(), &id).await,
        (EventStatus::Processing, 1)
    );
    f.store.release(&id, claimed.attempt).await.unwrap();
    assert_eq!(
        status_of(f.store.as_ref(), &id).await,
        (EventStatus::Queued, 0)
    );
    // After a failed attempt, a released one goes back to retrying.
    let claimed = f.store.claim(1, LEASE).await.unwrap().events.remove(0);
    assert!(
        f.store
            .finish_attempt(finished(&claimed, EventStatus::Retrying))
            .await
            .unwrap()
    );
    let again = f.store.claim(1, LEASE).await.unwrap().events.remove(0);
    assert_eq!(again.attempt, 2);
    f.store.release(&id, 2).await.unwrap();
    assert_eq!(
        status_of(f.store.as_ref(), &id).await,
        (EventStatus::Retrying, 1)
    );
}

async fn replays_queue_finished_events_with_fresh_attempts(backend: Backend) {
    let f = fixture(backend).await;
    let missing = EventId::from_stored("evt_missing".into());
    assert_eq!(
        f.store.replay(&missing, 5).await.unwrap(),
        ReplayOutcome::NotFound
    );
    let id = insert(f.store.as_ref(), "k", 2).await;
    assert_eq!(
        f.store.replay(&id, 5).await.unwrap(),
        ReplayOutcome::NotReplayable(EventStatus::Queued)
    );
    let claimed = f.store.claim(1, LEASE).await.unwrap().events.remove(0);
    assert!(
        f.store
            .finish_attempt(finished(&claimed, EventStatus::DeadLettered))
            .await
            .unwrap()
    );
    assert_eq!(f.store.replay(&id, 5).await.unwrap(), ReplayOutcome::Queued);
    let event = f.store.get_event(&id).await.unwrap().unwrap();
    assert_eq!(
        (event.status, event.attempts, event.max_attempts),
        (EventStatus::Queued, 1, 6)
    );
    let claimed = f.store.claim(1, LEASE).await.unwrap().events.remove(0);
    assert_eq!((claimed.attempt, claimed.attempts_at_replay), (2, 1));
    assert_eq!(claimed.attempt_in_round(), 1);
}

async fn bulk_replays_go_through_every_batch(backend: Backend) {
    let f = fixture(backend).await;
    // More than two batches' worth, finished by hand to keep the test quick.
    let total = hookrelay::store::REPLAY_BATCH * 2 + 7;
    for i in 0..total {
        insert(f.store.as_ref(), &format!("k{i}"), 1).await;
    }
    let keep = insert(f.store.as_ref(), "still-queued", 1).await;
    f.database
        .execute(&format!(
            "UPDATE events SET status = 'delivered', attempts = 1 WHERE id <> '{keep}'"
        ))
        .await
        .unwrap();
    let delivered = EventFilter {
        status: Some(EventStatus::Delivered),
        ..EventFilter::default()
    };
    let replayed = f.store.replay_matching(&delivered, 3).await.unwrap();
    assert_eq!(replayed as usize, total);
    let gauges = f.store.gauges().await.unwrap();
    assert_eq!(gauges.queued as usize, total + 1);
    assert_eq!(
        f.database
            .scalar("SELECT CAST(MAX(max_attempts) AS BIGINT) FROM events")
            .await,
        4
    );
    // Nothing left to replay.
    assert_eq!(f.store.replay_matching(&delivered, 3).await.unwrap(), 0);
}

async fn pruning_takes_only_old_finished_events(backend: Backend) {
    let f = fixture(backend).await;
    let delivered = insert(f.store.as_ref(), "d", 1).await;
    let dead = insert(f.store.as_ref(), "x", 1).await;
    let queued = insert(f.store.as_ref(), "q", 1).await;
    f.database
        .execute(&format!(
            "UPDATE events SET status = 'delivered', updated_at = 0 WHERE id = '{delivered}'"
        ))
        .await
        .unwrap();
    f.database
        .execute(&format!(
            "UPDATE events SET status = 'dead_lettered', updated_at = 0 WHERE id = '{dead}'"
        ))
        .await
        .unwrap();
    f.database
        .execute(&format!(
            "UPDATE events SET updated_at = 0 WHERE id = '{queued}'"
        ))
        .await
        .unwrap();
    let cutoff = Timestamp::now();
    assert_eq!(f.store.prune(cutoff, None, 100).await.unwrap(), 1);
    assert!(f.store.get_event(&delivered).await.unwrap().is_none());
    assert!(f.store.get_event(&dead).await.unwrap().is_some());
    assert_eq!(f.store.prune(cutoff, Some(cutoff), 100).await.unwrap(), 1);
    assert!(f.store.get_event(&dead).await.unwrap().is_none());
    assert!(f.store.get_event(&queued).await.unwrap().is_some());
    assert_eq!(f.store.count_delivered(10).await.unwrap(), 0);
}

async fn the_schema_refuses_an_unknown_status(backend: Backend) {
    let f = fixture(backend).await;
    let id = insert(f.store.as_ref(), "k", 1).await;
    let refused = f
        .database
        .execute(&format!(
            "UPDATE events SET status = 'done' WHERE id = '{id}'"
        ))
        .await;
    assert!(
        refused.is_err(),
        "a status outside the lifecycle was stored"
    );
    assert_eq!(
        status_of(f.store.as_ref(), &id).await,
        (EventStatus::Queued, 0)
    );
}

crate::on_both_backends!(
    inserts_once_per_key,
    claims_lease_each_due_event_once,
    outcomes_are_fenced_by_the_attempt_number,
    an_expired_lease_is_a_failed_attempt_and_fences_the_old_worker,
    renewed_leases_do_not_expire,
    a_released_attempt_does_not_count,
    replays_queue_finished_events_with_fresh_attempts,
    bulk_replays_go_through_every_batch,
    pruning_takes_only_old_finished_events,
    the_schema_refuses_an_unknown_status,
);
