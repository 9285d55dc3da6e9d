//! Retention: delivered events go after HOOKRELAY_RETENTION; dead letters stay unless
//! HOOKRELAY_DEAD_RETENTION says otherwise; unfinished events are never touched.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::helpers::*;

async fn accept(app: &TestApp, key: &str, body: Value) -> String {
    app.accept("keep", key, body).await
}

async fn gone(app: &TestApp, id: &str) -> bool {
    let response = app
        .client
        .get(app.url(&format!("/events/{id}")))
        .send()
        .await
        .unwrap();
    response.status() == 404
}

async fn delivered_events_are_pruned_and_the_rest_kept(backend: Backend) {
    let app = TestApp::on(backend)
        .settings(&[
            ("HOOKRELAY_RETENTION", "1s"),
            ("HOOKRELAY_PRUNE_INTERVAL", "200ms"),
            ("HOOKRELAY_MAX_ATTEMPTS", "1"),
        ])
        .spawn()
        .await;
    let delivered = accept(&app, "ok", json!({"fine": true})).await;
    let dead = accept(&app, "dead", json!({"simulate_failure": true})).await;
    let busy = accept(&app, "busy", json!({"simulate_delay_ms": 8000})).await;
    app.wait_for_status(&delivered, "delivered", Duration::from_secs(10))
        .await;
    app.wait_for_status(&dead, "dead_lettered", Duration::from_secs(10))
        .await;

    eventually(
        Duration::from_secs(15),
        "the delivered event to be pruned",
        || async { gone(&app, &delivered).await.then_some(()) },
    )
    .await;
    let attempts = format!("SELECT COUNT(*) FROM attempts WHERE event_id = '{delivered}'");
    assert_eq!(
        app.database.scalar(&attempts).await,
        0,
        "its attempts go with it"
    );
    // Same age, but dead-lettered or still running: kept.
    assert_eq!(app.event(&dead).await["status"], "dead_lettered");
    assert_eq!(app.event(&busy).await["status"], "processing");
    // A redelivery of a pruned event is new again: the key went with it.
    assert_eq!(
        app.post("keep", Some("ok"), &json!({"fine": true}))
            .await
            .status(),
        202
    );
}

async fn dead_letters_go_when_told(backend: Backend) {
    let app = TestApp::on(backend)
        .settings(&[
            ("HOOKRELAY_DEAD_RETENTION", "1s"),
            ("HOOKRELAY_PRUNE_INTERVAL", "200ms"),
            ("HOOKRELAY_MAX_ATTEMPTS", "1"),
        ])
        .spawn()
        .await;
    let delivered = accept(&app, "ok", json!({"fine": true})).await;
    let dead = accept(&app, "dead", json!({"simulate_failure": true})).await;
    app.wait_for_status(&dead, "dead_lettered", Duration::from_secs(10))
        .await;
    eventually(
        Duration::from_secs(15),
        "the dead letter to be pruned",
        || async { gone(&app, &dead).await.then_some(()) },
    )
    .await;
    // The default retention (30 days) keeps the delivered one.
    assert_eq!(app.event(&delivered).await["status"], "delivered");
}

crate::on_both_backends!(
    delivered_events_are_pruned_and_the_rest_kept,
    dead_letters_go_when_told,
);
