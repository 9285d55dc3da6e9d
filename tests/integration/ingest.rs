//! `POST /webhooks/{source}` and `GET /events/{id}`: every row of the contract.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::helpers::*;

async fn a_new_event_is_accepted_and_readable(backend: Backend) {
    let app = TestApp::on(backend).spawn().await;
    let response = app
        .post(
            "stripe",
            Some("evt-1"),
            &json!({"type": "payment.completed"}),
        )
        .await;
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "accepted");
    let id = body["event_id"].as_str().unwrap();
    assert!(id.starts_with("evt_"), "{id}");
    assert_eq!(body.as_object().unwrap().len(), 2);

    let event = app
        .wait_for_status(id, "delivered", Duration::from_secs(10))
        .await;
    let fields: HashSet<&str> = event
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let expected: HashSet<&str> = [
        "id",
        "source",
        "status",
        "attempts",
        "max_attempts",
        "last_error",
        "next_retry_at",
        "created_at",
        "updated_at",
        "payload",
        "status_description",
        // Added with fan-out: the event's type and its deliveries.
        "event_type",
        "deliveries",
        // Added with tracing: the trace it was taken in under (null when off).
        "trace_id",
    ]
    .into();
    assert_eq!(fields, expected);
    assert_eq!(event["id"], id);
    assert_eq!(event["source"], "stripe");
    assert_eq!(event["attempts"], 1);
    assert_eq!(event["max_attempts"], 5);
    assert_eq!(event["last_error"], Value::Null);
    assert_eq!(event["next_retry_at"], Value::Null);
    assert_eq!(event["payload"], json!({"type": "payment.completed"}));
    assert_eq!(event["status_description"], "Successfully processed");
    for field in ["created_at", "updated_at"] {
        let text = event[field].as_str().unwrap();
        assert!(text.ends_with('Z') && text.contains('T'), "{field}: {text}");
        humantime::parse_rfc3339(text).expect("RFC 3339");
    }
}

async fn a_redelivery_returns_the_first_id(backend: Backend) {
    let app = TestApp::on(backend).spawn().await;
    let first: Value = app
        .post("github", Some("k"), &json!({"a": 1}))
        .await
        .json()
        .await
        .unwrap();
    let again = app.post("github", Some("k"), &json!({"a": 2})).await;
    assert_eq!(again.status(), 200);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["status"], "duplicate");
    assert_eq!(again["event_id"], first["event_id"]);
    // Keys are per source: the same key from another source is a new event.
    let other = app.post("shopify", Some("k"), &json!({"a": 1})).await;
    assert_eq!(other.status(), 202);
}

async fn fifty_racing_clients_make_one_event(backend: Backend) {
    let app = TestApp::on(backend).spawn().await;
    let requests = (0..50).map(|_| {
        let client = app.client.clone();
        let address = app.address;
        tokio::spawn(async move {
            let response =
                post_json(&client, address, "race", Some("same-key"), &json!({"x": 1})).await;
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap();
            (status, body)
        })
    });
    let mut answers = Vec::new();
    for request in requests {
        answers.push(request.await.unwrap());
    }
    let accepted: Vec<_> = answers.iter().filter(|(s, _)| *s == 202).collect();
    let duplicates: Vec<_> = answers.iter().filter(|(s, _)| *s == 200).collect();
    assert_eq!(accepted.len(), 1, "{answers:?}");
    assert_eq!(duplicates.len(), 49, "{answers:?}");
    let id = &accepted[0].1["event_id"];
    assert!(
        duplicates
            .iter()
            .all(|(_, body)| &body["event_id"] == id && body["status"] == "duplicate")
    );

    let stored = app
        .database
        .scalar("SELECT COUNT(*) FROM events WHERE source = 'race'")
        .await;
    assert_eq!(stored, 1);
}

async fn any_json_value_is_accepted_and_charset_is_fine(backend: Backend) {
    let app = TestApp::on(backend).spawn().await;
    let array = app
        .post("batch", Some("arr"), &json!([{"id": 1}, {"id": 2}]))
        .await;
    assert_eq!(array.status(), 202);
    let id = array.json::<Value>().await.unwrap()["event_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        app.event(&id).await["payload"],
        json!([{"id": 1}, {"id": 2}])
    );

    for (n, content_type) in [
        "application/json; charset=utf-8",
        "Application/JSON;charset=UTF-8",
        "application/vnd.api+json",
    ]
    .iter()
    .enumerate()
    {
        let response = app
            .client
            .post(app.url("/webhooks/ct"))
            .header("content-type", *content_type)
            .header("idempotency-key", format!("ct-{n}"))
            .body("{\"ok\":true}")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202, "{content_type}");
    }
}

async fn requests_without_a_key_are_refused(backend: Backend) {
    let app = TestApp::on(backend).spawn().await;
    for key in [None, Some("   ")] {
        let response = app.post("stripe", key, &json!({"a": 1})).await;
        assert_eq!(response.status(), 400);
        assert_error(&response.json().await.unwrap(), "missing_idempotency_key");
    }
}

async fn keys_longer_than_255_bytes_are_refused(backend: Backend) {
    let app = TestApp::on(backend).spawn().await;
    let longest = "k".repeat(255);
    assert_eq!(
        app.post("s", Some(&longest), &json!({})).await.status(),
        202
    );
    let response = app.post("s", Some(&"k".repeat(256)), &json!({})).await;
    assert_eq!(response.status(), 400);
    assert_error(&response.json().await.unwrap(), "invalid_idempotency_key");
}

async fn bodies_that_are_not_json_are_refused(backend: Backend) {
    let app = TestApp::on(backend).spawn().await;
    for body in ["{", "", "{\"a\":1}}", "nul"] {
        let response = app
            .client
            .post(app.url("/webhooks/stripe"))
            .header("content-type", "application/json")
            .header("idempotency-key", "k")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{body:?}");
        assert_error(&response.json().await.unwrap(), "invalid_json");
    }
}

async fn other_media_types_are_refused(backend: Backend) {
    let app = TestApp::on(backend).spawn().await;
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let mut request = app
            .client
            .post(app.url("/webhooks/stripe"))
            .header("idempotency-key", "k")
            .body("{}");
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 415, "{content_type:?}");
        assert_error(&response.json().await.unwrap(), "unsupported_media_type");
    }
}

async fn bodies_over_the_limit_are_refused(backend: Backend) {
    let app = TestApp::on(backend)
        .settings(&[("HOOKRELAY_MAX_BODY", "1KiB")])
        .spawn()
        .await;
    let big = json!({"data": "x".repeat(2000)});
    let response = app.post("stripe", Some("big"), &big).await;
    assert_eq!(response.status(), 413);
    assert_error(&response.json().await.unwrap(), "payload_too_large");
    let fits = json!({"data": "x".repeat(900)});
    assert_eq!(app.post("stripe", Some("fits"), &fits).await.status(), 202);
}

async fn invalid_sources_are_refused(backend: Backend) {
    let app = TestApp::on(backend).spawn().await;
    let too_long = "a".repeat(65);
    for source in ["bad%20name", "bad%2Fslash", too_long.as_str(), "caf%C3%A9"] {
        let response = app.post(source, Some("k"), &json!({})).await;
        assert_eq!(response.status(), 400, "{source}");
        assert_error(&response.json().await.unwrap(), "invalid_source");
    }
    let longest = "a".repeat(64);
    assert_eq!(
        app.post(&longest, Some("k"), &json!({})).await.status(),
        202
    );
    assert_eq!(
        app.post("My_src-1.v2", Some("k"), &json!({}))
            .await
            .status(),
        202
    );
}

async fn unknown_events_and_routes_are_json_404s(backend: Backend) {
    let app = TestApp::on(backend).spawn().await;
    for path in [
        "/events/evt_missing",
        "/events/evt_missing/attempts",
        "/nowhere",
    ] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
        assert_error(&response.json().await.unwrap(), "not_found");
    }
    let response = app
        .client
        .get(app.url("/webhooks/stripe"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_error(&response.json().await.unwrap(), "method_not_allowed");
}

async fn health_and_ready_answer(backend: Backend) {
    let app = TestApp::on(backend).spawn().await;
    let health = get_json(&app.client, app.address, "/health").await;
    assert_eq!(health["status"], "healthy");
    assert!(health["timestamp"].as_str().unwrap().ends_with('Z'));
    let response = app.client.get(app.url("/ready")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let ready: Value = response.json().await.unwrap();
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["checks"]["database"], "connected");
}

async fn raw_body_and_headers_are_stored_as_received(backend: Backend) {
    let app = TestApp::on(backend).spawn().await;
    let raw = "{ \"spaced\" :  true,\n \"n\": 1.50 }";
    let response = app
        .client
        .post(app.url("/webhooks/raw"))
        .header("content-type", "application/json")
        .header("idempotency-key", "raw-1")
        .header("x-custom", "value-1")
        .body(raw)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let (body, headers) = app.database.body_and_headers("raw").await;
    assert_eq!(body, raw.as_bytes());
    let headers: Vec<(String, String)> = serde_json::from_str(&headers).unwrap();
    assert!(
        headers.contains(&("x-custom".into(), "value-1".into())),
        "{headers:?}"
    );
}

async fn payloads_are_returned_as_sent(backend: Backend) {
    let app = TestApp::on(backend).spawn().await;
    // Key order, a trailing zero and an integer beyond 64 bits: all lost if the body
    // were re-encoded from a parsed value.
    let sent = r#"{"type":"x","amount":10.50,"big":123456789012345678901234567890}"#;
    let response = app
        .client
        .post(app.url("/webhooks/stripe"))
        .header("content-type", "application/json")
        .header("idempotency-key", "as-sent")
        .body(sent)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let id = response.json::<Value>().await.unwrap()["event_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let shown = app
        .client
        .get(app.url(&format!("/events/{id}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(shown.contains(&format!(r#""payload":{sent}"#)), "{shown}");
}

crate::on_both_backends!(
    a_new_event_is_accepted_and_readable,
    a_redelivery_returns_the_first_id,
    fifty_racing_clients_make_one_event,
    any_json_value_is_accepted_and_charset_is_fine,
    requests_without_a_key_are_refused,
    keys_longer_than_255_bytes_are_refused,
    bodies_that_are_not_json_are_refused,
    other_media_types_are_refused,
    bodies_over_the_limit_are_refused,
    invalid_sources_are_refused,
    unknown_events_and_routes_are_json_404s,
    health_and_ready_answer,
    raw_body_and_headers_are_stored_as_received,
    payloads_are_returned_as_sent,
);
