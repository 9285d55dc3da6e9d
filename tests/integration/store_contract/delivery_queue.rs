//! What a worker takes and gives back: claims and leases, fencing of a stale worker,
//! expiry, renewal, release, and the limits a claim obeys.

use std::time::Duration;

use hookrelay::domain::lifecycle::EventStatus;
use hookrelay::domain::protection::{BreakerChange, BreakerPolicy, Fault, Limits, Wait};
use hookrelay::domain::time::Timestamp;
use hookrelay::store::{ClaimedDelivery, FinishedAttempt};

use super::*;

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
    let claimed = claim_one(f.store.as_ref(), LEASE).await;
    // A claim carries the event's trace context, for the attempt's span.
    assert_eq!(claimed.trace_context.as_deref(), Some(super::TRACE_CONTEXT));
    let mut stale = finished(&claimed, EventStatus::Delivered);
    stale.attempt = 7;
    assert!(!f.store.finish_attempt(stale).await.unwrap());
    assert_eq!(
        status_of(f.store.as_ref(), &id).await,
        (EventStatus::Processing, 1)
    );
    assert!(finish(f.store.as_ref(), &claimed, EventStatus::Retrying).await);
    assert_eq!(
        status_of(f.store.as_ref(), &id).await,
        (EventStatus::Retrying, 1)
    );
    // The same outcome twice: the second finds no attempt to finish.
    assert!(!finish(f.store.as_ref(), &claimed, EventStatus::Delivered).await);
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
    let old = claim_one(f.store.as_ref(), Duration::from_millis(1)).await;
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
    assert!(!finish(f.store.as_ref(), &old, EventStatus::Delivered).await);
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
    let claimed = claim_one(f.store.as_ref(), Duration::from_millis(50)).await;
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
    let claimed = claim_one(f.store.as_ref(), LEASE).await;
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
    let claimed = claim_one(f.store.as_ref(), LEASE).await;
    assert!(finish(f.store.as_ref(), &claimed, EventStatus::Retrying).await);
    let again = claim_one(f.store.as_ref(), LEASE).await;
    assert_eq!(again.attempt, 2);
    f.store.release(again.delivery, 2).await.unwrap();
    assert_eq!(
        status_of(f.store.as_ref(), &id).await,
        (EventStatus::Retrying, 1)
    );
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
    finish(f.store.as_ref(), &first[0], EventStatus::Delivered).await;
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

crate::on_both_backends!(
    claims_lease_each_due_event_once,
    outcomes_are_fenced_by_the_attempt_number,
    an_expired_lease_is_a_failed_attempt_and_fences_the_old_worker,
    renewed_leases_do_not_expire,
    a_released_attempt_does_not_count,
    claims_obey_pause_in_flight_rate_and_the_breaker,
    an_open_breaker_holds_failures_without_using_attempts,
);
