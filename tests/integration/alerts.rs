//! Alerts, on both backends with time compressed through `[alerts]` and the
//! destinations' settings: a receiver standing in for Slack gets one "failing" and one
//! "recovered" message per episode and one dead-letter digest per window with the
//! right count, with two worker processes; JSON alerts verify with the official
//! Standard Webhooks library; lag episodes; an alert receiver that is down loses
//! nothing and causes no alert loop; the dashboard's charts and last alert.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::helpers::*;
use crate::support::receiver::{Answer, Received, Receiver, closed_port_url};
use crate::support::setup::Setup;

fn text(received: &Received) -> String {
    let body: Value = serde_json::from_slice(&received.body).expect("JSON alert");
    body["text"].as_str().expect("a text field").to_owned()
}

fn json_body(received: &Received) -> Value {
    serde_json::from_slice(&received.body).expect("JSON alert")
}

fn address_of(url: &str) -> SocketAddr {
    url.trim_start_matches("http://")
        .trim_end_matches("/hook")
        .parse()
        .unwrap()
}

async fn post_events(address: SocketAddr, source: &str, count: usize) -> Vec<String> {
    let client = client();
    let mut ids = Vec::new();
    for i in 0..count {
        let response = post_json(
            &client,
            address,
            source,
            Some(&format!("e{i}")),
            &json!({ "i": i }),
        )
        .await;
        assert_eq!(response.status(), 202);
        let receipt: Value = response.json().await.unwrap();
        ids.push(receipt["event_id"].as_str().unwrap().to_owned());
    }
    ids
}

/// The number in "*strict*: N deliveries were dead-lettered" (or "1 delivery was").
fn digest_count(text: &str) -> Option<(i64, String)> {
    let rest = text.split("*strict*: ").nth(1)?;
    let count = rest.split(' ').next()?.parse().ok()?;
    let window = rest
        .split(" between ")
        .nth(1)?
        .split('.')
        .next()?
        .to_owned();
    Some((count, window))
}

async fn destination(address: SocketAddr, name: &str) -> Value {
    let all = get_json(&client(), address, "/destinations").await;
    all["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {all}"))
        .clone()
}

async fn slack_messages_once_per_episode_and_window_with_two_workers(backend: Backend) {
    let setup = Setup::new(backend).await;
    let slack = Receiver::start(Vec::new()).await;
    let down = closed_port_url();
    let strict = Receiver::answering(Vec::new(), || Answer::status(410)).await;
    let path = setup.path().join("hookrelay.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[destinations.billing]
url = "{down}"
breaker_failures = 3
breaker_probe = "100ms"
breaker_probe_max = "200ms"

[destinations.strict]
url = "{strict}"

[sources.shop]
[[sources.shop.routes]]
destination = "billing"
[[sources.shop.routes]]
destination = "strict"

[alerts]
url = "{slack}"
digest = "1s"
lag = "off"
settle = "1s"
"#,
            strict = strict.url(),
            slack = slack.url()
        ),
    )
    .unwrap();
    let config = ["--config", path.to_str().unwrap()];
    let (_api, address) = setup.start("api", &[], &config, "api.log");
    let address = address.unwrap();
    wait_healthy(&client(), address).await;
    let _workers = [
        setup.start("worker", &[], &config, "worker-1.log").0,
        setup.start("worker", &[], &config, "worker-2.log").0,
    ];
    let count = 30;
    post_events(address, "shop", count).await;

    // Every dead letter of `strict` is counted once, in digests of distinct windows.
    let digests = eventually(Duration::from_secs(20), "digests of 30", || async {
        let digests: Vec<(i64, String)> = slack
            .received()
            .iter()
            .filter_map(|r| digest_count(&text(r)))
            .collect();
        (digests.iter().map(|d| d.0).sum::<i64>() >= count as i64).then_some(digests)
    })
    .await;
    let windows: HashSet<&String> = digests.iter().map(|d| &d.1).collect();
    assert_eq!(
        windows.len(),
        digests.len(),
        "one digest per window: {digests:?}"
    );
    assert_eq!(digests.iter().map(|d| d.0).sum::<i64>(), count as i64);

    eventually(Duration::from_secs(10), "a failing message", || async {
        slack
            .received()
            .iter()
            .any(|r| text(r).contains("*billing* is failing"))
            .then_some(())
    })
    .await;
    let failing = destination(address, "billing").await;
    assert_eq!(failing["state"], "failing", "{failing}");

    // The application comes back: its backlog drains, one recovery message.
    let billing = Receiver::start_on(address_of(&down)).await;
    eventually(Duration::from_secs(20), "billing receives all", || async {
        (billing.received().len() >= count).then_some(())
    })
    .await;
    eventually(Duration::from_secs(10), "a recovered message", || async {
        slack
            .received()
            .iter()
            .any(|r| text(r).contains("*billing* recovered"))
            .then_some(())
    })
    .await;
    // Probes came and went meanwhile; give a late duplicate the time to show.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let texts: Vec<String> = slack.received().iter().map(text).collect();
    let failing: Vec<&String> = texts.iter().filter(|t| t.contains("is failing")).collect();
    let recovered: Vec<&String> = texts.iter().filter(|t| t.contains("recovered")).collect();
    assert_eq!(failing.len(), 1, "{texts:#?}");
    assert_eq!(recovered.len(), 1, "{texts:#?}");
    assert!(
        failing[0].contains("Dashboard: /ui/destinations/billing"),
        "{}",
        failing[0]
    );
    let digests: i64 = texts
        .iter()
        .filter_map(|t| digest_count(t))
        .map(|d| d.0)
        .sum();
    assert_eq!(digests, count as i64, "{texts:#?}");
    assert!(
        slack
            .received()
            .iter()
            .all(|r| r.headers["content-type"] == "application/json")
    );
    let billing = destination(address, "billing").await;
    assert_eq!(
        billing["last_alert"]["type"], "destination.recovered",
        "{billing}"
    );
    assert_eq!(billing["last_alert"]["status"], "sent", "{billing}");
    assert_eq!(
        setup
            .count("SELECT COUNT(*) FROM alerts WHERE status <> 'sent'")
            .await,
        0
    );
}

async fn json_alerts_verify_with_the_standard_webhooks_library(backend: Backend) {
    let alerts = Receiver::start(Vec::new()).await;
    let strict = Receiver::answering(Vec::new(), || Answer::status(410)).await;
    let secret = "whsec_YWxlcnQtc2lnbmluZy1zZWNyZXQtZm9yLXRlc3Rz";
    let config = format!(
        "[destinations.strict]\nurl = \"{}\"\n\
         [sources.shop]\n[[sources.shop.routes]]\ndestination = \"strict\"\n\
         [alerts]\nurl = \"{}\"\nformat = \"json\"\nsigning_secret = \"{secret}\"\n\
         digest = \"300ms\"\n",
        strict.url(),
        alerts.url()
    );
    let app = TestApp::on(backend).config(&config).spawn().await;
    let id = post_events(app.address, "shop", 1).await.remove(0);
    app.wait_for_status(&id, "dead_lettered", Duration::from_secs(10))
        .await;
    let alert = eventually(Duration::from_secs(10), "the digest", || async {
        alerts.received().into_iter().next()
    })
    .await;
    let body = json_body(&alert);
    assert_eq!(body["type"], "destination.dead_lettered", "{body}");
    assert_eq!(body["destination"], "strict");
    assert!(body["at"].as_str().unwrap().ends_with('Z'), "{body}");
    assert_eq!(body["details"]["count"], 1, "{body}");
    assert_eq!(body["details"]["event_id"], id.as_str(), "{body}");
    assert_eq!(
        body["details"]["dashboard"],
        format!("/ui/events/{id}").as_str()
    );
    let headers: serde_json::Map<String, Value> = alert
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap())))
        .collect();
    assert!(
        headers["webhook-id"]
            .as_str()
            .unwrap()
            .starts_with("alert_")
    );
    let (verified, output) = run_sdk_script(
        "verify_delivery.py",
        &json!({
            "secret": secret,
            "headers": headers,
            "body": String::from_utf8(alert.body.to_vec()).unwrap(),
        }),
    );
    assert!(verified, "{output}");
    // A body changed on the way is refused.
    let (verified, _) = run_sdk_script(
        "verify_delivery.py",
        &json!({
            "secret": secret,
            "headers": headers,
            "body": String::from_utf8(alert.body.to_vec()).unwrap().replace("strict", "other"),
        }),
    );
    assert!(!verified);

    // The dashboard shows the minute's failure (once the worker has written its
    // counts) and the last alert.
    let page = eventually(Duration::from_secs(15), "the failure charted", || async {
        let page = app
            .client
            .get(format!("http://{}/ui/destinations/strict", app.address))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        page.contains("strict, last hour: 0 delivered, 1 failed")
            .then_some(page)
    })
    .await;
    assert!(page.contains("<svg"), "{page}");
    assert!(page.contains("dead lettered at"), "{page}");
    assert!(!page.contains("<script"));
}

async fn a_lag_episode_alerts_when_it_starts_and_when_it_ends(backend: Backend) {
    let alerts = Receiver::start(Vec::new()).await;
    let app_receiver = Receiver::start(Vec::new()).await;
    let config = format!(
        "[destinations.app]\nurl = \"{}\"\n\
         [sources.shop]\n[[sources.shop.routes]]\ndestination = \"app\"\n\
         [alerts]\nurl = \"{}\"\nformat = \"json\"\nlag = \"400ms\"\n",
        app_receiver.url(),
        alerts.url()
    );
    let app = TestApp::on(backend).config(&config).spawn().await;
    let paused = app
        .client
        .post(format!("http://{}/destinations/app/pause", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(paused.status(), 200);
    post_events(app.address, "shop", 5).await;
    let kinds = || {
        alerts
            .received()
            .iter()
            .map(|r| json_body(r)["type"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    eventually(Duration::from_secs(10), "a lagging alert", || async {
        kinds()
            .contains(&"destination.lagging".to_owned())
            .then_some(())
    })
    .await;
    let lagging = destination(app.address, "app").await;
    assert!(lagging["lagging_since"].is_string(), "{lagging}");
    let first = json_body(&alerts.received()[0]);
    assert_eq!(first["details"]["waiting"], 5, "{first}");
    assert!(first["details"]["since"].is_string(), "{first}");

    // Still lagging a while later: no second alert for the same episode.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(kinds(), ["destination.lagging"]);

    let resumed = app
        .client
        .post(format!("http://{}/destinations/app/resume", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(resumed.status(), 200);
    eventually(Duration::from_secs(10), "a caught-up alert", || async {
        (kinds().len() >= 2).then_some(())
    })
    .await;
    assert_eq!(kinds(), ["destination.lagging", "destination.caught_up"]);
    assert_eq!(app_receiver.received().len(), 5);
    let caught_up = destination(app.address, "app").await;
    assert!(caught_up["lagging_since"].is_null(), "{caught_up}");
    assert_eq!(caught_up["last_alert"]["type"], "destination.caught_up");
}

async fn an_alert_receiver_that_is_down_loses_nothing_and_loops_nothing(backend: Backend) {
    let down = closed_port_url();
    let strict = Receiver::answering(Vec::new(), || Answer::status(410)).await;
    let config = format!(
        "[destinations.strict]\nurl = \"{}\"\n\
         [sources.shop]\n[[sources.shop.routes]]\ndestination = \"strict\"\n\
         [alerts]\nurl = \"{down}\"\ndigest = \"1s\"\n",
        strict.url(),
    );
    let app = TestApp::on(backend).config(&config).spawn().await;
    let ids = post_events(app.address, "shop", 3).await;
    for id in &ids {
        app.wait_for_status(id, "dead_lettered", Duration::from_secs(10))
            .await;
    }
    let pending = eventually(Duration::from_secs(10), "tries of the alert", || async {
        let strict = destination(app.address, "strict").await;
        let alert = strict["last_alert"].clone();
        (alert["attempts"].as_u64().unwrap_or(0) >= 3).then_some(alert)
    })
    .await;
    assert_eq!(pending["status"], "pending", "{pending}");
    assert!(
        pending["last_error"]
            .as_str()
            .unwrap()
            .contains("could not be reached"),
        "{pending}"
    );
    // Failing to alert raises no alert and opens no breaker: only digests are kept.
    assert_eq!(
        app.database
            .scalar("SELECT COUNT(*) FROM alerts WHERE kind <> 'destination.dead_lettered'")
            .await,
        0
    );
    assert_eq!(destination(app.address, "strict").await["state"], "active");

    let receiver = Receiver::start_on(address_of(&down)).await;
    let texts = eventually(Duration::from_secs(15), "the alerts, late", || async {
        let texts: Vec<String> = receiver.received().iter().map(text).collect();
        let counted: i64 = texts
            .iter()
            .filter_map(|t| digest_count(t))
            .map(|d| d.0)
            .sum();
        (counted >= 3).then_some(texts)
    })
    .await;
    let counted: i64 = texts
        .iter()
        .filter_map(|t| digest_count(t))
        .map(|d| d.0)
        .sum();
    assert_eq!(counted, 3, "{texts:#?}");
    eventually(
        Duration::from_secs(5),
        "the alerts recorded as sent",
        || async {
            let unsent = app
                .database
                .scalar("SELECT COUNT(*) FROM alerts WHERE status <> 'sent'")
                .await;
            (unsent == 0).then_some(())
        },
    )
    .await;
    assert_eq!(
        receiver.received().len() as i64,
        app.database.scalar("SELECT COUNT(*) FROM alerts").await
    );
}

/// A destination that comes back and fails again, again and again, pages once: its
/// recovery is announced only after it stayed up for `settle`.
async fn a_flapping_destination_pages_once(backend: Backend) {
    let alerts = Receiver::start(Vec::new()).await;
    // Down, up, down, up, down, up: then up for good.
    let flapping = Receiver::start(
        [500, 200, 500, 200, 500, 200]
            .into_iter()
            .map(Answer::status)
            .collect(),
    )
    .await;
    let config = format!(
        "[destinations.app]\nurl = \"{}\"\nmax_in_flight = 1\n\
         breaker_failures = 1\nbreaker_probe = \"50ms\"\nbreaker_probe_max = \"50ms\"\n\
         [sources.shop]\n[[sources.shop.routes]]\ndestination = \"app\"\n\
         [alerts]\nurl = \"{}\"\nformat = \"json\"\nlag = \"off\"\nsettle = \"2s\"\n",
        flapping.url(),
        alerts.url()
    );
    let app = TestApp::on(backend).config(&config).spawn().await;
    let ids = post_events(app.address, "shop", 8).await;
    for id in &ids {
        app.wait_for_status(id, "delivered", Duration::from_secs(20))
            .await;
    }
    assert!(flapping.received().len() >= 11, "it flapped three times");
    let kinds = || {
        alerts
            .received()
            .iter()
            .map(|r| json_body(r)["type"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    eventually(
        Duration::from_secs(10),
        "the recovery, once settled",
        || async {
            kinds()
                .contains(&"destination.recovered".to_owned())
                .then_some(())
        },
    )
    .await;
    assert_eq!(kinds(), ["destination.failing", "destination.recovered"]);
}

crate::on_both_backends!(
    a_flapping_destination_pages_once,
    slack_messages_once_per_episode_and_window_with_two_workers,
    json_alerts_verify_with_the_standard_webhooks_library,
    a_lag_episode_alerts_when_it_starts_and_when_it_ends,
    an_alert_receiver_that_is_down_loses_nothing_and_loops_nothing,
);
