//! `format = "raw" | "envelope" | "cloudevents"` on every destination kind: the
//! CloudEvents are parsed by the official CloudEvents SDK (over HTTP and Kafka), the
//! envelope is read as JSON, and a signature covers exactly the body that was sent.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::brokers::{Kind, TestBroker};
use crate::support::database::Backend;
use crate::support::helpers::*;
use crate::support::receiver::{Received, Receiver};

const WITHIN: Duration = Duration::from_secs(30);
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn config(destination: &str, extra: &str) -> String {
    format!(
        "[destinations.bus]\n{destination}{extra}\n\
         [sources.shop]\n[[sources.shop.routes]]\ndestination = \"bus\"\n\
         event_types = [\"order.*\"]\n"
    )
}

fn headers_json(received: &Received) -> Value {
    received
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap())))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

async fn one_delivery(receiver: &Receiver) -> Received {
    eventually(WITHIN, "a delivery", || async {
        receiver.received().into_iter().next()
    })
    .await
}

/// Binary mode (`ce-*` headers, the body as sent) and structured mode (one
/// `application/cloudevents+json` document) both parse with the CloudEvents SDK.
async fn cloudevents_over_http_parse_with_the_official_sdk(backend: Backend) {
    for format in ["cloudevents", "cloudevents-structured"] {
        let receiver = Receiver::start(vec![]).await;
        let destination = format!("url = \"{}\"\n", receiver.url());
        let app = TestApp::on(backend)
            .config(&config(&destination, &format!("format = \"{format}\"\n")))
            .spawn()
            .await;
        let body = json!({"type": "order.created", "id": 7});
        let id = app.accept("shop", "k1", body.clone()).await;
        let delivery = one_delivery(&receiver).await;
        let (ok, output) = run_sdk_script(
            "parse_cloudevent.py",
            &json!({"headers": headers_json(&delivery),
                    "body": String::from_utf8(delivery.body.to_vec()).unwrap()}),
        );
        assert!(ok, "{format}: {output}");
        let parsed: Value = serde_json::from_str(output.trim()).unwrap();
        let attributes = &parsed["attributes"];
        assert_eq!(attributes["id"], id.as_str(), "{format}");
        assert_eq!(attributes["source"], "shop");
        assert_eq!(attributes["type"], "order.created");
        assert_eq!(attributes["specversion"], "1.0");
        assert_eq!(parsed["data"], body, "{format}");
    }
}

/// On Kafka, binary mode's attributes are `ce_*` record headers.
async fn cloudevents_on_kafka_parse_with_the_official_sdk(backend: Backend) {
    let broker = TestBroker::start(Kind::Kafka).await;
    let destination = broker.destination("ce").await;
    let app = TestApp::on(backend)
        .config(&config(&destination, "format = \"cloudevents\"\n"))
        .spawn()
        .await;
    let id = app
        .accept("shop", "k1", json!({"type": "order.paid", "n": 1}))
        .await;
    let consumed = broker.consume_cloudevents("ce", 1).await;
    let event = consumed[0].cloudevent.as_ref().expect("parsed");
    assert_eq!(event["id"], id.as_str());
    assert_eq!(event["type"], "order.paid");
    assert_eq!(event["source"], "shop");
    assert_eq!(consumed[0].json()["n"], 1, "the body as sent");
}

/// The envelope carries the metadata, the sender's headers and the payload as sent;
/// with a signing secret, the signature is over the envelope and verifies with the
/// Standard Webhooks libraries.
async fn a_signed_envelope_verifies_and_carries_everything(backend: Backend) {
    let receiver = Receiver::start(vec![]).await;
    let destination = format!("url = \"{}\"\n", receiver.url());
    let app = TestApp::on(backend)
        .config(&config(
            &destination,
            &format!("format = \"envelope\"\nsigning_secret = \"{SECRET}\"\n"),
        ))
        .spawn()
        .await;
    let id = app
        .accept("shop", "k1", json!({"type": "order.created", "total": 12}))
        .await;
    let delivery = one_delivery(&receiver).await;
    let envelope: Value = serde_json::from_slice(&delivery.body).unwrap();
    assert_eq!(envelope["id"], id.as_str());
    assert_eq!(envelope["source"], "shop");
    assert_eq!(envelope["event_type"], "order.created");
    assert_eq!(envelope["attempt"], 1);
    assert_eq!(envelope["payload"]["total"], 12);
    assert_eq!(envelope["headers"]["idempotency-key"], "k1");
    assert_eq!(delivery.headers["content-type"], "application/json");
    let (verified, output) = run_sdk_script(
        "verify_delivery.py",
        &json!({"secret": SECRET, "headers": headers_json(&delivery),
                "body": String::from_utf8(delivery.body.to_vec()).unwrap()}),
    );
    assert!(verified, "{output}");
}

/// The same envelope on a broker (Redis Streams here): one JSON entry body.
async fn an_envelope_on_a_broker(backend: Backend) {
    let broker = TestBroker::start(Kind::Redis).await;
    let destination = broker.destination("env").await;
    let app = TestApp::on(backend)
        .config(&config(&destination, "format = \"envelope\"\n"))
        .spawn()
        .await;
    let id = app
        .accept("shop", "k1", json!({"type": "order.created", "total": 12}))
        .await;
    app.wait_for_status(&id, "delivered", WITHIN).await;
    let consumed = broker.consume("env", 1, WITHIN).await;
    let envelope = consumed[0].json();
    assert_eq!(envelope["id"], id.as_str());
    assert_eq!(envelope["payload"]["total"], 12);
}

crate::on_both_backends!(
    cloudevents_over_http_parse_with_the_official_sdk,
    cloudevents_on_kafka_parse_with_the_official_sdk,
    a_signed_envelope_verifies_and_carries_everything,
    an_envelope_on_a_broker,
);
