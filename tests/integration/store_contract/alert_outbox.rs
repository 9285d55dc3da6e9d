//! Alerts raised once per episode and sent once.

use std::time::Duration;

use hookrelay::domain::alert::{AlertKind, AlertRules, LagChange};
use hookrelay::domain::lifecycle::EventStatus;
use hookrelay::domain::protection::{BreakerChange, BreakerPolicy, Fault, Limits};
use hookrelay::domain::time::Timestamp;
use hookrelay::store::{self, AlertOutcome, AlertRecord, DestinationSample, MinuteCount};

use super::*;

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

crate::on_both_backends!(alerts_are_raised_once_per_episode_and_sent_once,);
