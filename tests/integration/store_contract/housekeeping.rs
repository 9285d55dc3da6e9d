//! Pruning takes only old finished events.

use hookrelay::domain::time::Timestamp;

use super::*;

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

crate::on_both_backends!(pruning_takes_only_old_finished_events,);
