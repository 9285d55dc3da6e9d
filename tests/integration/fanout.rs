//! Fan-out: one webhook to several applications, chosen by routes. Real receivers, real
//! databases, the providers' payload shapes.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{Value, json};

use crate::support::helpers::*;
use crate::support::receiver::{Answer, Received, Receiver, closed_port_url};

fn event_ids(received: &[Received]) -> Vec<String> {
    received
        .iter()
        .map(|r| {
            r.headers["x-hookrelay-event-id"]
                .to_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

fn github_signature(secret: &str, body: &str) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

async fn each_receiver_gets_exactly_the_events_meant_for_it(backend: Backend) {
    let billing = Receiver::start(vec![]).await;
    let big = Receiver::start(vec![]).await;
    let archive = Receiver::start(vec![]).await;
    let config = format!(
        r#"
[destinations.billing]
url = "{billing}"
headers = {{ Authorization = "Bearer ${{BILLING_TOKEN}}" }}

[destinations.big-payments]
url = "{big}"

[destinations.archive]
url = "{archive}"

[sources.stripe]
[[sources.stripe.routes]]
destination = "billing"
event_types = ["invoice.*"]

[[sources.stripe.routes]]
destination = "big-payments"
filter = {{ body = {{ data = {{ object = {{ amount = {{ "$gte" = 10000 }} }} }} }} }}

[[sources.stripe.routes]]
destination = "archive"

[sources.github]
verify = "github"
secret = "gh-secret"
[[sources.github.routes]]
destination = "archive"
event_types = ["issues.opened", "push"]
"#,
        billing = billing.url(),
        big = big.url(),
        archive = archive.url(),
    );
    let app = TestApp::on(backend)
        .config(&config)
        .settings(&[("BILLING_TOKEN", "t0ps3cret")])
        .spawn()
        .await;
    // Stripe's shapes: `type` and `data.object` (abridged).
    let stripe = |id: &str, kind: &str, amount: Option<i64>| {
        let mut object = json!({"id": format!("obj_{id}"), "object": "invoice"});
        if let Some(amount) = amount {
            object["amount"] = json!(amount);
        }
        json!({"id": id, "object": "event", "type": kind, "data": {"object": object}})
    };
    let large_invoice = app
        .accept(
            "stripe",
            "evt_1",
            stripe("evt_1", "invoice.paid", Some(25_000)),
        )
        .await;
    let small_invoice = app
        .accept(
            "stripe",
            "evt_2",
            stripe("evt_2", "invoice.paid", Some(500)),
        )
        .await;
    let large_charge = app
        .accept(
            "stripe",
            "evt_3",
            stripe("evt_3", "charge.succeeded", Some(50_000)),
        )
        .await;
    let customer = app
        .accept("stripe", "evt_4", stripe("evt_4", "customer.created", None))
        .await;
    // The sender's redelivery is dropped at ingest: no second set of deliveries.
    let again = app
        .post(
            "stripe",
            Some("evt_1"),
            &stripe("evt_1", "invoice.paid", Some(25_000)),
        )
        .await;
    assert_eq!(again.status(), 200);

    // GitHub `issues` with action `opened` is routed; `issues` `closed` is not.
    let post_github = |delivery: &'static str, action: &'static str| {
        let body = json!({"action": action, "issue": {"number": 1347, "title": "Found a bug"},
                          "repository": {"full_name": "octocat/Hello-World"}})
        .to_string();
        app.client
            .post(app.url("/webhooks/github"))
            .header("content-type", "application/json")
            .header("x-github-event", "issues")
            .header("x-github-delivery", delivery)
            .header("x-hub-signature-256", github_signature("gh-secret", &body))
            .body(body)
            .send()
    };
    let opened = post_github("d-1", "opened").await.unwrap();
    assert_eq!(opened.status(), 202);
    let opened: Value = opened.json().await.unwrap();
    let closed = post_github("d-2", "closed").await.unwrap();
    assert_eq!(closed.status(), 202, "an unrouted event is still accepted");
    let closed: Value = closed.json().await.unwrap();
    let opened = opened["event_id"].as_str().unwrap().to_owned();
    let closed = closed["event_id"].as_str().unwrap().to_owned();

    let all_delivered = [
        &large_invoice,
        &small_invoice,
        &large_charge,
        &customer,
        &opened,
    ];
    for id in all_delivered {
        app.wait_for_status(id, "delivered", Duration::from_secs(15))
            .await;
    }
    let set = |ids: &[&String]| ids.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let sorted = |mut ids: Vec<String>| {
        ids.sort();
        ids
    };
    assert_eq!(
        sorted(event_ids(&billing.received())),
        sorted(set(&[&large_invoice, &small_invoice]))
    );
    assert_eq!(
        sorted(event_ids(&big.received())),
        sorted(set(&[&large_invoice, &large_charge]))
    );
    assert_eq!(
        sorted(event_ids(&archive.received())),
        sorted(set(&[
            &large_invoice,
            &small_invoice,
            &large_charge,
            &customer,
            &opened
        ]))
    );
    // Each names its destination; the destination's own headers are added.
    for (receiver, name) in [
        (&billing, "billing"),
        (&big, "big-payments"),
        (&archive, "archive"),
    ] {
        for received in receiver.received() {
            assert_eq!(received.headers["x-hookrelay-destination"], name);
        }
    }
    assert_eq!(
        billing.received()[0].headers["authorization"],
        "Bearer t0ps3cret"
    );
    assert!(archive.received()[0].headers.get("authorization").is_none());

    // One event, three deliveries: the API shows each, and the attempts name theirs.
    let event = app.event(&large_invoice).await;
    assert_eq!(event["status"], "delivered");
    assert_eq!(event["event_type"], "invoice.paid");
    let deliveries: BTreeSet<&str> = event["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["destination"].as_str().unwrap())
        .collect();
    assert_eq!(
        deliveries,
        BTreeSet::from(["archive", "big-payments", "billing"])
    );
    let attempts = get_json(
        &app.client,
        app.address,
        &format!("/events/{large_invoice}/attempts"),
    )
    .await;
    assert_eq!(attempts["attempts"].as_array().unwrap().len(), 3);

    // The event no route takes is kept, visible, and says why.
    let filtered = app.event(&closed).await;
    assert_eq!(filtered["status"], "filtered");
    assert_eq!(filtered["status_description"], "Matched no route");
    assert_eq!(filtered["event_type"], "issues.closed");
    assert_eq!(filtered["deliveries"], json!([]));
    let listed = get_json(&app.client, app.address, "/events?status=filtered").await;
    let listed: Vec<&str> = listed["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, vec![closed.as_str()]);
    // Its page says why each route of its source does not take it.
    let page = get_text(&app.client, &app.url(&format!("/ui/events/{closed}"))).await;
    assert!(page.contains("id=\"why-filtered\""), "{page}");
    assert!(
        page.contains("archive: the event type is not one of the route&#39;s event_types")
            || page.contains("archive: the event type is not one of the route's event_types"),
        "{page}"
    );
    // Replaying it routes it again; with the same routes it still matches none.
    let replay = app
        .client
        .post(app.url(&format!("/events/{closed}/replay")))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 409);
    assert_error(&replay.json().await.unwrap(), "not_replayable");

    let by_destination = get_json(&app.client, app.address, "/events?destination=billing").await;
    assert_eq!(by_destination["events"].as_array().unwrap().len(), 2);
    let destinations = get_json(&app.client, app.address, "/destinations").await;
    let names: HashMap<&str, &Value> = destinations["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["name"].as_str().unwrap(), d))
        .collect();
    assert_eq!(names.len(), 3, "{destinations}");
    let billing_view = names["billing"];
    assert_eq!(billing_view["state"], "active");
    assert_eq!(billing_view["backlog"], 0);
    assert!(billing_view["last_success_at"].is_string());
    assert_eq!(billing_view["url"], billing.url());
}

async fn a_destination_that_is_down_does_not_hold_back_the_others(backend: Backend) {
    let up = Receiver::start(vec![]).await;
    let config = format!(
        r#"
[destinations.up]
url = "{up}"

# Without its breaker (on by default, it would hold these deliveries without
# using attempts): this test is about retries and dead letters per destination.
[destinations.down]
url = "{down}"
max_attempts = 3
retry_base_delay = "50ms"
retry_factor = 1
breaker_failures = 0

[sources.shop]
[[sources.shop.routes]]
destination = "up"
[[sources.shop.routes]]
destination = "down"
"#,
        up = up.url(),
        down = closed_port_url(),
    );
    // A slow global policy: only the destination's own overrides let this finish.
    let app = TestApp::on(backend)
        .config(&config)
        .settings(&[("HOOKRELAY_RETRY_BASE_DELAY", "1h")])
        .spawn()
        .await;
    let id = app.accept("shop", "order-1", json!({"id": 1})).await;
    eventually(
        Duration::from_secs(5),
        "the healthy destination receives",
        || {
            let count = up.received().len();
            async move { (count == 1).then_some(()) }
        },
    )
    .await;
    let event = app
        .wait_for_status(&id, "dead_lettered", Duration::from_secs(15))
        .await;
    let deliveries = event["deliveries"].as_array().unwrap();
    let down = deliveries
        .iter()
        .find(|d| d["destination"] == "down")
        .unwrap();
    assert_eq!(down["status"], "dead_lettered");
    assert_eq!(down["attempts"], 3);
    assert!(
        down["last_error"]
            .as_str()
            .unwrap()
            .contains("connection failed")
    );
    let delivered = deliveries
        .iter()
        .find(|d| d["destination"] == "up")
        .unwrap();
    assert_eq!(
        (delivered["status"].as_str(), delivered["attempts"].as_u64()),
        (Some("delivered"), Some(1))
    );
    // The summary of several: all finished, one dead-lettered.
    assert_eq!(event["attempts"], 3);

    // Replaying one destination re-sends only that one.
    let unknown = app
        .client
        .post(app.url(&format!("/events/{id}/replay?destination=elsewhere")))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let replay = app
        .client
        .post(app.url(&format!("/events/{id}/replay?destination=down")))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 202);
    let event = eventually(Duration::from_secs(15), "down dead-lettered again", || {
        let app = &app;
        let id = id.clone();
        async move {
            let event = app.event(&id).await;
            let down = event["deliveries"]
                .as_array()?
                .iter()
                .find(|d| d["destination"] == "down")?
                .clone();
            (down["attempts"] == 6 && down["status"] == "dead_lettered").then_some(event)
        }
    })
    .await;
    assert_eq!(event["status"], "dead_lettered");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(up.received().len(), 1, "the healthy one got the event once");
}

async fn replaying_one_delivery_re_sends_it_to_that_destination_only(backend: Backend) {
    let first = Receiver::start(vec![]).await;
    // Fails permanently once (410), then accepts.
    let second = Receiver::start(vec![Answer::status(410)]).await;
    let config = format!(
        r#"
[destinations.first]
url = "{first}"
[destinations.second]
url = "{second}"
[sources.app]
[[sources.app.routes]]
destination = "first"
[[sources.app.routes]]
destination = "second"
"#,
        first = first.url(),
        second = second.url(),
    );
    let app = TestApp::on(backend).config(&config).spawn().await;
    let id = app.accept("app", "k-1", json!({"n": 1})).await;
    app.wait_for_status(&id, "dead_lettered", Duration::from_secs(10))
        .await;
    let replay = app
        .client
        .post(app.url(&format!("/events/{id}/replay?destination=second")))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 202);
    app.wait_for_status(&id, "delivered", Duration::from_secs(10))
        .await;
    assert_eq!(first.received().len(), 1);
    assert_eq!(second.received().len(), 2);
    assert_eq!(second.received()[1].headers["x-hookrelay-attempt"], "2");
}

crate::on_both_backends!(
    each_receiver_gets_exactly_the_events_meant_for_it,
    a_destination_that_is_down_does_not_hold_back_the_others,
    replaying_one_delivery_re_sends_it_to_that_destination_only,
);
