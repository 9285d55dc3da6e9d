//! When the database cannot be written: `/ready` says so and no 202 is sent.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::helpers::*;

async fn a_locked_database_means_503_and_nothing_accepted(backend: Backend) {
    let app = TestApp::on(backend).spawn().await;
    assert_eq!(
        app.post("s", Some("before"), &json!({})).await.status(),
        202
    );

    // Another process holding the database's locks makes every write fail.
    let blocker = app.database.block_writes().await;

    let ready = app.client.get(app.url("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["status"], "not_ready");
    assert_ne!(ready["checks"]["database"], "connected");

    let refused = app.post("s", Some("during"), &json!({"n": 1})).await;
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    assert_error(&refused.json().await.unwrap(), "storage_unavailable");

    blocker.release().await;
    eventually(Duration::from_secs(15), "ready again", || async {
        let response = app.client.get(app.url("/ready")).send().await.ok()?;
        (response.status() == 200).then_some(())
    })
    .await;
    // The refused event was not stored: the same key is new now.
    let retried = app.post("s", Some("during"), &json!({"n": 1})).await;
    assert_eq!(retried.status(), 202);
}

async fn storage_errors_never_leak_internals(backend: Backend) {
    let app = TestApp::on(backend).spawn().await;
    let blocker = app.database.block_writes().await;
    let refused = app.post("s", Some("k"), &json!({})).await;
    let text = refused.text().await.unwrap();
    blocker.release().await;
    for secret in [
        "sqlite",
        "SQLITE",
        "database is locked",
        ".db",
        "/tmp",
        "postgres",
        "lock",
    ] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
}

/// `/ready` follows whether webhooks are being committed, not only whether a probe's
/// small write passes: after a refused commit it answers 503 at once.
async fn ready_turns_503_when_webhook_commits_fail(backend: Backend) {
    let app = TestApp::on(backend).spawn().await;
    assert_eq!(
        app.post("s", Some("before"), &json!({})).await.status(),
        202
    );
    let blocker = app.database.block_event_inserts().await;
    let refused = app.post("s", Some("during"), &json!({})).await;
    assert_eq!(refused.status(), 503);

    let started = std::time::Instant::now();
    let ready = app.client.get(app.url("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["checks"]["database"], "writes_failing", "{ready}");
    assert!(started.elapsed() < Duration::from_secs(1));

    blocker.release().await;
    eventually(Duration::from_secs(15), "ready again", || async {
        let response = app.client.get(app.url("/ready")).send().await.ok()?;
        (response.status() == 200).then_some(())
    })
    .await;
    assert_eq!(
        app.post("s", Some("during"), &json!({})).await.status(),
        202
    );
}

crate::on_both_backends!(
    ready_turns_503_when_webhook_commits_fail,
    a_locked_database_means_503_and_nothing_accepted,
    storage_errors_never_leak_internals,
);
