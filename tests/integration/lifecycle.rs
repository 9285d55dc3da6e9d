//! The event lifecycle: retries on the policy's schedule, dead-lettering, leases and
//! the wake-up signal.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::helpers::*;

async fn accept(app: &TestApp, key: &str, body: Value) -> String {
    app.accept("test", key, body).await
}

async fn attempts(app: &TestApp, id: &str) -> Vec<Value> {
    get_json(&app.client, app.address, &format!("/events/{id}/attempts")).await["attempts"]
        .as_array()
        .unwrap()
        .clone()
}

fn started_at(attempt: &Value) -> std::time::SystemTime {
    humantime::parse_rfc3339(attempt["started_at"].as_str().unwrap()).unwrap()
}

async fn a_transient_failure_is_delivered_on_the_third_attempt(backend: Backend) {
    let app = TestApp::on(backend).spawn().await;
    let id = accept(&app, "t", json!({"simulate_transient": true})).await;
    let event = app
        .wait_for_status(&id, "delivered", Duration::from_secs(10))
        .await;
    assert_eq!(event["attempts"], 3);
    assert_eq!(event["next_retry_at"], Value::Null);
    let history = attempts(&app, &id).await;
    let numbers: Vec<_> = history
        .iter()
        .map(|a| a["attempt"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, [1, 2, 3]);
    assert!(history[0]["error"].as_str().unwrap().contains("transient"));
    assert_eq!(history[2]["error"], Value::Null);
    assert_eq!(history[2]["status_code"], Value::Null);
}

async fn a_permanent_failure_is_dead_lettered_after_the_backoff_schedule(backend: Backend) {
    // 100 ms × 2^(n−1) without jitter: gaps of 100, 200, 400 and 800 ms. A long poll
    // interval: only the schedule may start the retries.
    let app = TestApp::on(backend)
        .settings(&[
            ("HOOKRELAY_RETRY_BASE_DELAY", "100ms"),
            ("HOOKRELAY_POLL_INTERVAL", "30s"),
        ])
        .spawn()
        .await;
    let id = accept(&app, "f", json!({"simulate_failure": true})).await;

    let retrying = app
        .wait_for_status(&id, "retrying", Duration::from_secs(10))
        .await;
    assert_eq!(
        retrying["status_description"],
        "Failed, scheduled for retry"
    );
    assert!(retrying["next_retry_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(retrying["last_error"], "Simulated failure");

    let event = app
        .wait_for_status(&id, "dead_lettered", Duration::from_secs(20))
        .await;
    assert_eq!(event["attempts"], 5);
    assert_eq!(event["last_error"], "Simulated failure");
    assert_eq!(event["next_retry_at"], Value::Null);
    assert_eq!(
        event["status_description"],
        "Permanently failed after max attempts"
    );

    let history = attempts(&app, &id).await;
    assert_eq!(history.len(), 5);
    for (n, expected_ms) in [100u64, 200, 400, 800].into_iter().enumerate() {
        let gap = started_at(&history[n + 1])
            .duration_since(started_at(&history[n]))
            .unwrap();
        let expected = Duration::from_millis(expected_ms);
        // Timestamps carry milliseconds; the worker may start a little late, never early.
        assert!(
            gap + Duration::from_millis(2) >= expected
                && gap < expected + Duration::from_millis(300),
            "gap {} was {gap:?}, expected {expected:?}",
            n + 1
        );
    }
}

async fn jitter_keeps_each_gap_within_its_fraction(backend: Backend) {
    let app = TestApp::on(backend)
        .settings(&[
            ("HOOKRELAY_RETRY_BASE_DELAY", "200ms"),
            ("HOOKRELAY_RETRY_FACTOR", "1"),
            ("HOOKRELAY_RETRY_JITTER", "0.5"),
            ("HOOKRELAY_MAX_ATTEMPTS", "4"),
            ("HOOKRELAY_POLL_INTERVAL", "30s"),
        ])
        .spawn()
        .await;
    let id = accept(&app, "j", json!({"simulate_failure": true})).await;
    app.wait_for_status(&id, "dead_lettered", Duration::from_secs(10))
        .await;
    let history = attempts(&app, &id).await;
    assert_eq!(history.len(), 4);
    for pair in history.windows(2) {
        let gap = started_at(&pair[1])
            .duration_since(started_at(&pair[0]))
            .unwrap();
        assert!(
            gap + Duration::from_millis(2) >= Duration::from_millis(100)
                && gap < Duration::from_millis(300 + 300),
            "gap {gap:?} outside 200 ms ± 50 %"
        );
    }
}

async fn max_attempts_is_configurable(backend: Backend) {
    let app = TestApp::on(backend)
        .settings(&[("HOOKRELAY_MAX_ATTEMPTS", "2")])
        .spawn()
        .await;
    let id = accept(&app, "m", json!({"simulate_failure": true})).await;
    let event = app
        .wait_for_status(&id, "dead_lettered", Duration::from_secs(10))
        .await;
    assert_eq!(event["attempts"], 2);
    assert_eq!(event["max_attempts"], 2);
}

async fn an_idle_worker_starts_a_new_event_without_polling(backend: Backend) {
    // A 30 s poll interval: only the wake-up signal can start the event quickly.
    let app = TestApp::on(backend)
        .settings(&[("HOOKRELAY_POLL_INTERVAL", "30s")])
        .spawn()
        .await;
    // Let the worker go idle first.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let posted = Instant::now();
    let id = accept(&app, "w", json!({"hello": "world"})).await;
    app.wait_for_status(&id, "delivered", Duration::from_secs(5))
        .await;
    assert!(
        posted.elapsed() < Duration::from_secs(2),
        "took {:?}",
        posted.elapsed()
    );
}

async fn a_slow_attempt_keeps_its_lease(backend: Backend) {
    // The attempt takes three leases; renewal keeps other claims off it.
    let app = TestApp::on(backend)
        .settings(&[("HOOKRELAY_LEASE", "300ms")])
        .spawn()
        .await;
    let id = accept(&app, "slow", json!({"simulate_delay_ms": 1000})).await;
    let processing = app
        .wait_for_status(&id, "processing", Duration::from_secs(5))
        .await;
    assert_eq!(
        processing["status_description"],
        "Currently being processed by worker"
    );
    let event = app
        .wait_for_status(&id, "delivered", Duration::from_secs(10))
        .await;
    assert_eq!(event["attempts"], 1);
    assert_eq!(attempts(&app, &id).await.len(), 1);
}

async fn graceful_stop_hands_back_a_running_attempt(backend: Backend) {
    let app = TestApp::on(backend).spawn().await;
    let id = accept(&app, "stop", json!({"simulate_delay_ms": 20000})).await;
    app.wait_for_status(&id, "processing", Duration::from_secs(5))
        .await;
    let stopped_at = Instant::now();
    let stopped = app.stop().await;
    assert!(stopped_at.elapsed() < Duration::from_secs(5));

    // Handed back: due again, and the interrupted attempt does not count.
    let handed_back = format!(
        "SELECT COUNT(*) FROM deliveries WHERE event_id = '{id}' AND status = 'queued' AND attempts = 0"
    );
    assert_eq!(stopped.database.scalar(&handed_back).await, 1);
    assert_eq!(
        stopped
            .database
            .scalar("SELECT COUNT(*) FROM attempts")
            .await,
        0
    );
    assert_eq!(
        stopped
            .database
            .scalar("SELECT COUNT(*) FROM deliveries WHERE status = 'processing'")
            .await,
        0
    );
}

crate::on_both_backends!(
    a_transient_failure_is_delivered_on_the_third_attempt,
    a_permanent_failure_is_dead_lettered_after_the_backoff_schedule,
    jitter_keeps_each_gap_within_its_fraction,
    max_attempts_is_configurable,
    an_idle_worker_starts_a_new_event_without_polling,
    a_slow_attempt_keeps_its_lease,
    graceful_stop_hands_back_a_running_attempt,
);
