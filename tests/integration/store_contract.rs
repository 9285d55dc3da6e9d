//! The `Store` contract: the same tests against SQLite and PostgreSQL, through the
//! trait alone. Insert and duplicates, claims and leases, fencing of a stale worker,
//! release, expiry, replays single and in batches, pruning, gauges, the schema's
//! refusal of a status the lifecycle does not know; fan-out (one delivery per
//! destination), filtered events, replays per destination and destination stats.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hookrelay::domain::alert::{AlertKind, AlertRules, LagChange};
use hookrelay::domain::event::{EventId, IdempotencyKey, SourceName};
use hookrelay::domain::lifecycle::EventStatus;
use hookrelay::domain::protection::{BreakerChange, BreakerPolicy, Fault, Limits, Wait};
use hookrelay::domain::time::Timestamp;
use hookrelay::store::{
    self, AlertOutcome, AlertRecord, AttemptBudget, AttemptRecord, ClaimRequest, ClaimedDelivery,
    DatabaseUrl, DestinationSample, EventFilter, FinishedAttempt, InsertOutcome, MinuteCount,
    NewDelivery, NewEvent, OpenOptions, ReplayOutcome, Store, Want,
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

async fn inserts_once_per_key(backend: Backend) {
    let f = fixture(backend).await;
    let first = insert(f.store.as_ref(), "k", 5).await;
    let again = f.store.insert_event(event("s", "k", 5)).await.unwrap();
    assert_eq!(again, InsertOutcome::Duplicate(first.clone()));
    // Keys are per source.
    let other = f.store.insert_event(event("t", "k", 5)).await.unwrap();
    assert!(matches!(other, InsertOutcome::Accepted(_)));
    let stored = f.store.get_event(&first).await.unwrap().unwrap();
    let summary = stored.summary().unwrap();
    assert_eq!(
        (stored.status(), summary.attempts, summary.max_attempts),
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
    let first = f.store.claim(wants(2, LEASE)).await.unwrap();
    assert_eq!(first.deliveries.len(), 2);
    assert!(first.deliveries.iter().all(|e| e.attempt == 1));
    let second = f.store.claim(wants(2, LEASE)).await.unwrap();
    assert_eq!(second.deliveries.len(), 1);
    assert!(
        f.store
            .claim(wants(2, LEASE))
            .await
            .unwrap()
            .deliveries
            .is_empty()
    );
    for claimed in first.deliveries.iter().chain(&second.deliveries) {
        assert_eq!(
            status_of(f.store.as_ref(), &claimed.event_id).await,
            (EventStatus::Processing, 1)
        );
    }
    let gauges = f.store.gauges().await.unwrap();
    assert_eq!((gauges.queued, gauges.processing), (0, 3));
}

async fn outcomes_are_fenced_by_the_attempt_number(backend: Backend) {
    let f = fixture(backend).await;
    let id = insert(f.store.as_ref(), "k", 5).await;
    let claimed = f
        .store
        .claim(wants(1, LEASE))
        .await
        .unwrap()
        .deliveries
        .remove(0);
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
        .claim(wants(1, Duration::from_millis(1)))
        .await
        .unwrap()
        .deliveries
        .remove(0);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let claim = f.store.claim(wants(1, LEASE)).await.unwrap();
    assert_eq!(claim.reclaimed.len(), 1);
    assert_eq!(claim.reclaimed[0].status, EventStatus::Retrying);
    // Due at once: the claim says so, and the next one takes it, as attempt 2.
    assert!(claim.next_due.is_some_and(|due| due <= Timestamp::now()));
    let claim = if claim.deliveries.is_empty() {
        f.store.claim(wants(1, LEASE)).await.unwrap()
    } else {
        claim
    };
    assert_eq!(claim.deliveries.len(), 1);
    assert_eq!(claim.deliveries[0].attempt, 2);
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
    let _ = f
        .store
        .claim(wants(5, Duration::from_millis(1)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let claim = f.store.claim(wants(5, LEASE)).await.unwrap();
    let reclaimed = claim.reclaimed.iter().find(|r| r.event_id == last).unwrap();
    assert_eq!(reclaimed.status, EventStatus::DeadLettered);
}

async fn renewed_leases_do_not_expire(backend: Backend) {
    let f = fixture(backend).await;
    let id = insert(f.store.as_ref(), "k", 5).await;
    let claimed = f
        .store
        .claim(wants(1, Duration::from_millis(50)))
        .await
        .unwrap()
        .deliveries
        .remove(0);
    let renewed = f
        .store
        .renew_leases(vec![(claimed.delivery, claimed.attempt)], LEASE)
        .await
        .unwrap();
    assert_eq!(renewed, 1);
    // A stale attempt number renews nothing.
    let stale = f
        .store
        .renew_leases(vec![(claimed.delivery, 9)], LEASE)
        .await
        .unwrap();
    assert_eq!(stale, 0);
    tokio::time::sleep(Duration::from_millis(80)).await;
    let claim = f.store.claim(wants(1, LEASE)).await.unwrap();
    assert!(claim.reclaimed.is_empty());
    assert_eq!(
        status_of(f.store.as_ref(), &id).await,
        (EventStatus::Processing, 1)
    );
}

async fn a_released_attempt_does_not_count(backend: Backend) {
    let f = fixture(backend).await;
    let id = insert(f.store.as_ref(), "k", 5).await;
    let claimed = f
        .store
        .claim(wants(1, LEASE))
        .await
        .unwrap()
        .deliveries
        .remove(0);
    f.store.release(claimed.delivery, 9).await.unwrap();
    assert_eq!(
        status_of(f.store.as_ref(), &id).await,
        (EventStatus::Processing, 1)
    );
    f.store
        .release(claimed.delivery, claimed.attempt)
        .await
        .unwrap();
    assert_eq!(
        status_of(f.store.as_ref(), &id).await,
        (EventStatus::Queued, 0)
    );
    // After a failed attempt, a released one goes back to retrying.
    let claimed = f
        .store
        .claim(wants(1, LEASE))
        .await
        .unwrap()
        .deliveries
        .remove(0);
    assert!(
        f.store
            .finish_attempt(finished(&claimed, EventStatus::Retrying))
            .await
            .unwrap()
    );
    let again = f
        .store
        .claim(wants(1, LEASE))
        .await
        .unwrap()
        .deliveries
        .remove(0);
    assert_eq!(again.attempt, 2);
    f.store.release(again.delivery, 2).await.unwrap();
    assert_eq!(
        status_of(f.store.as_ref(), &id).await,
        (EventStatus::Retrying, 1)
    );
}

async fn replays_queue_finished_events_with_fresh_attempts(backend: Backend) {
    let f = fixture(backend).await;
    let missing = EventId::from_stored("evt_missing".into());
    assert_eq!(
        f.store.replay(&missing, None, &budget(5)).await.unwrap(),
        ReplayOutcome::NotFound
    );
    let id = insert(f.store.as_ref(), "k", 2).await;
    assert_eq!(
        f.store.replay(&id, None, &budget(5)).await.unwrap(),
        ReplayOutcome::NotReplayable(EventStatus::Queued)
    );
    let claimed = f
        .store
        .claim(wants(1, LEASE))
        .await
        .unwrap()
        .deliveries
        .remove(0);
    assert!(
        f.store
            .finish_attempt(finished(&claimed, EventStatus::DeadLettered))
            .await
            .unwrap()
    );
    assert_eq!(
        f.store.replay(&id, None, &budget(5)).await.unwrap(),
        ReplayOutcome::Queued(1)
    );
    let event = f.store.get_event(&id).await.unwrap().unwrap();
    let summary = event.summary().unwrap();
    assert_eq!(
        (event.status(), summary.attempts, summary.max_attempts),
        (EventStatus::Queued, 1, 6)
    );
    let claimed = f
        .store
        .claim(wants(1, LEASE))
        .await
        .unwrap()
        .deliveries
        .remove(0);
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
            "UPDATE deliveries SET status = 'delivered', attempts = 1 WHERE event_id <> '{keep}'"
        ))
        .await
        .unwrap();
    let delivered = EventFilter {
        status: Some(EventStatus::Delivered),
        ..EventFilter::default()
    };
    let replayed = f
        .store
        .replay_matching(&delivered, &budget(3))
        .await
        .unwrap();
    assert_eq!(replayed as usize, total);
    let gauges = f.store.gauges().await.unwrap();
    assert_eq!(gauges.queued as usize, total + 1);
    assert_eq!(
        f.database
            .scalar("SELECT CAST(MAX(max_attempts) AS BIGINT) FROM deliveries")
            .await,
        4
    );
    // Nothing left to replay.
    assert_eq!(
        f.store
            .replay_matching(&delivered, &budget(3))
            .await
            .unwrap(),
        0
    );
}

async fn pruning_takes_only_old_finished_events(backend: Backend) {
    let f = fixture(backend).await;
    let delivered = insert(f.store.as_ref(), "d", 1).await;
    let dead = insert(f.store.as_ref(), "x", 1).await;
    let queued = insert(f.store.as_ref(), "q", 1).await;
    f.database
        .execute(&format!(
            "UPDATE deliveries SET status = 'delivered', updated_at = 0 WHERE event_id = '{delivered}'"
        ))
        .await
        .unwrap();
    f.database
        .execute(&format!(
            "UPDATE deliveries SET status = 'dead_lettered', updated_at = 0 WHERE event_id = '{dead}'"
        ))
        .await
        .unwrap();
    f.database
        .execute(&format!(
            "UPDATE deliveries SET updated_at = 0 WHERE event_id = '{queued}'"
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
            "UPDATE deliveries SET status = 'done' WHERE event_id = '{id}'"
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

async fn an_event_is_stored_once_with_one_delivery_per_destination(backend: Backend) {
    let f = fixture(backend).await;
    let fanned = routed(
        "stripe",
        "k",
        &[("billing", 3), ("analytics", 8), ("archive", 5)],
    );
    let id = fanned.id.clone();
    f.store.insert_event(fanned).await.unwrap();
    // A duplicate adds neither an event nor deliveries.
    let again = routed("stripe", "k", &[("billing", 3)]);
    assert_eq!(
        f.store.insert_event(again).await.unwrap(),
        InsertOutcome::Duplicate(id.clone())
    );
    assert_eq!(f.database.scalar("SELECT COUNT(*) FROM events").await, 1);
    assert_eq!(
        f.database.scalar("SELECT COUNT(*) FROM deliveries").await,
        3
    );
    let event = f.store.get_event(&id).await.unwrap().unwrap();
    let names: Vec<(&str, u32)> = event
        .deliveries
        .iter()
        .map(|d| (d.destination.as_str(), d.state.max_attempts))
        .collect();
    assert_eq!(
        names,
        vec![("billing", 3), ("analytics", 8), ("archive", 5)]
    );
    assert_eq!(event.event_type.as_deref(), Some("invoice.paid"));

    // Each delivery is claimed on its own; outcomes name their destination.
    let mut claimed = f.store.claim(wants(10, LEASE)).await.unwrap().deliveries;
    assert_eq!(claimed.len(), 3);
    claimed.sort_by(|a, b| a.destination.cmp(&b.destination));
    assert!(
        claimed
            .iter()
            .all(|c| c.event_id == id && c.source == "stripe")
    );
    let (analytics, archive, billing) = (&claimed[0], &claimed[1], &claimed[2]);
    assert!(
        f.store
            .finish_attempt(finished(billing, EventStatus::Delivered))
            .await
            .unwrap()
    );
    assert!(
        f.store
            .finish_attempt(finished(archive, EventStatus::DeadLettered))
            .await
            .unwrap()
    );
    // Still processing elsewhere: the event reads as its least finished delivery.
    assert_eq!(
        status_of(f.store.as_ref(), &id).await.0,
        EventStatus::Processing
    );
    assert!(
        f.store
            .finish_attempt(finished(analytics, EventStatus::Delivered))
            .await
            .unwrap()
    );
    assert_eq!(
        status_of(f.store.as_ref(), &id).await.0,
        EventStatus::DeadLettered
    );
    let attempts = f.store.list_attempts(&id).await.unwrap().unwrap();
    let mut destinations: Vec<&str> = attempts.iter().map(|a| a.destination.as_str()).collect();
    destinations.sort();
    assert_eq!(destinations, ["analytics", "archive", "billing"]);

    // Listing by destination and status finds it through the one delivery that matches.
    let dead_archive = EventFilter {
        status: Some(EventStatus::DeadLettered),
        destination: Some("archive".into()),
        ..EventFilter::default()
    };
    assert_eq!(
        f.store
            .list_events(&dead_archive, 10, None, false)
            .await
            .unwrap()
            .events
            .len(),
        1
    );
    let dead_billing = EventFilter {
        destination: Some("billing".into()),
        ..dead_archive.clone()
    };
    assert!(
        f.store
            .list_events(&dead_billing, 10, None, false)
            .await
            .unwrap()
            .events
            .is_empty()
    );

    // Replay one destination only; the others keep their state.
    assert_eq!(
        f.store
            .replay(&id, Some("nowhere"), &budget(5))
            .await
            .unwrap(),
        ReplayOutcome::NoDelivery
    );
    assert_eq!(
        f.store
            .replay(&id, Some("archive"), &budget(5))
            .await
            .unwrap(),
        ReplayOutcome::Queued(1)
    );
    let event = f.store.get_event(&id).await.unwrap().unwrap();
    let states: Vec<(&str, EventStatus)> = event
        .deliveries
        .iter()
        .map(|d| (d.destination.as_str(), d.state.status))
        .collect();
    assert_eq!(
        states,
        vec![
            ("billing", EventStatus::Delivered),
            ("analytics", EventStatus::Delivered),
            ("archive", EventStatus::Queued)
        ]
    );
    let stats = f.store.destination_stats().await.unwrap();
    let archive = stats.iter().find(|s| s.name == "archive").unwrap();
    assert_eq!((archive.backlog, archive.in_flight), (1, 0));
    assert!(archive.last_failure_at.is_some() && archive.last_success_at.is_none());
    let billing = stats.iter().find(|s| s.name == "billing").unwrap();
    assert!(billing.last_success_at.is_some() && billing.backlog == 0);
    // Bulk replay by destination takes only that destination's deliveries.
    let delivered_billing = EventFilter {
        destination: Some("billing".into()),
        ..EventFilter::default()
    };
    assert_eq!(
        f.store
            .replay_matching(&delivered_billing, &budget(2))
            .await
            .unwrap(),
        1
    );
}

async fn a_filtered_event_is_kept_and_can_be_routed_later(backend: Backend) {
    let f = fixture(backend).await;
    let filtered = routed("stripe", "k", &[]);
    let id = filtered.id.clone();
    f.store.insert_event(filtered).await.unwrap();
    let event = f.store.get_event(&id).await.unwrap().unwrap();
    assert_eq!(event.status(), EventStatus::Filtered);
    assert!(
        f.store
            .claim(wants(10, LEASE))
            .await
            .unwrap()
            .deliveries
            .is_empty()
    );
    let only_filtered = EventFilter {
        status: Some(EventStatus::Filtered),
        ..EventFilter::default()
    };
    insert(f.store.as_ref(), "routed", 5).await;
    let page = f
        .store
        .list_events(&only_filtered, 10, None, false)
        .await
        .unwrap();
    assert_eq!(page.events.len(), 1);
    assert_eq!(page.events[0].id, id);
    assert_eq!(
        f.store.replay(&id, None, &budget(5)).await.unwrap(),
        ReplayOutcome::NotReplayable(EventStatus::Filtered)
    );
    let route = vec![NewDelivery {
        destination: "billing".into(),
        max_attempts: 4,
        ordering_key: None,
    }];
    assert!(f.store.add_deliveries(&id, route.clone()).await.unwrap());
    // Once routed, never routed twice.
    assert!(!f.store.add_deliveries(&id, route).await.unwrap());
    let claimed: Vec<_> = f
        .store
        .claim(wants(10, LEASE))
        .await
        .unwrap()
        .deliveries
        .into_iter()
        .filter(|c| c.event_id == id)
        .collect();
    assert_eq!(claimed.len(), 1);
    assert_eq!(
        (claimed[0].destination.as_str(), claimed[0].max_attempts),
        ("billing", 4)
    );
}

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

async fn claims_obey_pause_in_flight_rate_and_the_breaker(backend: Backend) {
    let f = fixture(backend).await;
    for key in ["a", "b", "c", "d", "e", "f"] {
        insert(f.store.as_ref(), key, 5).await;
    }
    // Paused: nothing, and the claim says why.
    assert!(f.store.set_paused("built-in", true).await.unwrap());
    assert!(!f.store.set_paused("built-in", true).await.unwrap());
    let claim = f.store.claim(limited(10, Limits::default())).await.unwrap();
    assert!(claim.deliveries.is_empty());
    assert_eq!(claim.waits, vec![("built-in".to_owned(), Wait::Paused)]);
    let stats = f.store.destination_stats().await.unwrap();
    assert!(
        stats
            .iter()
            .any(|s| s.name == "built-in" && s.flow.paused && s.paused_at.is_some())
    );
    assert!(f.store.set_paused("built-in", false).await.unwrap());

    // max_in_flight counts what every worker has running.
    let two = Limits {
        max_in_flight: Some(2),
        ..Limits::default()
    };
    let first = f.store.claim(limited(10, two)).await.unwrap().deliveries;
    assert_eq!(first.len(), 2);
    let claim = f.store.claim(limited(10, two)).await.unwrap();
    assert!(claim.deliveries.is_empty());
    assert_eq!(claim.waits, vec![("built-in".to_owned(), Wait::InFlight)]);
    f.store
        .finish_attempt(finished(&first[0], EventStatus::Delivered))
        .await
        .unwrap();
    assert_eq!(
        f.store
            .claim(limited(10, two))
            .await
            .unwrap()
            .deliveries
            .len(),
        1
    );

    // A rate of 10/s holds a burst of one; the rest is throttled until a token is back.
    let rate = Limits {
        rate: Some("10/s".parse().unwrap()),
        ..Limits::default()
    };
    let claim = f.store.claim(limited(10, rate)).await.unwrap();
    assert_eq!(claim.deliveries.len(), 1);
    match claim.waits.as_slice() {
        [(name, Wait::Throttled(until))] => {
            assert_eq!(name, "built-in");
            assert!(*until > Timestamp::now());
            assert!(*until <= Timestamp::now().plus(Duration::from_millis(110)));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        f.store
            .claim(limited(10, rate))
            .await
            .unwrap()
            .deliveries
            .is_empty()
    );
}

async fn an_open_breaker_holds_failures_without_using_attempts(backend: Backend) {
    let f = fixture(backend).await;
    let id = insert(f.store.as_ref(), "k", 2).await;
    let policy = BreakerPolicy {
        failures: 1,
        first_probe: Duration::from_millis(50),
        max_probe: Duration::from_millis(50),
    };
    let limits = Limits {
        breaker: Some(policy),
        ..Limits::default()
    };
    let failed = |claimed: &ClaimedDelivery, status: EventStatus| FinishedAttempt {
        fault: Fault::Destination,
        breaker: Some(policy),
        ..finished(claimed, status)
    };
    // The first failure opens the breaker (one failure in a row is enough here).
    let claimed = f
        .store
        .claim(limited(1, limits))
        .await
        .unwrap()
        .deliveries
        .remove(0);
    let recorded = f
        .store
        .finish_attempts(vec![failed(&claimed, EventStatus::Retrying)])
        .await
        .unwrap();
    assert_eq!(recorded[0].breaker, Some(BreakerChange::Opened));
    // Open: nothing until the probe's time.
    let claim = f.store.claim(limited(1, limits)).await.unwrap();
    assert!(claim.deliveries.is_empty());
    assert!(matches!(claim.waits[0].1, Wait::BreakerOpen(_)));
    // The probe is the oldest due delivery; its failure is held, not dead-lettered,
    // though it was the last of its two attempts.
    tokio::time::sleep(Duration::from_millis(60)).await;
    let probe = f
        .store
        .claim(limited(1, limits))
        .await
        .unwrap()
        .deliveries
        .remove(0);
    assert!(probe.probe);
    assert_eq!(probe.attempt, 2);
    let recorded = f
        .store
        .finish_attempts(vec![failed(&probe, EventStatus::DeadLettered)])
        .await
        .unwrap();
    assert!(recorded[0].held);
    assert_eq!(recorded[0].status, EventStatus::Retrying);
    let event = f.store.get_event(&id).await.unwrap().unwrap();
    let state = &event.deliveries[0].state;
    assert_eq!((state.status, state.attempts), (EventStatus::Retrying, 2));
    assert!(
        state.max_attempts >= 3,
        "held: one more attempt than it used"
    );
    let attempts = f.store.list_attempts(&id).await.unwrap().unwrap();
    assert_eq!(
        attempts.iter().map(|a| a.probe).collect::<Vec<_>>(),
        [false, true]
    );
    // A successful probe closes it.
    tokio::time::sleep(Duration::from_millis(60)).await;
    let probe = f
        .store
        .claim(limited(1, limits))
        .await
        .unwrap()
        .deliveries
        .remove(0);
    let mut delivered = finished(&probe, EventStatus::Delivered);
    delivered.breaker = Some(policy);
    let recorded = f.store.finish_attempts(vec![delivered]).await.unwrap();
    assert_eq!(recorded[0].breaker, Some(BreakerChange::Closed));
    let stats = f.store.destination_stats().await.unwrap();
    let built_in = stats.iter().find(|s| s.name == "built-in").unwrap();
    assert_eq!((built_in.flow.breaker, built_in.flow.failures), (None, 0));
}

async fn alerts_are_raised_once_per_episode_and_sent_once(backend: Backend) {
    let f = fixture(backend).await;
    let hour = AlertRules {
        settle: Duration::ZERO,
        digest: Duration::from_secs(3600),
    };
    // Dead letters in two batches go into one digest, not yet due.
    for key in ["d1", "d2"] {
        insert(f.store.as_ref(), key, 1).await;
        let claimed = f.store.claim(wants(1, LEASE)).await.unwrap().deliveries;
        let mut dead = finished(&claimed[0], EventStatus::DeadLettered);
        dead.alerts = Some(hour);
        f.store.finish_attempts(vec![dead]).await.unwrap();
    }
    assert!(f.store.claim_alerts(10, LEASE).await.unwrap().is_empty());
    let stats = f.store.destination_stats().await.unwrap();
    let built_in = stats.iter().find(|s| s.name == "built-in").unwrap();
    let digest = built_in.last_alert.clone().expect("a digest");
    assert_eq!((digest.kind, digest.count), (AlertKind::DeadLettered, 2));

    // A breaker that opens raises one alert, due at once, claimed by one sender.
    insert(f.store.as_ref(), "b1", 5).await;
    let claimed = f.store.claim(wants(1, LEASE)).await.unwrap().deliveries;
    let mut failed = finished(&claimed[0], EventStatus::Retrying);
    failed.fault = Fault::Destination;
    let policy = BreakerPolicy {
        failures: 1,
        first_probe: Duration::from_millis(50),
        max_probe: Duration::from_millis(50),
    };
    failed.breaker = Some(policy);
    failed.alerts = Some(hour);
    let recorded = f.store.finish_attempts(vec![failed]).await.unwrap();
    assert_eq!(recorded[0].breaker, Some(BreakerChange::Opened));
    let (a, b) = tokio::join!(
        f.store.claim_alerts(10, LEASE),
        f.store.claim_alerts(10, LEASE)
    );
    let mut claimed: Vec<AlertRecord> = a.unwrap().into_iter().chain(b.unwrap()).collect();
    assert_eq!(claimed.len(), 1, "{claimed:?}");
    let alert = claimed.remove(0);
    assert_eq!((alert.kind, alert.attempts), (AlertKind::Failing, 1));
    assert!(
        alert.details.contains("\"failures\":1"),
        "{}",
        alert.details
    );
    // Not taken: tried again, and a stale sender's outcome is refused.
    let retry = AlertOutcome::Retry {
        at: Timestamp::now(),
        error: "HTTP 500".into(),
    };
    assert!(
        f.store
            .finish_alert(alert.id, 1, retry.clone())
            .await
            .unwrap()
    );
    let again = f.store.claim_alerts(10, LEASE).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 2);
    assert_eq!(again[0].last_error.as_deref(), Some("HTTP 500"));
    assert!(
        !f.store
            .finish_alert(alert.id, 1, AlertOutcome::Sent)
            .await
            .unwrap()
    );
    assert!(
        f.store
            .finish_alert(alert.id, 2, AlertOutcome::Sent)
            .await
            .unwrap()
    );
    assert!(f.store.claim_alerts(10, LEASE).await.unwrap().is_empty());

    // A successful probe closes the breaker: one recovery alert for the episode, raised
    // with the outcome or by the next look at the destinations.
    tokio::time::sleep(Duration::from_millis(60)).await;
    let limits = Limits {
        breaker: Some(policy),
        ..Limits::default()
    };
    let probe = f
        .store
        .claim(limited(1, limits))
        .await
        .unwrap()
        .deliveries
        .remove(0);
    assert!(probe.probe);
    let mut delivered = finished(&probe, EventStatus::Delivered);
    delivered.breaker = Some(policy);
    delivered.alerts = Some(hour);
    let recorded = f.store.finish_attempts(vec![delivered]).await.unwrap();
    assert_eq!(recorded[0].breaker, Some(BreakerChange::Closed));
    for _ in 0..2 {
        f.store
            .record_samples(Vec::new(), Vec::new(), Timestamp::now(), Duration::ZERO)
            .await
            .unwrap();
    }
    let recovered = f.store.claim_alerts(10, LEASE).await.unwrap();
    assert_eq!(
        recovered.iter().map(|a| a.kind).collect::<Vec<_>>(),
        [AlertKind::Recovered]
    );
    assert_eq!(recovered[0].episode, alert.episode);
    assert!(
        f.store
            .finish_alert(recovered[0].id, 1, AlertOutcome::Sent)
            .await
            .unwrap()
    );

    // A lag episode seen by two workers raises one alert when it starts and one when
    // it ends.
    let since = Timestamp(Timestamp::now().0 - 10_000_000);
    let sample = |lag| DestinationSample {
        destination: "billing".into(),
        waiting: 7,
        lag: Some(lag),
    };
    let now = Timestamp::now();
    // Two workers' counts of the same minute add up.
    let count = |delivered, failed| MinuteCount {
        destination: "billing".into(),
        minute: store::minute_of(now),
        delivered,
        failed,
    };
    for counts in [vec![count(3, 1)], vec![count(2, 0)]] {
        f.store
            .record_samples(Vec::new(), counts, now, Duration::ZERO)
            .await
            .unwrap();
    }
    let raised = |lag| {
        let store = f.store.clone();
        async move {
            store
                .record_samples(vec![sample(lag)], Vec::new(), now, Duration::ZERO)
                .await
                .unwrap()
        }
    };
    let started = LagChange::Started { since };
    assert_eq!(raised(started).await, 1);
    assert_eq!(raised(started).await, 0, "one alert per episode");
    let stats = f.store.destination_stats().await.unwrap();
    let billing = stats.iter().find(|s| s.name == "billing").unwrap();
    assert_eq!(billing.lagging_since, Some(since));
    assert_eq!(raised(LagChange::Ended).await, 1);
    assert_eq!(raised(LagChange::Ended).await, 0);
    let kinds: Vec<AlertKind> = f
        .store
        .claim_alerts(10, LEASE)
        .await
        .unwrap()
        .iter()
        .map(|a| a.kind)
        .collect();
    assert_eq!(kinds, [AlertKind::Lagging, AlertKind::CaughtUp]);
    let backlog = f.store.destination_minutes(Timestamp(0)).await.unwrap();
    assert!(
        backlog
            .iter()
            .any(|m| m.destination == "billing"
                && (m.delivered, m.failed, m.backlog) == (5, 1, Some(7))),
        "{backlog:?}"
    );
    // Pruning keeps the hour and pending alerts.
    f.store
        .prune_monitoring(Timestamp(0), Timestamp::now().plus(Duration::from_secs(1)))
        .await
        .unwrap();
    assert_eq!(
        f.database
            .scalar("SELECT COUNT(*) FROM alerts WHERE status = 'sent'")
            .await,
        0
    );
    assert!(f.database.scalar("SELECT COUNT(*) FROM alerts").await >= 3);
}

crate::on_both_backends!(
    alerts_are_raised_once_per_episode_and_sent_once,
    claims_obey_pause_in_flight_rate_and_the_breaker,
    an_open_breaker_holds_failures_without_using_attempts,
    an_event_is_stored_once_with_one_delivery_per_destination,
    a_filtered_event_is_kept_and_can_be_routed_later,
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
