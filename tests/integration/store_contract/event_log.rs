//! What ingest writes: each event once per key, with one delivery per destination, and
//! the schema's refusal of a status the lifecycle does not know.

use hookrelay::domain::event::EventId;
use hookrelay::domain::lifecycle::EventStatus;
use hookrelay::store::{EventFilter, InsertOutcome, ReplayOutcome};

use super::*;

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
    assert_eq!(stored.trace_context.as_deref(), Some(super::TRACE_CONTEXT));
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
    assert!(finish(f.store.as_ref(), billing, EventStatus::Delivered).await);
    assert!(finish(f.store.as_ref(), archive, EventStatus::DeadLettered).await);
    // Still processing elsewhere: the event reads as its least finished delivery.
    assert_eq!(
        status_of(f.store.as_ref(), &id).await.0,
        EventStatus::Processing
    );
    assert!(finish(f.store.as_ref(), analytics, EventStatus::Delivered).await);
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

crate::on_both_backends!(
    inserts_once_per_key,
    the_schema_refuses_an_unknown_status,
    an_event_is_stored_once_with_one_delivery_per_destination,
);
