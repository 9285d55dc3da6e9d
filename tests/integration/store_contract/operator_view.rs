//! What operators do: replays single and in batches, and a filtered event routed later.

use hookrelay::domain::event::EventId;
use hookrelay::domain::lifecycle::EventStatus;
use hookrelay::store::{EventFilter, NewDelivery, ReplayOutcome};

use super::*;

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
    let claimed = claim_one(f.store.as_ref(), LEASE).await;
    assert!(finish(f.store.as_ref(), &claimed, EventStatus::DeadLettered).await);
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
    let claimed = claim_one(f.store.as_ref(), LEASE).await;
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

crate::on_both_backends!(
    replays_queue_finished_events_with_fresh_attempts,
    bulk_replays_go_through_every_batch,
    a_filtered_event_is_kept_and_can_be_routed_later,
);
