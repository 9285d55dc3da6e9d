//! What hostile or broken clients send: slow and oversized requests, bytes that are
//! not what they claim, keys that are not keys, forged operator requests.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::helpers::*;

const SHORT_TIMEOUTS: &[(&str, &str)] = &[
    ("HOOKRELAY_HEADER_READ_TIMEOUT", "300ms"),
    ("HOOKRELAY_BODY_READ_TIMEOUT", "300ms"),
];

/// Reads until the server closes the connection (or `within` passes); returns what
/// it sent and how long it took.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let left = within.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => received.extend_from_slice(&buffer[..n]),
            Err(_) => panic!(
                "connection still open after {within:?}; received {:?}",
                String::from_utf8_lossy(&received)
            ),
        }
    }
    (
        String::from_utf8_lossy(&received).into_owned(),
        started.elapsed(),
    )
}

async fn slow_and_silent_connections_are_closed(backend: Backend) {
    let app = TestApp::on(backend).settings(SHORT_TIMEOUTS).spawn().await;
    // Nothing at all.
    let mut silent = TcpStream::connect(app.address).await.unwrap();
    // Headers that never end.
    let mut partial = TcpStream::connect(app.address).await.unwrap();
    partial
        .write_all(b"POST /webhooks/s HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // A body that never ends.
    let mut slow_body = TcpStream::connect(app.address).await.unwrap();
    slow_body
        .write_all(
            b"POST /webhooks/s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Idempotency-Key: slow\r\nContent-Length: 100\r\n\r\n{\"a\":",
        )
        .await
        .unwrap();
    // Many slowloris clients, each trickling header bytes.
    let mut trickling = Vec::new();
    for _ in 0..100 {
        let mut stream = TcpStream::connect(app.address).await.unwrap();
        stream.write_all(b"GET /health HTTP/1.1\r\n").await.unwrap();
        trickling.push(stream);
    }
    let trickle = tokio::spawn(async move {
        for _ in 0..20 {
            for stream in &mut trickling {
                let _ = stream.write_all(b"X-a: b\r\n").await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        trickling
    });

    let (said, took) = read_until_closed(&mut silent, Duration::from_secs(5)).await;
    assert!(
        said.is_empty() || said.starts_with("HTTP/1.1 408"),
        "{said}"
    );
    assert!(took < Duration::from_secs(3), "{took:?}");
    read_until_closed(&mut partial, Duration::from_secs(5)).await;
    let (said, _) = read_until_closed(&mut slow_body, Duration::from_secs(5)).await;
    assert!(said.starts_with("HTTP/1.1 408"), "{said}");
    assert!(said.contains("request_timeout"), "{said}");
    let mut trickling = trickle.await.unwrap();
    for stream in &mut trickling {
        read_until_closed(stream, Duration::from_secs(5)).await;
    }
    // Nothing was stored, and the server still serves.
    assert_eq!(app.database.scalar("SELECT COUNT(*) FROM events").await, 0);
    assert_eq!(app.post("s", Some("after"), &json!({})).await.status(), 202);
}

async fn oversized_declared_lengths_are_refused_before_reading(backend: Backend) {
    let app = TestApp::on(backend)
        .settings(&[("HOOKRELAY_MAX_BODY", "1KiB")])
        .spawn()
        .await;
    // A huge length and no body: answered at once, not after waiting for the bytes.
    let mut huge = TcpStream::connect(app.address).await.unwrap();
    huge.write_all(
        b"POST /webhooks/s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Idempotency-Key: k\r\nContent-Length: 1000000000000\r\n\r\n",
    )
    .await
    .unwrap();
    let (said, took) = read_until_closed(&mut huge, Duration::from_secs(5)).await;
    assert!(said.starts_with("HTTP/1.1 413"), "{said}");
    assert!(said.contains("payload_too_large"), "{said}");
    assert!(took < Duration::from_secs(2), "{took:?}");

    // Expect: 100-continue over the limit: 413, never "100 Continue".
    let mut expecting = TcpStream::connect(app.address).await.unwrap();
    expecting
        .write_all(
            b"POST /webhooks/s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Idempotency-Key: k2\r\nContent-Length: 5000000\r\nExpect: 100-continue\r\n\r\n",
        )
        .await
        .unwrap();
    let (said, _) = read_until_closed(&mut expecting, Duration::from_secs(5)).await;
    assert!(said.starts_with("HTTP/1.1 413"), "{said}");
    assert!(!said.contains("100 Continue"), "{said}");

    // Under the limit, Expect still works.
    let accepted = app
        .client
        .post(app.url("/webhooks/s"))
        .header("content-type", "application/json")
        .header("idempotency-key", "k3")
        .header("expect", "100-continue")
        .body("{\"a\":1}")
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 202);
    assert_eq!(app.database.scalar("SELECT COUNT(*) FROM events").await, 1);
}

async fn post_raw(app: &TestApp, headers: &[(&str, &[u8])], body: &[u8]) -> (u16, Value) {
    let mut request = app
        .client
        .post(app.url("/webhooks/s"))
        .header("content-type", "application/json")
        .body(body.to_vec());
    for (name, value) in headers {
        request = request.header(
            *name,
            reqwest::header::HeaderValue::from_bytes(value).unwrap(),
        );
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn json_that_is_not_utf8_is_refused(backend: Backend) {
    let app = TestApp::on(backend).spawn().await;
    for (i, body) in [
        &b"{\"a\":\"\xff\"}"[..],
        b"{\"a\":\"\xc0\xaf\"}",
        b"[\"\xed\xa0\x80\"]",
        b"{\"\xfe\":1}",
    ]
    .iter()
    .enumerate()
    {
        let key = format!("utf8-{i}");
        let (status, error) = post_raw(&app, &[("idempotency-key", key.as_bytes())], body).await;
        assert_eq!(status, 400, "{:?}", String::from_utf8_lossy(body));
        assert_error(&error, "invalid_json");
    }
    assert_eq!(app.database.scalar("SELECT COUNT(*) FROM events").await, 0);
    // Real UTF-8 is fine.
    let (status, _) = post_raw(
        &app,
        &[("idempotency-key", b"utf8-ok")],
        "{\"a\":\"café ☕\"}".as_bytes(),
    )
    .await;
    assert_eq!(status, 202);
}

async fn keys_must_be_visible_ascii_wherever_they_come_from(backend: Backend) {
    let config = "[sources.s]\nkey = \"json:/id\"\n";
    let app = TestApp::on(backend).config(config).spawn().await;
    for key in [&b"a\tb"[..], b"a b", b"caf\xc3\xa9"] {
        let (status, error) = post_raw(&app, &[("idempotency-key", key)], b"{}").await;
        assert_eq!(status, 400, "{:?}", String::from_utf8_lossy(key));
        assert_error(&error, "invalid_idempotency_key");
    }
    for body in [
        json!({"id": "a\u{1}b"}),
        json!({"id": "café"}),
        json!({"id": "two words"}),
        json!({"id": " padded"}),
    ] {
        let (status, error) = post_raw(&app, &[], body.to_string().as_bytes()).await;
        assert_eq!(status, 400, "{body}");
        assert_error(&error, "invalid_idempotency_key");
    }
    assert_eq!(app.database.scalar("SELECT COUNT(*) FROM events").await, 0);
    let (status, _) = post_raw(&app, &[], br#"{"id":"evt_1NG8Du2eZvKYlo2C"}"#).await;
    assert_eq!(status, 202);
}

async fn cross_site_operator_posts_are_refused(backend: Backend) {
    let app = TestApp::on(backend)
        .settings(&[("HOOKRELAY_MAX_ATTEMPTS", "1")])
        .spawn()
        .await;
    let id = app.accept("s", "csrf", json!({})).await;
    app.wait_for_status(&id, "delivered", Duration::from_secs(10))
        .await;
    let replay = |site: Option<&'static str>, content_type: Option<&'static str>| {
        let mut request = app.client.post(app.url(&format!("/events/{id}/replay")));
        if let Some(site) = site {
            request = request.header("sec-fetch-site", site);
        }
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type).body("a=b");
        }
        request.send()
    };
    // What a page on another site (or another port of this one) can make a browser send.
    for (site, content_type, status, code) in [
        (
            Some("cross-site"),
            Some("application/x-www-form-urlencoded"),
            403,
            "csrf_rejected",
        ),
        (Some("same-site"), None, 403, "csrf_rejected"),
        (None, Some("text/plain"), 415, "unsupported_media_type"),
        (
            None,
            Some("multipart/form-data; boundary=x"),
            415,
            "unsupported_media_type",
        ),
    ] {
        let response = replay(site, content_type).await.unwrap();
        assert_eq!(response.status(), status, "{site:?} {content_type:?}");
        assert_error(&response.json().await.unwrap(), code);
    }
    let bulk = app
        .client
        .post(app.url("/events/replay"))
        .header("sec-fetch-site", "cross-site")
        .json(&json!({"status": "delivered"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bulk.status(), 403);
    assert_eq!(app.event(&id).await["status"], "delivered");
    assert_eq!(app.event(&id).await["attempts"], 1);
    // curl, scripts and the browser's own address bar still work.
    let ok = replay(Some("none"), None).await.unwrap();
    assert_eq!(ok.status(), 202);
}

/// With the admin token, an operator's POST is not held to the browser rule: Python's
/// urllib labels an empty body as a form.
async fn a_token_request_may_label_its_empty_body_as_a_form(backend: Backend) {
    let app = TestApp::on(backend)
        .settings(&[
            ("HOOKRELAY_MAX_ATTEMPTS", "1"),
            ("HOOKRELAY_ADMIN_TOKEN", "t0k3n"),
        ])
        .spawn()
        .await;
    let id = app.accept("s", "form", json!({})).await;
    let delivered = eventually(Duration::from_secs(10), "delivery", || async {
        let event: Value = app
            .client
            .get(app.url(&format!("/events/{id}")))
            .bearer_auth("t0k3n")
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (event["status"] == "delivered").then_some(())
    });
    delivered.await;
    let replay = app
        .client
        .post(app.url(&format!("/events/{id}/replay")))
        .bearer_auth("t0k3n")
        .header("content-type", "application/x-www-form-urlencoded")
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 202);
    // Without the token it is still refused.
    let forged = app
        .client
        .post(app.url(&format!("/events/{id}/replay")))
        .header("content-type", "application/x-www-form-urlencoded")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
}

async fn ipv4_clients_of_a_dual_stack_listener_are_loopback(backend: Backend) {
    if std::net::TcpListener::bind("[::]:0").is_err() {
        panic!("this machine cannot listen on [::]; the test needs IPv6 enabled");
    }
    let app = TestApp::on(backend)
        .adjust(|config| {
            config.listen = "[::]:0".into();
        })
        .spawn()
        .await;
    let port = app.address.port();
    let response = app
        .client
        .get(format!("http://127.0.0.1:{port}/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

async fn bearer_is_case_insensitive_and_payloads_keep_their_bytes(backend: Backend) {
    let app = TestApp::on(backend)
        .settings(&[("HOOKRELAY_ADMIN_TOKEN", "t0k3n")])
        .spawn()
        .await;
    let raw = "{\"a\":1}\n";
    let accepted = app
        .client
        .post(app.url("/webhooks/s"))
        .header("content-type", "application/json")
        .header("idempotency-key", "nl")
        .body(raw)
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 202);
    let id = accepted.json::<Value>().await.unwrap()["event_id"]
        .as_str()
        .unwrap()
        .to_owned();
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let response = app
            .client
            .get(app.url(&format!("/events/{id}")))
            .header("authorization", format!("{scheme} t0k3n"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{scheme}");
        // `payload` is the JSON value received, without the whitespace around it…
        let text = response.text().await.unwrap();
        assert!(text.contains(r#""payload":{"a":1}"#), "{text}");
    }
    // …and the stored bytes are exactly what was sent.
    let (body, _) = app.database.body_and_headers("s").await;
    assert_eq!(body, raw.as_bytes());
}

crate::on_both_backends!(
    slow_and_silent_connections_are_closed,
    oversized_declared_lengths_are_refused_before_reading,
    json_that_is_not_utf8_is_refused,
    keys_must_be_visible_ascii_wherever_they_come_from,
    cross_site_operator_posts_are_refused,
    a_token_request_may_label_its_empty_body_as_a_form,
    ipv4_clients_of_a_dual_stack_listener_are_loopback,
    bearer_is_case_insensitive_and_payloads_keep_their_bytes,
);
