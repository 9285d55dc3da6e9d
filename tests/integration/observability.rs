//! What operators read: request ids on answers and log lines, the fault of ours told
//! apart from an unavailable database, and a bound on how long a request may take.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::helpers::*;

async fn every_answer_carries_a_request_id(backend: Backend) {
    let app = TestApp::on(backend).spawn().await;
    let generated = app.client.get(app.url("/health")).send().await.unwrap();
    let id = generated.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(id.len(), 32, "{id}");
    let given = app
        .client
        .get(app.url("/events/evt_nope"))
        .header("x-request-id", "trace-abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(given.headers()["x-request-id"], "trace-abc-123");
    let unusable = app
        .client
        .get(app.url("/health"))
        .header("x-request-id", "has spaces")
        .send()
        .await
        .unwrap();
    assert_ne!(unusable.headers()["x-request-id"], "has spaces");
}

/// A value the schema should never hold is a fault of ours: 500, nothing internal
/// shown; an unavailable database is 503. The two are not confused.
async fn a_fault_of_ours_is_500_not_503(backend: Backend) {
    let app = TestApp::on(backend).spawn().await;
    let id = app.accept("s", "k", json!({})).await;
    // Settled first: a claim after the damage would write over it.
    app.wait_for_status(&id, "delivered", Duration::from_secs(10))
        .await;
    let sql = match backend {
        Backend::Sqlite => {
            format!("UPDATE deliveries SET attempts = 'many' WHERE event_id = '{id}'")
        }
        Backend::Postgres => "ALTER TABLE deliveries ALTER COLUMN attempts TYPE TEXT".to_owned(),
    };
    app.database.execute(&sql).await.unwrap();
    let response = app
        .client
        .get(app.url(&format!("/events/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 500);
    assert!(!response.headers().contains_key("retry-after"));
    let body: Value = response.json().await.unwrap();
    assert_error(&body, "internal_error");
    let text = body.to_string();
    for internal in ["attempts", "column", "sqlite", "postgres", "TEXT", "many"] {
        assert!(!text.contains(internal), "{internal} leaked: {text}");
    }
}

async fn a_request_cannot_outlast_the_request_timeout(backend: Backend) {
    let app = TestApp::on(backend)
        .settings(&[
            ("HOOKRELAY_REQUEST_TIMEOUT", "300ms"),
            ("HOOKRELAY_BODY_READ_TIMEOUT", "200ms"),
        ])
        .spawn()
        .await;
    let blocker = app.database.block_event_inserts().await;
    let started = Instant::now();
    let response = app.post("s", Some("slow"), &json!({})).await;
    let took = started.elapsed();
    blocker.release().await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    assert_error(&response.json().await.unwrap(), "timeout");
    assert!(took < Duration::from_secs(3), "{took:?}");
}

crate::on_both_backends!(
    every_answer_carries_a_request_id,
    a_fault_of_ours_is_500_not_503,
    a_request_cannot_outlast_the_request_timeout,
);
