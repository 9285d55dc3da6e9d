//! The operator's API: listing with filters and cursors, replays, and its token.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::helpers::*;

async fn get(app: &TestApp, path: &str) -> (u16, Value) {
    let response = app.client.get(app.url(path)).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn post(app: &TestApp, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = app.client.post(app.url(path));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

fn ids(list: &Value) -> Vec<String> {
    list["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn listing_filters_and_pages_newest_first(backend: Backend) {
    let app = TestApp::on(backend).spawn().await;
    let mut posted = Vec::new();
    for n in 0..7 {
        let source = if n % 2 == 0 { "even" } else { "odd" };
        posted.push(app.accept(source, &format!("k{n}"), json!({"n": n})).await);
    }
    for id in &posted {
        app.wait_for_status(id, "delivered", Duration::from_secs(10))
            .await;
    }

    let (status, all) = get(&app, "/events").await;
    assert_eq!(status, 200);
    let newest_first: Vec<String> = posted.iter().rev().cloned().collect();
    assert_eq!(ids(&all), newest_first);
    assert_eq!(all["next_cursor"], Value::Null);
    assert_eq!(
        all["events"][0]["status_description"],
        "Successfully processed"
    );

    let (_, odd) = get(&app, "/events?source=odd").await;
    assert_eq!(ids(&odd).len(), 3);
    let (_, delivered) = get(&app, "/events?status=delivered&source=even").await;
    assert_eq!(ids(&delivered).len(), 4);
    let (_, none) = get(&app, "/events?status=dead_lettered").await;
    assert!(ids(&none).is_empty());
    let (_, future) = get(&app, "/events?since=2999-01-01T00:00:00Z").await;
    assert!(ids(&future).is_empty());
    let (_, past) = get(&app, "/events?until=2999-01-01T00:00:00Z").await;
    assert_eq!(ids(&past).len(), 7);

    // Pages of three: every event once, in order.
    let mut seen = Vec::new();
    let mut path = "/events?limit=3".to_owned();
    loop {
        let (status, page) = get(&app, &path).await;
        assert_eq!(status, 200);
        seen.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/events?limit=3&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, newest_first);

    for (query, code) in [
        ("status=done", "invalid_status"),
        ("since=yesterday", "invalid_timestamp"),
        ("limit=0", "invalid_limit"),
        ("limit=100000", "invalid_limit"),
        ("cursor=abc", "invalid_cursor"),
    ] {
        let (status, body) = get(&app, &format!("/events?{query}")).await;
        assert_eq!(status, 400, "{query}");
        assert_error(&body, code);
    }
}

async fn a_dead_lettered_event_is_replayed_with_its_history_kept(backend: Backend) {
    let app = TestApp::on(backend)
        .settings(&[("HOOKRELAY_MAX_ATTEMPTS", "2")])
        .spawn()
        .await;
    let id = app
        .accept("s", "dead", json!({"simulate_failure": true}))
        .await;
    app.wait_for_status(&id, "dead_lettered", Duration::from_secs(10))
        .await;

    let (status, body) = post(&app, &format!("/events/{id}/replay"), None).await;
    assert_eq!(status, 202);
    assert_eq!(body, json!({"event_id": id, "status": "queued"}));
    // A fresh set of attempts, and the history of the first set kept.
    let event = app
        .wait_for_status(&id, "dead_lettered", Duration::from_secs(10))
        .await;
    assert_eq!(event["attempts"], 4);
    assert_eq!(event["max_attempts"], 4);
    let history = get(&app, &format!("/events/{id}/attempts")).await.1;
    let numbers: Vec<u64> = history["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["attempt"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, [1, 2, 3, 4]);

    let delivered = app.accept("s", "ok", json!({"fine": true})).await;
    app.wait_for_status(&delivered, "delivered", Duration::from_secs(10))
        .await;
    assert_eq!(
        post(&app, &format!("/events/{delivered}/replay"), None)
            .await
            .0,
        202
    );
    let again = app
        .wait_for_status(&delivered, "delivered", Duration::from_secs(10))
        .await;
    assert_eq!(again["attempts"], 2);
}

/// After a replay the backoff starts again from the base delay: attempt 5 of an event
/// replayed after 3 waits like attempt 2, not like attempt 5 (200 ms, not 12.8 s here).
async fn a_replayed_event_retries_at_the_policys_pace(backend: Backend) {
    let app = TestApp::on(backend)
        .settings(&[
            ("HOOKRELAY_MAX_ATTEMPTS", "3"),
            ("HOOKRELAY_RETRY_BASE_DELAY", "200ms"),
            ("HOOKRELAY_RETRY_FACTOR", "4"),
        ])
        .spawn()
        .await;
    let id = app
        .accept("s", "dead", json!({"simulate_failure": true}))
        .await;
    app.wait_for_status(&id, "dead_lettered", Duration::from_secs(10))
        .await;
    assert_eq!(
        post(&app, &format!("/events/{id}/replay"), None).await.0,
        202
    );
    eventually(Duration::from_secs(10), "the replayed attempts", || async {
        let event = app.event(&id).await;
        (event["status"] == "dead_lettered" && event["attempts"] == 6).then_some(())
    })
    .await;

    let history = get(&app, &format!("/events/{id}/attempts")).await.1;
    let started: Vec<std::time::SystemTime> = history["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| humantime::parse_rfc3339(a["started_at"].as_str().unwrap()).unwrap())
        .collect();
    let gap = |from: usize| started[from].duration_since(started[from - 1]).unwrap();
    for (attempt, nominal) in [(2, 200), (3, 800), (5, 200), (6, 800)] {
        let gap = gap(attempt - 1);
        let nominal = Duration::from_millis(nominal);
        assert!(
            gap >= nominal && gap < nominal + Duration::from_millis(500),
            "attempt {attempt} came {gap:?} after the one before; the policy says {nominal:?}"
        );
    }
}

async fn dead_lettered_count(app: &TestApp) -> Option<f64> {
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    sample(&text, "hookrelay_events", &[("status", "dead_lettered")])
}

/// More events than one replay batch holds: every one is replayed exactly once, even
/// though the first batches fail again (and are dead-lettered again) while later
/// batches are still being queued.
async fn bulk_replay_goes_through_every_batch(backend: Backend) {
    const EVENTS: usize = 1_100;
    let app = TestApp::on(backend)
        .settings(&[("HOOKRELAY_MAX_ATTEMPTS", "1")])
        .spawn()
        .await;
    let mut posting = tokio::task::JoinSet::new();
    for client in 0..16 {
        let (client_http, address) = (app.client.clone(), app.address);
        posting.spawn(async move {
            for n in (client..EVENTS).step_by(16) {
                let response = post_json(
                    &client_http,
                    address,
                    "bulk",
                    Some(&format!("k{n}")),
                    &json!({"simulate_failure": true}),
                )
                .await;
                assert_eq!(response.status(), 202);
            }
        });
    }
    while let Some(done) = posting.join_next().await {
        done.unwrap();
    }
    eventually(
        Duration::from_secs(30),
        "every event dead-lettered",
        || async { (dead_lettered_count(&app).await? == EVENTS as f64).then_some(()) },
    )
    .await;

    let (status, body) = post(
        &app,
        "/events/replay",
        Some(json!({"status": "dead_lettered", "source": "bulk"})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"replayed": EVENTS}));
    eventually(
        Duration::from_secs(30),
        "every replay to finish",
        || async {
            let page = get(&app, "/events?source=bulk&status=dead_lettered&limit=500")
                .await
                .1;
            let settled = page["events"]
                .as_array()?
                .iter()
                .filter(|e| e["attempts"] == 2)
                .count();
            (dead_lettered_count(&app).await? == EVENTS as f64 && settled == 500).then_some(())
        },
    )
    .await;
}

async fn only_finished_events_can_be_replayed(backend: Backend) {
    let app = TestApp::on(backend).spawn().await;
    let busy = app
        .accept("s", "busy", json!({"simulate_delay_ms": 5000}))
        .await;
    app.wait_for_status(&busy, "processing", Duration::from_secs(5))
        .await;
    let (status, body) = post(&app, &format!("/events/{busy}/replay"), None).await;
    assert_eq!(status, 409);
    assert_error(&body, "not_replayable");
    let (status, body) = post(&app, "/events/evt_nope/replay", None).await;
    assert_eq!(status, 404);
    assert_error(&body, "not_found");
}

async fn replay_by_filter_counts_what_it_queued(backend: Backend) {
    let app = TestApp::on(backend)
        .settings(&[("HOOKRELAY_MAX_ATTEMPTS", "1")])
        .spawn()
        .await;
    let mut dead = Vec::new();
    for n in 0..4 {
        dead.push(
            app.accept(
                "broken",
                &format!("b{n}"),
                json!({"simulate_failure": true}),
            )
            .await,
        );
    }
    let other = app
        .accept("other", "o", json!({"simulate_failure": true}))
        .await;
    for id in dead.iter().chain([&other]) {
        app.wait_for_status(id, "dead_lettered", Duration::from_secs(10))
            .await;
    }
    let (status, body) = post(
        &app,
        "/events/replay",
        Some(json!({"status": "dead_lettered", "source": "broken"})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"replayed": 4}));
    for id in &dead {
        let event = app
            .wait_for_status(id, "dead_lettered", Duration::from_secs(10))
            .await;
        assert_eq!(event["attempts"], 2, "{id} was not tried again");
    }
    assert_eq!(app.event(&other).await["attempts"], 1);

    let (status, body) = post(&app, "/events/replay", Some(json!({"status": "queued"}))).await;
    assert_eq!(status, 400);
    assert_error(&body, "invalid_status");
    let (status, body) = post(&app, "/events/replay", Some(json!({"colour": "red"}))).await;
    assert_eq!(status, 400);
    assert_error(&body, "invalid_body");
    let everything: HashSet<String> = ids(&get(&app, "/events").await.1).into_iter().collect();
    assert_eq!(everything.len(), 5);

    // No filter at all is never "everything" by accident; asked for by name, it is.
    let (status, body) = post(&app, "/events/replay", Some(json!({}))).await;
    assert_eq!(status, 400);
    assert_error(&body, "replay_needs_filter");
    // A member given as null is no filter either; it is refused as malformed.
    let (status, body) = post(&app, "/events/replay", Some(json!({"status": null}))).await;
    assert_eq!(status, 400);
    assert_error(&body, "invalid_body");
    for id in dead.iter().chain([&other]) {
        app.wait_for_status(id, "dead_lettered", Duration::from_secs(10))
            .await;
    }
    let (status, body) = post(&app, "/events/replay", Some(json!({"all": true}))).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"replayed": 5}));
}

async fn the_admin_token_guards_the_operator_routes(backend: Backend) {
    let app = TestApp::on(backend)
        .settings(&[("HOOKRELAY_ADMIN_TOKEN", "s3cret-t0ken")])
        .spawn()
        .await;
    let id = app.accept("s", "k", json!({})).await;
    let paths = [
        "/events".to_owned(),
        "/metrics".to_owned(),
        format!("/events/{id}"),
        format!("/events/{id}/attempts"),
    ];
    for path in &paths {
        for authorization in [None, Some("Bearer wrong"), Some("s3cret-t0ken")] {
            let mut request = app.client.get(app.url(path));
            if let Some(value) = authorization {
                request = request.header("authorization", value);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 401, "{path} with {authorization:?}");
            assert_error(&response.json().await.unwrap(), "unauthorized");
        }
        let response = app
            .client
            .get(app.url(path))
            .bearer_auth("s3cret-t0ken")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    let replay = app
        .client
        .post(app.url(&format!("/events/{id}/replay")))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 401);
    // Senders and probes never need the token.
    assert_eq!(
        app.client
            .get(app.url("/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        app.client
            .get(app.url("/ready"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

/// The value of the one sample of `name` whose labels include every pair given.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn metrics_count_what_happened(backend: Backend) {
    let app = TestApp::on(backend)
        .settings(&[("HOOKRELAY_MAX_ATTEMPTS", "1")])
        .spawn()
        .await;
    // A source name of this test's own, so counters shared across tests do not blur.
    let source = format!("metrics-{}", uuid_like());
    let first = app.accept(&source, "a", json!({"n": 1})).await;
    app.accept(&source, "b", json!({"n": 2})).await;
    assert_eq!(
        app.post(&source, Some("a"), &json!({"n": 1}))
            .await
            .status(),
        200
    );
    let refused = app
        .client
        .post(app.url(&format!("/webhooks/{source}")))
        .header("content-type", "application/json")
        .header("idempotency-key", "c")
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let dead = app
        .accept(&source, "d", json!({"simulate_failure": true}))
        .await;
    app.wait_for_status(&first, "delivered", Duration::from_secs(10))
        .await;
    app.wait_for_status(&dead, "dead_lettered", Duration::from_secs(10))
        .await;

    let response = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"),
        "{:?}",
        response.headers()
    );
    let text = response.text().await.unwrap();
    let webhooks = |outcome: &str, reason: &str| {
        sample(
            &text,
            "hookrelay_webhooks_total",
            &[
                ("source", &source),
                ("outcome", outcome),
                ("reason", reason),
            ],
        )
    };
    assert_eq!(webhooks("accepted", ""), Some(3.0), "{text}");
    assert_eq!(webhooks("duplicate", ""), Some(1.0));
    assert_eq!(webhooks("refused", "invalid_json"), Some(1.0));
    // Gauges come from this app's own database.
    assert_eq!(
        sample(&text, "hookrelay_events", &[("status", "dead_lettered")]),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "hookrelay_events", &[("status", "queued")]),
        Some(0.0)
    );
    assert!(
        sample(
            &text,
            "hookrelay_attempts_total",
            &[("outcome", "delivered")]
        )
        .unwrap()
            >= 2.0
    );
    assert!(
        sample(
            &text,
            "hookrelay_attempts_total",
            &[("outcome", "dead_lettered")]
        )
        .unwrap()
            >= 1.0
    );
    for name in [
        "hookrelay_ingest_duration_seconds_count",
        "hookrelay_attempt_duration_seconds_count",
        "hookrelay_accept_to_delivered_seconds_count",
        "hookrelay_expired_leases_total",
        "hookrelay_queue_lag_seconds",
    ] {
        assert!(sample(&text, name, &[]).is_some(), "no {name} in {text}");
    }
}

/// Made-up source names cannot crowd a configured source out of the metrics, and
/// requests refused before their source is known share one label.
async fn refused_names_never_become_metric_labels(backend: Backend) {
    let configured = format!("labelled-{}", uuid_like());
    let config = format!("accept_unknown_sources = false\n[sources.{configured}]\n");
    let app = TestApp::on(backend).config(&config).spawn().await;
    for i in 0..205 {
        let response = app
            .post(&format!("made-up-{i}"), Some("k"), &json!({}))
            .await;
        assert_eq!(response.status(), 404);
    }
    let odd = app
        .client
        .post(app.url("/webhooks/a%22b%5Cc/x"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(odd.status(), 404);
    app.accept(&configured, "k", json!({})).await;

    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let accepted = sample(
        &text,
        "hookrelay_webhooks_total",
        &[
            ("source", &configured),
            ("outcome", "accepted"),
            ("reason", ""),
        ],
    );
    assert_eq!(accepted, Some(1.0), "{text}");
    assert!(!text.contains("made-up-"), "{text}");
    assert!(!text.contains("a\\\"b"), "{text}");
    let unknown = sample(
        &text,
        "hookrelay_webhooks_total",
        &[
            ("source", "_unknown"),
            ("outcome", "refused"),
            ("reason", "unknown_source"),
        ],
    );
    assert!(unknown.is_some_and(|n| n >= 205.0), "{text}");
}

/// Lists carry no payloads unless asked, and then no more than a budget per page.
async fn lists_leave_payloads_out_unless_asked(backend: Backend) {
    let app = TestApp::on(backend).spawn().await;
    let big = "x".repeat(900 * 1024);
    for i in 0..6 {
        app.accept("big", &format!("k-{i}"), json!({"i": i, "fill": big}))
            .await;
    }
    let plain = get_json(&app.client, app.address, "/events?source=big").await;
    let events = plain["events"].as_array().unwrap();
    assert_eq!(events.len(), 6);
    assert!(
        events.iter().all(|e| e.get("payload").is_none()),
        "{}",
        events[0]
    );
    assert!(events.iter().all(|e| e["status"].is_string()));

    // With payloads: about 4 MiB a page, newest first, the cursor going on from there.
    let first = get_json(
        &app.client,
        app.address,
        "/events?source=big&include_payload=true",
    )
    .await;
    let page = first["events"].as_array().unwrap();
    assert_eq!(page.len(), 4, "900 KiB payloads in a 4 MiB page");
    assert_eq!(page[0]["payload"]["i"], 5);
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a cursor for the rest");
    let rest = get_json(
        &app.client,
        app.address,
        &format!("/events?source=big&include_payload=true&cursor={cursor}"),
    )
    .await;
    let rest = rest["events"].as_array().unwrap();
    let seen: Vec<i64> = page
        .iter()
        .chain(rest)
        .map(|e| e["payload"]["i"].as_i64().unwrap())
        .collect();
    assert_eq!(seen, [5, 4, 3, 2, 1, 0]);

    let bad = app
        .client
        .get(app.url("/events?include_payload=yes"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert_error(&bad.json().await.unwrap(), "invalid_query");
}

fn uuid_like() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

crate::on_both_backends!(
    lists_leave_payloads_out_unless_asked,
    refused_names_never_become_metric_labels,
    metrics_count_what_happened,
    listing_filters_and_pages_newest_first,
    a_dead_lettered_event_is_replayed_with_its_history_kept,
    a_replayed_event_retries_at_the_policys_pace,
    bulk_replay_goes_through_every_batch,
    only_finished_events_can_be_replayed,
    replay_by_filter_counts_what_it_queued,
    the_admin_token_guards_the_operator_routes,
);
