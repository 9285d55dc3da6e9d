//! Real senders and real destinations: signatures, provider keys, forwarding.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::support::helpers::*;
use crate::support::receiver::{Answer, Receiver, closed_port_url};

fn mac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn stored(app: &TestApp, source: &str) -> i64 {
    let sql = format!("SELECT COUNT(*) FROM events WHERE source = '{source}'");
    app.database.scalar(&sql).await
}

async fn send(app: &TestApp, source: &str, headers: &[(&str, String)], body: &str) -> (u16, Value) {
    let mut request = app
        .client
        .post(app.url(&format!("/webhooks/{source}")))
        .header("content-type", "application/json")
        .body(body.to_owned());
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

const SOURCES: &str = r#"
[sources.github]
verify = "github"
secrets = ["gh-old", "gh-new"]

[sources.stripe]
verify = "stripe"
secret = "whsec_stripe"
tolerance = "5m"

[sources.shopify]
verify = "shopify"
secret = "shp"

[sources.slack]
verify = "slack"
secret = "slack-secret"
content_types = ["application/json", "application/x-www-form-urlencoded"]

[sources.sw]
verify = "standard-webhooks"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

[sources.svix]
verify = "svix"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
"#;

type Headers = Vec<(&'static str, String)>;

/// Headers for a valid request of each scheme, signed at `timestamp` with `secret`.
fn signed(
    scheme: &str,
    secret: &str,
    timestamp: i64,
    body: &str,
    id: &str,
) -> Vec<(&'static str, String)> {
    let ts = timestamp.to_string();
    let body = body.as_bytes();
    match scheme {
        "github" => vec![
            (
                "x-hub-signature-256",
                format!("sha256={}", hex::encode(mac(secret.as_bytes(), &[body]))),
            ),
            ("x-github-delivery", id.to_owned()),
        ],
        "stripe" => vec![(
            "stripe-signature",
            format!(
                "t={ts},v1={}",
                hex::encode(mac(secret.as_bytes(), &[ts.as_bytes(), b".", body]))
            ),
        )],
        "shopify" => vec![
            (
                "x-shopify-hmac-sha256",
                BASE64.encode(mac(secret.as_bytes(), &[body])),
            ),
            ("x-shopify-event-id", id.to_owned()),
        ],
        "slack" => vec![
            ("x-slack-request-timestamp", ts.clone()),
            (
                "x-slack-signature",
                format!(
                    "v0={}",
                    hex::encode(mac(secret.as_bytes(), &[b"v0:", ts.as_bytes(), b":", body]))
                ),
            ),
        ],
        "sw" | "svix" => {
            let key = BASE64.decode(secret.trim_start_matches("whsec_")).unwrap();
            let signature =
                BASE64.encode(mac(&key, &[id.as_bytes(), b".", ts.as_bytes(), b".", body]));
            let prefix = if scheme == "sw" { "webhook" } else { "svix" };
            let names: [&'static str; 3] = if prefix == "webhook" {
                ["webhook-id", "webhook-timestamp", "webhook-signature"]
            } else {
                ["svix-id", "svix-timestamp", "svix-signature"]
            };
            vec![
                (names[0], id.to_owned()),
                (names[1], ts),
                (names[2], format!("v1,{signature}")),
            ]
        }
        other => panic!("no scheme {other}"),
    }
}

fn secret_of(scheme: &str) -> &'static str {
    match scheme {
        "github" => "gh-new",
        "stripe" => "whsec_stripe",
        "shopify" => "shp",
        "slack" => "slack-secret",
        _ => "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    }
}

async fn every_scheme_accepts_good_signatures_and_refuses_bad_ones(backend: Backend) {
    let app = TestApp::on(backend).config(SOURCES).spawn().await;
    for scheme in ["github", "stripe", "shopify", "slack", "sw", "svix"] {
        let body = format!(r#"{{"id":"evt_{scheme}_1","event_id":"Ev_{scheme}_1","n":1}}"#);
        let secret = secret_of(scheme);
        let id = format!("msg_{scheme}_1");

        let mut refusals: Vec<(&str, Headers, String)> = vec![
            (
                "tampered body",
                signed(scheme, secret, now(), &body, &id),
                body.replace("1}", "2}"),
            ),
            (
                "wrong secret",
                signed(scheme, "whsec_d3Jvbmc=", now(), &body, &id),
                body.clone(),
            ),
            ("no signature", vec![], body.clone()),
        ];
        if scheme != "github" && scheme != "shopify" {
            refusals.push((
                "stale timestamp",
                signed(scheme, secret, now() - 600, &body, &id),
                body.clone(),
            ));
            refusals.push((
                "future timestamp",
                signed(scheme, secret, now() + 600, &body, &id),
                body.clone(),
            ));
        }
        for (case, headers, sent) in refusals {
            let (status, answer) = send(&app, scheme, &with_key(headers), &sent).await;
            assert_eq!(status, 401, "{scheme}: {case}");
            assert_error(&answer, "invalid_signature");
        }
        assert_eq!(
            stored(&app, scheme).await,
            0,
            "{scheme}: a refused request was stored"
        );

        let (status, answer) = send(
            &app,
            scheme,
            &signed(scheme, secret, now(), &body, &id),
            &body,
        )
        .await;
        assert_eq!(status, 202, "{scheme}: {answer}");
        assert_eq!(stored(&app, scheme).await, 1);
    }
}

/// Refusals carry an Idempotency-Key so that the key is never the reason.
fn with_key(mut headers: Headers) -> Headers {
    headers.push(("idempotency-key", "refused".into()));
    headers
}

async fn either_of_two_secrets_verifies(backend: Backend) {
    let app = TestApp::on(backend).config(SOURCES).spawn().await;
    for (n, secret) in ["gh-old", "gh-new"].into_iter().enumerate() {
        let body = format!(r#"{{"n":{n}}}"#);
        let (status, _) = send(
            &app,
            "github",
            &signed("github", secret, 0, &body, &format!("d-{n}")),
            &body,
        )
        .await;
        assert_eq!(status, 202, "{secret}");
    }
}

async fn provider_redeliveries_without_an_idempotency_key_collapse(backend: Backend) {
    let app = TestApp::on(backend).config(SOURCES).spawn().await;
    // GitHub redelivers with the same X-GitHub-Delivery; Stripe with the same body id.
    for scheme in ["github", "stripe"] {
        let body = r#"{"id":"evt_same","type":"x"}"#;
        let headers = signed(scheme, secret_of(scheme), now(), body, "delivery-same");
        let (first_status, first) = send(&app, scheme, &headers, body).await;
        assert_eq!(first_status, 202);
        let again = signed(scheme, secret_of(scheme), now(), body, "delivery-same");
        let (status, second) = send(&app, scheme, &again, body).await;
        assert_eq!(status, 200, "{scheme}");
        assert_eq!(second["status"], "duplicate");
        assert_eq!(second["event_id"], first["event_id"]);
        assert_eq!(stored(&app, scheme).await, 1);
    }
}

async fn slack_url_verification_is_answered_and_not_stored(backend: Backend) {
    let app = TestApp::on(backend).config(SOURCES).spawn().await;
    let body = r#"{"token":"t","challenge":"3eZbrw1aBm2rZg","type":"url_verification"}"#;
    let (status, answer) = send(
        &app,
        "slack",
        &signed("slack", "slack-secret", now(), body, ""),
        body,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(answer, json!({"challenge": "3eZbrw1aBm2rZg"}));
    assert_eq!(stored(&app, "slack").await, 0);
    // Unsigned, it is refused like anything else.
    let (status, _) = send(&app, "slack", &[], body).await;
    assert_eq!(status, 401);
}

async fn form_posts_are_stored_as_received_where_allowed(backend: Backend) {
    let app = TestApp::on(backend).config(SOURCES).spawn().await;
    let body = "command=%2Fdeploy&text=prod&user_id=U1";
    let headers = signed("slack", "slack-secret", now(), body, "");
    let mut request = app
        .client
        .post(app.url("/webhooks/slack"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    for (name, value) in &headers {
        request = request.header(*name, value);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 202);
    let id = response.json::<Value>().await.unwrap()["event_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(app.event(&id).await["payload"], Value::String(body.into()));
    // A source that allows only JSON still refuses forms.
    let response = app
        .client
        .post(app.url("/webhooks/github"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
}

async fn unknown_sources_are_refused_when_configured_so(backend: Backend) {
    let app = TestApp::on(backend)
        .config("accept_unknown_sources = false\n[sources.known]\n")
        .spawn()
        .await;
    let response = app.post("known", Some("k"), &json!({})).await;
    assert_eq!(response.status(), 202);
    let response = app.post("stranger", Some("k"), &json!({})).await;
    assert_eq!(response.status(), 404);
    assert_error(&response.json().await.unwrap(), "unknown_source");
}

fn destination(receiver_url: &str, extra: &str) -> String {
    format!("[sources.app]\ndestination = \"{receiver_url}\"\ntimeout = \"500ms\"\n{extra}\n")
}

async fn attempts(app: &TestApp, id: &str) -> Vec<Value> {
    get_json(&app.client, app.address, &format!("/events/{id}/attempts")).await["attempts"]
        .as_array()
        .unwrap()
        .clone()
}

async fn accept(app: &TestApp, raw: &str, key: &str) -> String {
    let response = app
        .client
        .post(app.url("/webhooks/app"))
        .header("content-type", "application/json; charset=utf-8")
        .header("idempotency-key", key)
        .header("x-custom-header", "kept")
        .header("connection", "keep-alive, x-hop-only")
        .header("x-hop-only", "for the first hop")
        .header(
            "x-latin1",
            reqwest::header::HeaderValue::from_bytes(b"caf\xe9").unwrap(),
        )
        .body(raw.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    response.json::<Value>().await.unwrap()["event_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn the_destination_gets_the_exact_bytes_and_headers(backend: Backend) {
    let receiver = Receiver::start(vec![]).await;
    let app = TestApp::on(backend)
        .config(&destination(&receiver.url(), ""))
        .spawn()
        .await;
    let raw = "{ \"amount\" : 1.50,\n  \"note\": \"spacing kept\" }";
    let id = accept(&app, raw, "exact-1").await;
    let event = app
        .wait_for_status(&id, "delivered", Duration::from_secs(10))
        .await;
    assert_eq!(event["attempts"], 1);

    let received = receiver.received();
    assert_eq!(received.len(), 1);
    let request = &received[0];
    assert_eq!(&request.body[..], raw.as_bytes());
    let header = |name: &str| {
        request
            .headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    assert_eq!(
        header("content-type").as_deref(),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(header("x-custom-header").as_deref(), Some("kept"));
    // A header the sender's `Connection` names was for its hop only.
    assert_eq!(header("x-hop-only"), None);
    assert_eq!(header("connection"), None);
    // A value that is not UTF-8 arrives byte for byte.
    assert_eq!(
        request.headers.get("x-latin1").map(|v| v.as_bytes()),
        Some(&b"caf\xe9"[..])
    );
    assert_eq!(header("idempotency-key").as_deref(), Some("exact-1"));
    assert_eq!(header("x-hookrelay-event-id").as_deref(), Some(id.as_str()));
    assert_eq!(header("x-hookrelay-source").as_deref(), Some("app"));
    assert_eq!(header("x-hookrelay-attempt").as_deref(), Some("1"));

    let history = attempts(&app, &id).await;
    assert_eq!(history[0]["status_code"], 200);
    assert_eq!(history[0]["response_body"], "answer 200");
}

async fn server_errors_are_retried_until_delivered(backend: Backend) {
    let receiver = Receiver::start(vec![Answer::status(500), Answer::status(500)]).await;
    let app = TestApp::on(backend)
        .config(&destination(&receiver.url(), ""))
        .spawn()
        .await;
    let id = accept(&app, r#"{"n":1}"#, "retry-1").await;
    let event = app
        .wait_for_status(&id, "delivered", Duration::from_secs(10))
        .await;
    assert_eq!(event["attempts"], 3);
    let history = attempts(&app, &id).await;
    let codes: Vec<_> = history.iter().map(|a| a["status_code"].clone()).collect();
    assert_eq!(codes, [json!(500), json!(500), json!(200)]);
    assert_eq!(history[0]["error"], "HTTP 500");
    assert_eq!(history[0]["response_body"], "answer 500");
    let numbers: Vec<_> = receiver
        .received()
        .iter()
        .map(|r| {
            r.headers["x-hookrelay-attempt"]
                .to_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(numbers, ["1", "2", "3"]);
}

async fn gone_dead_letters_at_once(backend: Backend) {
    let receiver = Receiver::start(vec![Answer::status(410).body(&"x".repeat(5000))]).await;
    let app = TestApp::on(backend)
        .config(&destination(&receiver.url(), ""))
        .spawn()
        .await;
    let id = accept(&app, r#"{"n":1}"#, "gone-1").await;
    let event = app
        .wait_for_status(&id, "dead_lettered", Duration::from_secs(10))
        .await;
    assert_eq!(event["attempts"], 1);
    assert!(event["last_error"].as_str().unwrap().contains("410"));
    assert_eq!(receiver.received().len(), 1);
    // Only the first KiB of the answer is kept.
    let history = attempts(&app, &id).await;
    assert_eq!(history[0]["response_body"].as_str().unwrap().len(), 1024);
}

async fn retry_after_is_honoured(backend: Backend) {
    let receiver = Receiver::start(vec![Answer::status(429).header("retry-after", "1")]).await;
    let app = TestApp::on(backend)
        .config(&destination(&receiver.url(), ""))
        .spawn()
        .await;
    let id = accept(&app, r#"{"n":1}"#, "slow-down").await;
    app.wait_for_status(&id, "delivered", Duration::from_secs(10))
        .await;
    let received = receiver.received();
    assert_eq!(received.len(), 2);
    let gap = received[1].at - received[0].at;
    assert!(gap >= Duration::from_secs(1), "retried after {gap:?}");
    assert_eq!(attempts(&app, &id).await[0]["status_code"], 429);
}

async fn a_slow_destination_times_out(backend: Backend) {
    let receiver = Receiver::start(vec![Answer::status(200).delay(Duration::from_secs(3))]).await;
    let app = TestApp::on(backend)
        .config(&destination(&receiver.url(), ""))
        .spawn()
        .await;
    let id = accept(&app, r#"{"n":1}"#, "timeout-1").await;
    app.wait_for_status(&id, "delivered", Duration::from_secs(10))
        .await;
    let history = attempts(&app, &id).await;
    assert_eq!(history.len(), 2);
    assert_eq!(history[0]["status_code"], Value::Null);
    assert!(
        history[0]["error"].as_str().unwrap().contains("timed out"),
        "{history:?}"
    );
    assert!(history[0]["duration_ms"].as_u64().unwrap() >= 450);
}

async fn a_refused_connection_is_retried_then_dead_lettered(backend: Backend) {
    let app = TestApp::on(backend)
        .config(&destination(&closed_port_url(), ""))
        .settings(&[("HOOKRELAY_MAX_ATTEMPTS", "3")])
        .spawn()
        .await;
    let id = accept(&app, r#"{"n":1}"#, "refused-1").await;
    let event = app
        .wait_for_status(&id, "dead_lettered", Duration::from_secs(10))
        .await;
    assert_eq!(event["attempts"], 3);
    let history = attempts(&app, &id).await;
    assert_eq!(history.len(), 3);
    for attempt in &history {
        assert_eq!(attempt["status_code"], Value::Null);
        assert!(
            attempt["error"].as_str().unwrap().contains("connection"),
            "{attempt}"
        );
    }
}

async fn deliveries_are_resigned_with_standard_webhooks(backend: Backend) {
    let receiver = Receiver::start(vec![]).await;
    let secret = "whsec_c2lnbmluZy1zZWNyZXQtZm9yLXRlc3Rz";
    let app = TestApp::on(backend)
        .config(&destination(
            &receiver.url(),
            &format!("signing_secret = \"{secret}\""),
        ))
        .spawn()
        .await;
    let raw = r#"{"type":"order.paid"}"#;
    let id = accept(&app, raw, "signed-1").await;
    app.wait_for_status(&id, "delivered", Duration::from_secs(10))
        .await;
    let request = &receiver.received()[0];
    let header = |name: &str| request.headers[name].to_str().unwrap().to_owned();
    assert_eq!(header("webhook-id"), id);
    let timestamp: i64 = header("webhook-timestamp").parse().unwrap();
    assert!((now() - timestamp).abs() < 60);
    // The Standard Webhooks algorithm, computed here independently.
    let key = BASE64.decode(secret.trim_start_matches("whsec_")).unwrap();
    let expected = BASE64.encode(mac(
        &key,
        &[
            id.as_bytes(),
            b".",
            timestamp.to_string().as_bytes(),
            b".",
            &request.body,
        ],
    ));
    assert!(
        header("webhook-signature")
            .split(' ')
            .any(|s| s == format!("v1,{expected}")),
        "{}",
        header("webhook-signature")
    );
}

/// A Svix sender's request, re-signed for the application: the official `svix` and
/// `standardwebhooks` libraries must both accept what the application receives (the
/// `svix` library reads `svix-*` headers first, so the sender's must not be forwarded).
async fn svix_and_standard_webhooks_libraries_verify_resigned_deliveries(backend: Backend) {
    let receiver = Receiver::start(vec![]).await;
    let signing_secret = "whsec_c2lnbmluZy1zZWNyZXQtZm9yLXRlc3Rz";
    let config = format!(
        "[sources.svix]\nverify = \"svix\"\nsecret = \"{}\"\ndestination = \"{}\"\n\
         signing_secret = \"{signing_secret}\"\n",
        secret_of("svix"),
        receiver.url()
    );
    let app = TestApp::on(backend).config(&config).spawn().await;
    let body = r#"{"type":"invoice.paid","data":{"id":"in_1"}}"#;
    let headers = signed("svix", secret_of("svix"), now(), body, "msg_sdk_1");
    let (status, receipt) = send(&app, "svix", &headers, body).await;
    assert_eq!(status, 202, "{receipt}");
    let id = receipt["event_id"].as_str().unwrap();
    app.wait_for_status(id, "delivered", Duration::from_secs(10))
        .await;

    let delivery = &receiver.received()[0];
    for name in ["svix-id", "svix-timestamp", "svix-signature"] {
        assert!(
            !delivery.headers.contains_key(name),
            "{name} forwarded beside hookrelay's signature"
        );
    }
    let headers: serde_json::Map<String, Value> = delivery
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap())))
        .collect();
    let (verified, output) = run_sdk_script(
        "verify_delivery.py",
        &json!({
            "secret": signing_secret,
            "headers": headers,
            "body": String::from_utf8(delivery.body.to_vec()).unwrap(),
        }),
    );
    assert!(verified, "{output}");
    // The sender's signature stays in the stored event, for operators.
    assert_eq!(
        app.database
            .scalar("SELECT COUNT(*) FROM events WHERE headers LIKE '%svix-signature%'")
            .await,
        1
    );
}

/// Svix's library accepts `webhook-*` header names as well as `svix-*`; so does a
/// `verify = "svix"` source, key included.
async fn svix_sources_accept_webhook_header_names(backend: Backend) {
    let app = TestApp::on(backend).config(SOURCES).spawn().await;
    let body = r#"{"type":"user.created"}"#;
    let headers = signed("sw", secret_of("svix"), now(), body, "msg_names_1");
    let (status, receipt) = send(&app, "svix", &headers, body).await;
    assert_eq!(status, 202, "{receipt}");
    let (status, again) = send(&app, "svix", &headers, body).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["event_id"], receipt["event_id"]);
    let mut forged = headers.clone();
    forged[2].1 = "v1,bm9wZQ==".into();
    assert_eq!(send(&app, "svix", &forged, body).await.0, 401);
}

/// `@shopify/shopify-api` names the headers of Shopify's Events webhooks without
/// the `X-` prefix: accepted beside the `X-Shopify-*` names, key included.
async fn shopify_unprefixed_header_names_are_accepted(backend: Backend) {
    let app = TestApp::on(backend).config(SOURCES).spawn().await;
    let body = r#"{"id":820982911946154508,"email":"jon@example.com"}"#;
    let signature = BASE64.encode(mac(secret_of("shopify").as_bytes(), &[body.as_bytes()]));
    for (i, key_header) in ["shopify-event-id", "shopify-webhook-id"]
        .iter()
        .enumerate()
    {
        let headers: Headers = vec![
            ("shopify-hmac-sha256", signature.clone()),
            (
                key_header,
                format!("98880550-7158-44d4-b7cd-2c97c8a091b{i}"),
            ),
            ("shopify-topic", "orders/create".into()),
        ];
        let (status, receipt) = send(&app, "shopify", &headers, body).await;
        assert_eq!(status, 202, "{key_header}: {receipt}");
        let (status, again) = send(&app, "shopify", &headers, body).await;
        assert_eq!(status, 200, "{key_header}: {again}");
    }
    let wrong: Headers = vec![
        ("shopify-hmac-sha256", BASE64.encode(b"not the mac")),
        ("shopify-event-id", "e-3".into()),
    ];
    assert_eq!(send(&app, "shopify", &wrong, body).await.0, 401);
}

crate::on_both_backends!(
    svix_and_standard_webhooks_libraries_verify_resigned_deliveries,
    svix_sources_accept_webhook_header_names,
    shopify_unprefixed_header_names_are_accepted,
    every_scheme_accepts_good_signatures_and_refuses_bad_ones,
    either_of_two_secrets_verifies,
    provider_redeliveries_without_an_idempotency_key_collapse,
    slack_url_verification_is_answered_and_not_stored,
    form_posts_are_stored_as_received_where_allowed,
    unknown_sources_are_refused_when_configured_so,
    the_destination_gets_the_exact_bytes_and_headers,
    server_errors_are_retried_until_delivered,
    gone_dead_letters_at_once,
    retry_after_is_honoured,
    a_slow_destination_times_out,
    a_refused_connection_is_retried_then_dead_lettered,
    deliveries_are_resigned_with_standard_webhooks,
);
