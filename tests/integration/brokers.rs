//! Destinations that are not HTTP: one conformance suite that every broker kind plugs
//! its consumer into (Kafka through tansu, SQS through moto, this machine's RabbitMQ,
//! NATS JetStream and Redis), on both backends. What hookrelay published is read back
//! with each broker's own Python client.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use serde_json::Value;

use crate::support::brokers::{Consumed, Kind, TestBroker};
use crate::support::database::Backend;
use crate::support::helpers::*;
use crate::support::receiver::Receiver;
use crate::support::setup::Setup;

const WITHIN: Duration = Duration::from_secs(30);

/// Posts `body` exactly as given; returns the event id.
async fn post_raw(app: &TestApp, key: &str, body: &str) -> String {
    let response = app
        .client
        .post(app.url("/webhooks/shop"))
        .header("content-type", "application/json")
        .header("idempotency-key", key)
        .header("x-shop-signature", format!("sig-{key}"))
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202, "{key}");
    response.json::<Value>().await.unwrap()["event_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn order(customer: &str, n: usize) -> String {
    // Spacing and key order as a sender might write them: kept byte for byte.
    format!(r#"{{"type":"order.created",  "customer":"{customer}", "n":{n}}}"#)
}

async fn destination_state(app: &TestApp) -> String {
    let listed = get_json(&app.client, app.address, "/destinations").await;
    listed["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "bus")
        .map(|d| d["state"].as_str().unwrap().to_owned())
        .unwrap_or_default()
}

fn suffix(kind: Kind) -> &'static str {
    if kind == Kind::Sqs {
        "events.fifo"
    } else {
        "events"
    }
}

/// The body byte for byte, hookrelay's metadata, the sender's headers, the key, and
/// the broker's deduplication id where it has one.
async fn publishes_what_was_sent_with_its_metadata_and_key(kind: Kind, backend: Backend) {
    let broker = TestBroker::start(kind).await;
    let destination = broker.destination(suffix(kind)).await;
    let config = format!(
        "[destinations.bus]\n{destination}ordering_key = \"json:/customer\"\n\n\
         [sources.shop]\n[[sources.shop.routes]]\ndestination = \"bus\"\n\
         event_types = [\"order.*\"]\n"
    );
    let app = TestApp::on(backend).config(&config).spawn().await;
    let mut sent = HashMap::new();
    for (n, customer) in ["cus_a", "cus_b", "cus_c"].into_iter().enumerate() {
        let body = order(customer, n);
        let id = post_raw(&app, &format!("k{n}"), &body).await;
        sent.insert(id, (body, customer, format!("sig-k{n}")));
    }
    for id in sent.keys() {
        app.wait_for_status(id, "delivered", WITHIN).await;
        let attempts = get_json(&app.client, app.address, &format!("/events/{id}/attempts")).await;
        let ack = attempts["attempts"][0]["response_body"]
            .as_str()
            .unwrap_or_default();
        assert!(
            !ack.is_empty(),
            "the broker's acknowledgement is recorded: {attempts}"
        );
    }
    let consumed = broker.consume(suffix(kind), 3, WITHIN).await;
    assert_eq!(consumed.len(), 3, "{consumed:?}");
    for message in &consumed {
        let id = message.event_id();
        let (body, customer, signature) = &sent[&id];
        assert_eq!(String::from_utf8_lossy(&message.body), *body);
        assert_eq!(message.header("hookrelay-source"), Some("shop"));
        assert_eq!(message.header("hookrelay-destination"), Some("bus"));
        assert_eq!(
            message.header("hookrelay-event-type"),
            Some("order.created")
        );
        assert_eq!(message.header("hookrelay-attempt"), Some("1"));
        assert!(message.header("hookrelay-received-at").is_some());
        assert_eq!(message.header("webhook-id"), Some(id.as_str()));
        assert_eq!(message.header("content-type"), Some("application/json"));
        assert_eq!(message.key.as_deref(), Some(*customer), "{message:?}");
        match kind {
            // SQS keeps the sender's headers in one attribute (10 at most).
            Kind::Sqs => {
                let rest: Value =
                    serde_json::from_str(message.header("hookrelay-headers").unwrap()).unwrap();
                assert_eq!(rest["x-shop-signature"], *signature);
                assert_eq!(message.meta["deduplication_id"], id.as_str());
            }
            _ => assert_eq!(message.header("x-shop-signature"), Some(signature.as_str())),
        }
        match kind {
            Kind::Nats => assert_eq!(message.header("Nats-Msg-Id"), Some(id.as_str())),
            Kind::Amqp => {
                assert_eq!(message.meta["message_id"], id.as_str());
                assert_eq!(message.meta["delivery_mode"], 2, "persistent");
                assert_eq!(message.meta["routing_key"], "shop.order.created");
            }
            _ => {}
        }
    }
}

/// A broker gone for longer than the whole retry schedule: deliveries wait behind the
/// breaker (no attempts spent, nothing dead-lettered) and all arrive once it is back.
async fn an_outage_longer_than_the_retry_schedule_loses_nothing(kind: Kind, backend: Backend) {
    let broker = TestBroker::start(kind).await;
    let destination = broker.destination(suffix(kind)).await;
    let config = format!(
        "[destinations.bus]\n{destination}timeout = \"1s\"\nmax_attempts = 2\n\
         retry_base_delay = \"50ms\"\nbreaker_failures = 2\nbreaker_probe = \"200ms\"\n\
         breaker_probe_max = \"300ms\"\n\n\
         [sources.shop]\n[[sources.shop.routes]]\ndestination = \"bus\"\n"
    );
    let app = TestApp::on(backend).config(&config).spawn().await;
    broker.proxy.cut();
    let mut ids = HashSet::new();
    for n in 0..6 {
        ids.insert(post_raw(&app, &format!("k{n}"), &order("cus_a", n)).await);
    }
    eventually(WITHIN, "the breaker opens", || async {
        (destination_state(&app).await == "failing").then_some(())
    })
    .await;
    // Several probes fail meanwhile, each far past what two attempts would allow.
    eventually(WITHIN, "probes fail while the broker is away", || async {
        let attempts: usize = {
            let mut total = 0;
            for id in &ids {
                let listed =
                    get_json(&app.client, app.address, &format!("/events/{id}/attempts")).await;
                total += listed["attempts"].as_array().map_or(0, Vec::len);
            }
            total
        };
        (attempts >= 5).then_some(())
    })
    .await;
    for id in &ids {
        let event = app.event(id).await;
        assert_ne!(event["status"], "dead_lettered", "{event}");
    }
    broker.proxy.restore();
    for id in &ids {
        app.wait_for_status(id, "delivered", WITHIN).await;
    }
    let consumed = broker.consume(suffix(kind), 6, WITHIN).await;
    let arrived: HashSet<String> = consumed.iter().map(Consumed::event_id).collect();
    assert_eq!(arrived, ids);
}

/// `ordering = "key"`: per key, the broker holds the events in the order they arrived.
async fn per_key_order_holds_end_to_end(kind: Kind, backend: Backend) {
    let broker = TestBroker::start(kind).await;
    let destination = broker.destination(suffix(kind)).await;
    let config = format!(
        "[destinations.bus]\n{destination}ordering = \"key\"\n\
         ordering_key = \"json:/customer\"\n\n\
         [sources.shop]\n[[sources.shop.routes]]\ndestination = \"bus\"\n"
    );
    let app = TestApp::on(backend).config(&config).spawn().await;
    let customers = ["cus_a", "cus_b", "cus_c"];
    for n in 0..8 {
        for customer in customers {
            post_raw(&app, &format!("{customer}-{n}"), &order(customer, n)).await;
        }
    }
    let consumed = broker.consume(suffix(kind), 24, WITHIN).await;
    assert_eq!(consumed.len(), 24);
    let mut seen: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for message in &consumed {
        let body = message.json();
        seen.entry(body["customer"].as_str().unwrap().to_owned())
            .or_default()
            .push(body["n"].as_u64().unwrap());
    }
    for (customer, numbers) in seen {
        assert_eq!(numbers, (0..8).collect::<Vec<_>>(), "{customer}");
    }
}

/// A topic, queue, exchange or stream that does not exist is the event's failure with
/// a clear error, not an outage: the breaker stays closed, the event is dead-lettered
/// when its attempts run out, and the dead letter is alerted.
async fn a_missing_target_is_a_clear_error_and_an_alert(kind: Kind, backend: Backend) {
    let broker = TestBroker::start(kind).await;
    let destination = broker.missing_destination().await;
    let slack = Receiver::start(vec![]).await;
    let config = format!(
        "[destinations.bus]\n{destination}max_attempts = 2\nretry_base_delay = \"50ms\"\n\n\
         [sources.shop]\n[[sources.shop.routes]]\ndestination = \"bus\"\n\n\
         [alerts]\nurl = \"{}\"\ndigest = \"300ms\"\nlag = \"off\"\n",
        slack.url()
    );
    let app = TestApp::on(backend).config(&config).spawn().await;
    let id = post_raw(&app, "k1", &order("cus_a", 1)).await;
    let event = app.wait_for_status(&id, "dead_lettered", WITHIN).await;
    let error = event["last_error"].as_str().unwrap();
    assert!(error.contains("destination misconfigured"), "{error}");
    assert_ne!(destination_state(&app).await, "failing");
    let alert = eventually(WITHIN, "the dead-letter alert", || async {
        slack
            .received()
            .into_iter()
            .map(|r| String::from_utf8_lossy(&r.body).into_owned())
            .find(|text| text.contains("bus"))
    })
    .await;
    assert!(alert.contains("dead"), "{alert}");
}

/// A replay is published again, under a new deduplication id: a broker that drops
/// repeats (JetStream, SQS FIFO) must not drop what an operator asked to resend.
async fn a_replay_is_published_again(kind: Kind, backend: Backend) {
    let broker = TestBroker::start(kind).await;
    let destination = broker.destination(suffix(kind)).await;
    let config = format!(
        "[destinations.bus]\n{destination}\n\
         [sources.shop]\n[[sources.shop.routes]]\ndestination = \"bus\"\n"
    );
    let app = TestApp::on(backend).config(&config).spawn().await;
    let id = post_raw(&app, "k1", &order("cus_a", 1)).await;
    app.wait_for_status(&id, "delivered", WITHIN).await;
    let response = app
        .client
        .post(app.url(&format!("/events/{id}/replay")))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    eventually(WITHIN, "the replayed attempt", || async {
        let listed = get_json(&app.client, app.address, &format!("/events/{id}/attempts")).await;
        let attempts = listed["attempts"].as_array().cloned().unwrap_or_default();
        (attempts.len() == 2 && app.event(&id).await["status"] == "delivered").then_some(())
    })
    .await;
    let consumed = broker.consume(suffix(kind), 2, WITHIN).await;
    assert_eq!(consumed.len(), 2, "published twice: {consumed:?}");
    assert!(consumed.iter().all(|m| m.event_id() == id));
    // Without a key, Kafka may put the two on different partitions, and a consumer
    // reads partitions in no set order: find the replay by its attempt number.
    let replayed = consumed
        .iter()
        .find(|m| m.header("hookrelay-attempt") == Some("2"))
        .unwrap_or_else(|| panic!("the replay is attempt 2: {consumed:?}"));
    match kind {
        Kind::Nats => assert_eq!(
            replayed.header("Nats-Msg-Id"),
            Some(format!("{id}.r1").as_str())
        ),
        Kind::Sqs => assert_eq!(replayed.meta["deduplication_id"], format!("{id}.r1")),
        _ => {}
    }
}

/// A message the broker will never take for its size is dead-lettered at once, with
/// the broker's reason: retrying cannot help, and it is not an outage.
async fn a_message_too_large_is_dead_lettered_at_once(kind: Kind, backend: Backend) {
    let broker = TestBroker::start(kind).await;
    let destination = broker.small_destination().await;
    let config = format!(
        "[destinations.bus]\n{destination}max_attempts = 5\n\n\
         [sources.shop]\n[[sources.shop.routes]]\ndestination = \"bus\"\n"
    );
    let app = TestApp::on(backend).config(&config).spawn().await;
    let big = format!(
        r#"{{"type":"order.created","note":"{}"}}"#,
        "x".repeat(2000)
    );
    let id = post_raw(&app, "k1", &big).await;
    let event = app.wait_for_status(&id, "dead_lettered", WITHIN).await;
    assert_eq!(event["attempts"], 1, "no retry: {event}");
    let error = event["last_error"].as_str().unwrap();
    assert!(
        error.contains("refused") || error.contains("size"),
        "{error}"
    );
    assert_ne!(destination_state(&app).await, "failing");
}

macro_rules! on_kafka_and_nats {
    ($($name:ident),* $(,)?) => {
        on_every_broker!(@kind kafka Kafka $($name),*);
        on_every_broker!(@kind nats Nats $($name),*);
    };
}

/// `hookrelay serve` killed with SIGKILL while it publishes: after a restart every
/// event reaches the broker (some perhaps twice, with the same event id), none is lost.
async fn a_kill_mid_publish_loses_nothing(kind: Kind, backend: Backend) {
    let broker = TestBroker::start(kind).await;
    let destination = broker.destination(suffix(kind)).await;
    let setup = Setup::new(backend).await;
    let config = setup.path().join("hookrelay.toml");
    // A rate that makes the drain take a few seconds, so that the kill lands in it.
    std::fs::write(
        &config,
        format!(
            "[destinations.bus]\n{destination}rate = \"20/s\"\n\n\
             [sources.shop]\n[[sources.shop.routes]]\ndestination = \"bus\"\n"
        ),
    )
    .unwrap();
    let args = ["--config".to_owned(), config.display().to_string()];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (mut serve, address) = setup.start("serve", &[], &args, "serve.log");
    let address = address.unwrap();
    let client = client();
    wait_healthy(&client, address).await;
    let mut ids = HashSet::new();
    for n in 0..40 {
        let body = serde_json::json!({"type": "order.created", "customer": "cus_a", "n": n});
        let response = post_json(&client, address, "shop", Some(&format!("k{n}")), &body).await;
        assert_eq!(response.status(), 202);
        let receipt: Value = response.json().await.unwrap();
        ids.insert(receipt["event_id"].as_str().unwrap().to_owned());
    }
    let delivered_before_kill = eventually(WITHIN, "some deliveries", || async {
        let delivered = get_json(&client, address, "/events?status=delivered&limit=100").await;
        let count = delivered["events"].as_array().map_or(0, Vec::len);
        (count >= 5).then_some(count)
    })
    .await;
    serve.kill();
    assert!(
        delivered_before_kill < ids.len(),
        "the kill must land mid-publish ({delivered_before_kill} already delivered)"
    );
    let delivered = restart_until_all_delivered(&setup, &args, &ids).await;
    assert_eq!(delivered, ids.len());
    let consumed = broker
        .consume_distinct(suffix(kind), ids.len(), WITHIN)
        .await;
    let arrived: HashSet<String> = consumed.iter().map(Consumed::event_id).collect();
    assert_eq!(arrived, ids, "every event reached the broker");
}

/// Starts `serve` again and waits for every event to be delivered; returns how many.
async fn restart_until_all_delivered(setup: &Setup, args: &[&str], ids: &HashSet<String>) -> usize {
    let (_serve, address) = setup.start("serve", &[], args, "serve-again.log");
    let address = address.unwrap();
    let client = client();
    wait_healthy(&client, address).await;
    for id in ids {
        wait_for_status(&client, address, id, "delivered", WITHIN).await;
    }
    ids.len()
}

/// Operators see what each destination is: `GET /destinations` and the dashboard
/// name its kind and format, and `routes test` says where an event would be
/// published. No broker is needed for that: nothing is sent.
async fn operators_see_each_destinations_kind(backend: Backend) {
    let config = "[destinations.bus]\nurl = \"kafka://127.0.0.1:9/webhooks.{source}\"\n\
                  format = \"cloudevents\"\n\
                  [destinations.jobs]\nurl = \"amqp://user:pw@127.0.0.1:9/%2f\"\n\
                  exchange = \"hooks\"\nrouting_key = \"{source}.{event_type}\"\n\
                  [destinations.app]\nurl = \"http://127.0.0.1:9/\"\n\
                  [sources.shop]\n[[sources.shop.routes]]\ndestination = \"bus\"\n\
                  [[sources.shop.routes]]\ndestination = \"jobs\"\n\
                  [[sources.shop.routes]]\ndestination = \"app\"\n";
    let app = TestApp::on(backend).config(config).spawn().await;
    let listed = get_json(&app.client, app.address, "/destinations").await;
    let by_name: HashMap<&str, &Value> = listed["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["name"].as_str().unwrap(), d))
        .collect();
    assert_eq!(by_name["bus"]["kind"], "kafka");
    assert_eq!(by_name["bus"]["format"], "cloudevents");
    assert_eq!(by_name["jobs"]["kind"], "amqp");
    assert_eq!(by_name["app"]["kind"], "http");
    assert_eq!(by_name["app"]["format"], "raw");
    let shown = by_name["jobs"]["url"].as_str().unwrap();
    assert!(
        !shown.contains("pw"),
        "credentials are never shown: {shown}"
    );
    let page = get_text(&app.client, &app.url("/ui/destinations/bus")).await;
    assert!(page.contains(r#"<dd id="kind">kafka</dd>"#), "{page}");
    assert!(
        page.contains(r#"<dd id="format">cloudevents</dd>"#),
        "{page}"
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hookrelay.toml");
    std::fs::write(&path, config).unwrap();
    let body = dir.path().join("order.json");
    std::fs::write(&body, r#"{"type":"order.created"}"#).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_hookrelay"))
        .args(["routes", "test", "--config"])
        .arg(&path)
        .args(["--source", "shop", "--body"])
        .arg(&body)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("as kafka (cloudevents) to topic webhooks.shop"),
        "{text}"
    );
    assert!(
        text.contains("as amqp (raw) to exchange \"hooks\", routing key shop."),
        "{text}"
    );
}

crate::on_both_backends!(operators_see_each_destinations_kind);

macro_rules! on_every_broker {
    ($($name:ident),* $(,)?) => {
        on_every_broker!(@kind kafka Kafka $($name),*);
        on_every_broker!(@kind sqs Sqs $($name),*);
        on_every_broker!(@kind amqp Amqp $($name),*);
        on_every_broker!(@kind nats Nats $($name),*);
        on_every_broker!(@kind redis Redis $($name),*);
    };
    (@kind $module:ident $kind:ident $($name:ident),*) => {
        mod $module {
            mod sqlite {
                $(
                    #[tokio::test]
                    async fn $name() {
                        super::super::$name(
                            crate::support::brokers::Kind::$kind,
                            crate::support::database::Backend::Sqlite,
                        )
                        .await
                    }
                )*
            }
            mod postgres {
                $(
                    #[tokio::test]
                    async fn $name() {
                        super::super::$name(
                            crate::support::brokers::Kind::$kind,
                            crate::support::database::Backend::Postgres,
                        )
                        .await
                    }
                )*
            }
        }
    };
}

on_every_broker!(
    publishes_what_was_sent_with_its_metadata_and_key,
    an_outage_longer_than_the_retry_schedule_loses_nothing,
    per_key_order_holds_end_to_end,
    a_missing_target_is_a_clear_error_and_an_alert,
    a_kill_mid_publish_loses_nothing,
    a_replay_is_published_again,
);

mod too_large {
    use super::*;
    on_kafka_and_nats!(a_message_too_large_is_dead_lettered_at_once);
}
