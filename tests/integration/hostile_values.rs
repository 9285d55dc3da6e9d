//! Values a sender or a destination controls that a database may not store as they
//! are: NUL characters, sender-sized keys and types, binary answers. Each is stored
//! or refused the same way on both backends, and never fails its neighbours.

use std::time::Duration;

use futures_util::future::join_all;
use serde_json::{Value, json};

use crate::support::helpers::*;
use crate::support::receiver::{Answer, Receiver};

/// Webhooks with a NUL in their type, a key the size of an object or with a NUL,
/// sent together with valid ones so that they share commit groups.
async fn a_bad_value_never_fails_its_neighbours(backend: Backend) {
    let ordered = Receiver::start(vec![]).await;
    let config = format!(
        r#"
[destinations.ordered]
url = "{ordered}"
ordering = "key"
ordering_key = "json:/customer"

[sources.shop]
event_type = "json:/type"
[[sources.shop.routes]]
destination = "ordered"
"#,
        ordered = ordered.url(),
    );
    let app = TestApp::on(backend).config(&config).spawn().await;
    let big_customer = json!({"name": "x".repeat(4_000), "tags": vec!["a"; 400]});
    let body = |i: usize| match i % 4 {
        // A NUL in the event type: refused by the one rule for types.
        0 => json!({"type": "order\u{0}paid", "customer": "c1"}),
        // An ordering key longer than an index entry allows.
        1 => json!({"type": "order.paid", "customer": big_customer}),
        // A NUL in the ordering key.
        2 => json!({"type": "order.paid", "customer": "c\u{0}2"}),
        _ => json!({"type": "order.paid", "customer": format!("c{i}")}),
    };
    let sent = join_all((0..80).map(|i| {
        let app = &app;
        let body = body(i);
        async move {
            let response = app.post("shop", Some(&format!("k-{i}")), &body).await;
            let status = response.status().as_u16();
            (i, status, response.json::<Value>().await.unwrap())
        }
    }))
    .await;
    let mut accepted = Vec::new();
    for (i, status, answer) in sent {
        if i % 4 == 0 {
            assert_eq!(status, 400, "webhook {i}: {answer}");
            assert_error(&answer, "invalid_event_type");
        } else {
            assert_eq!(status, 202, "webhook {i}: {answer}");
            accepted.push(answer["event_id"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(accepted.len(), 60);
    for id in &accepted {
        app.wait_for_status(id, "delivered", Duration::from_secs(20))
            .await;
    }
    assert_eq!(ordered.received().len(), 60);
}

/// A destination that answers 200 with bytes that are not text: each delivery is
/// recorded once, as delivered, and a healthy destination beside it sees no
/// duplicate.
async fn a_binary_answer_is_recorded_and_not_sent_again(backend: Backend) {
    let binary =
        Receiver::answering(vec![], || Answer::status(200).body("\u{1f}\u{8b}\0\0gz\0")).await;
    let healthy = Receiver::start(vec![]).await;
    let config = format!(
        r#"
[destinations.binary]
url = "{binary}"

[destinations.healthy]
url = "{healthy}"

[sources.s]
[[sources.s.routes]]
destination = "binary"
[[sources.s.routes]]
destination = "healthy"
"#,
        binary = binary.url(),
        healthy = healthy.url(),
    );
    let app = TestApp::on(backend).config(&config).spawn().await;
    let ids: Vec<String> = join_all((0..20).map(|i| {
        let app = &app;
        async move { app.accept("s", &format!("k-{i}"), json!({"n": i})).await }
    }))
    .await;
    for id in &ids {
        let event = app
            .wait_for_status(id, "delivered", Duration::from_secs(20))
            .await;
        assert_eq!(event["attempts"], 1, "{event}");
        let attempts = get_json(&app.client, app.address, &format!("/events/{id}/attempts")).await;
        let to_binary = attempts["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["destination"] == "binary")
            .expect("an attempt to the binary destination");
        assert_eq!(to_binary["status_code"], 200);
        let excerpt = to_binary["response_body"].as_str().unwrap();
        assert!(
            excerpt.contains("gz") && !excerpt.contains('\0'),
            "{excerpt:?}"
        );
    }
    // One attempt each, recorded: nothing was sent again.
    assert_eq!(binary.received().len(), 20);
    assert_eq!(healthy.received().len(), 20);
}

/// Whether valid JSON is accepted does not depend on what the routes read: one rule
/// for a source with no routes and for one whose filter reads the very fields.
async fn one_json_rule_whatever_the_routes_read(backend: Backend) {
    let receiver = Receiver::start(vec![]).await;
    let config = format!(
        r#"
[destinations.app]
url = "{receiver}"

[sources.plain]

[sources.filtered]
[[sources.filtered.routes]]
destination = "app"
filter = {{ body = {{ text = {{ "$exist" = true }}, deep = {{ "$exist" = true }}, n = {{ "$exist" = true }} }} }}
"#,
        receiver = receiver.url(),
    );
    let app = TestApp::on(backend).config(&config).spawn().await;
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    let cases = [
        // Cut mid-emoji by JavaScript or Python: valid JSON text, accepted.
        (
            r#"{"text": "cut \ud83d", "deep": 1, "n": 1}"#.to_owned(),
            202,
        ),
        (format!(r#"{{"text": "x", "deep": {deep}, "n": 1}}"#), 400),
        (r#"{"text": "x", "deep": 1, "n": 1e400}"#.to_owned(), 400),
    ];
    for source in ["plain", "filtered"] {
        for (i, (body, expected)) in cases.iter().enumerate() {
            let response = app
                .client
                .post(app.url(&format!("/webhooks/{source}")))
                .header("content-type", "application/json")
                .header("idempotency-key", format!("k-{i}"))
                .body(body.clone())
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let answer: Value = response.json().await.unwrap();
            assert_eq!(status, *expected, "{source}, case {i}: {answer}");
            if *expected == 400 {
                assert_error(&answer, "invalid_json");
            } else if source == "filtered" {
                // The filter read the cut text and routed it.
                let id = answer["event_id"].as_str().unwrap();
                app.wait_for_status(id, "delivered", Duration::from_secs(10))
                    .await;
            }
        }
    }
}

/// Keys from JSON numbers are their exact text: integers beyond 64 bits stay
/// distinct, and `1.0` is not `1.00`.
async fn numeric_keys_keep_their_exact_text(backend: Backend) {
    let app = TestApp::on(backend)
        .config("[sources.n]\nkey = \"json:/id\"\n")
        .spawn()
        .await;
    let post = |body: &'static str| {
        app.client
            .post(app.url("/webhooks/n"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    for body in [
        r#"{"id": 100000000000000000000001}"#,
        r#"{"id": 100000000000000000000002}"#,
        r#"{"id": 18446744073709551616}"#,
        r#"{"id": 18446744073709551617}"#,
        r#"{"id": 1.0}"#,
        r#"{"id": 1.00}"#,
    ] {
        let response = post(body).await.unwrap();
        assert_eq!(response.status(), 202, "{body} was not a new event");
    }
    assert_eq!(post(r#"{"id": 1.00}"#).await.unwrap().status(), 200);
}

/// An event stored from a text body is routed again as text, as ingest read it,
/// even when the text happens to parse as JSON.
async fn a_text_event_is_routed_again_as_text(backend: Backend) {
    let receiver = Receiver::start(vec![]).await;
    let config = format!(
        r#"
[destinations.app]
url = "{receiver}"

[sources.forms]
content_types = ["application/json", "text/plain"]
[[sources.forms.routes]]
destination = "app"
filter = {{ body = {{ kind = "order" }} }}
"#,
        receiver = receiver.url(),
    );
    let app = TestApp::on(backend).config(&config).spawn().await;
    let response = app
        .client
        .post(app.url("/webhooks/forms"))
        .header("content-type", "text/plain")
        .header("idempotency-key", "t-1")
        .body(r#"{"kind": "order"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let id = response.json::<Value>().await.unwrap()["event_id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.wait_for_status(&id, "filtered", Duration::from_secs(5))
        .await;
    let replay = app
        .client
        .post(app.url(&format!("/events/{id}/replay")))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 409, "no route changed: it stays filtered");
    assert!(receiver.received().is_empty());
}

crate::on_both_backends!(
    a_bad_value_never_fails_its_neighbours,
    a_binary_answer_is_recorded_and_not_sent_again,
    one_json_rule_whatever_the_routes_read,
    numeric_keys_keep_their_exact_text,
    a_text_event_is_routed_again_as_text,
);
