//! "Waiting" means one thing everywhere: the JSON API and the dashboard agree, for a
//! delivery in every state, on whether it waits on its destination. Only a due
//! delivery (queued, or retrying with its time come) waits; a retry scheduled for
//! later does not, even to a paused destination.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::helpers::*;
use crate::support::receiver::{Answer, Receiver};

/// Whether the dashboard's row for `destination` on the event page says it waits.
fn dashboard_says_waiting(html: &str, destination: &str) -> bool {
    let start = html
        .find(&format!("data-destination=\"{destination}\""))
        .unwrap_or_else(|| panic!("no row for {destination}: {html}"));
    let row = &html[start..];
    let row = &row[..row.find("</tr>").unwrap()];
    row.contains("class=\"muted waiting\"")
}

async fn api_and_dashboard_agree_on_waiting_in_every_state(backend: Backend) {
    let failing = Receiver::answering(Vec::new(), || Answer::status(500)).await;
    let ok = Receiver::start(Vec::new()).await;
    // Answers long after the test has looked: its delivery stays `processing`.
    let hanging = Receiver::answering(Vec::new(), || {
        Answer::status(200).delay(Duration::from_secs(60))
    })
    .await;
    let names = ["fresh", "later", "soon", "slow", "done", "dead"];
    let config = format!(
        r#"
[destinations.fresh]
url = "{ok}"
[destinations.later]
url = "{failing}"
retry_base_delay = "1h"
[destinations.soon]
url = "{failing}"
retry_base_delay = "300ms"
retry_factor = 1
[destinations.slow]
url = "{hanging}"
timeout = "50s"
[destinations.done]
url = "{ok}"
[destinations.dead]
url = "{failing}"
max_attempts = 1

[sources.shop]
{routes}
"#,
        ok = ok.url(),
        failing = failing.url(),
        hanging = hanging.url(),
        routes = names
            .iter()
            .map(|name| format!("[[sources.shop.routes]]\ndestination = \"{name}\"\n"))
            .collect::<String>(),
    );
    let app = TestApp::on(backend).config(&config).spawn().await;
    let pause = |name: &str| {
        app.client
            .post(app.url(&format!("/destinations/{name}/pause")))
            .send()
    };
    assert_eq!(pause("fresh").await.unwrap().status(), 200);
    let id = app.accept("shop", "order-1", json!({"id": 1})).await;

    // Each delivery reaches the state it is here for; then every destination is paused.
    let expected = [
        ("fresh", "queued"),
        ("later", "retrying"),
        ("slow", "processing"),
        ("done", "delivered"),
        ("dead", "dead_lettered"),
    ];
    eventually(Duration::from_secs(20), "each delivery's state", || async {
        let event = app.event(&id).await;
        let status = |name: &str| {
            event["deliveries"]
                .as_array()
                .unwrap()
                .iter()
                .find(|d| d["destination"] == name)
                .map(|d| d["status"].clone())
                .unwrap_or(Value::Null)
        };
        let soon_failed = status("soon") == "retrying";
        (expected.iter().all(|(name, want)| status(name) == *want) && soon_failed).then_some(())
    })
    .await;
    for name in names.iter().filter(|n| **n != "fresh") {
        assert_eq!(pause(name).await.unwrap().status(), 200);
    }
    // `soon`'s retry comes due while its destination is paused.
    tokio::time::sleep(Duration::from_millis(400)).await;

    let event = app.event(&id).await;
    let html = client()
        .get(app.url(&format!("/ui/events/{id}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut seen = Vec::new();
    for delivery in event["deliveries"].as_array().unwrap() {
        let name = delivery["destination"].as_str().unwrap();
        let api = &delivery["waiting"];
        let dashboard = dashboard_says_waiting(&html, name);
        assert_eq!(
            !api.is_null(),
            dashboard,
            "{name} ({}): the API says waiting = {api}, the dashboard {}",
            delivery["status"],
            if dashboard {
                "says it waits"
            } else {
                "does not"
            }
        );
        seen.push((name.to_owned(), delivery["status"].clone(), api.clone()));
    }
    let waiting = |name: &str| {
        seen.iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, _, w)| w.clone())
            .unwrap()
    };
    // Due and held back: queued, and the retry whose time has come.
    assert_eq!(waiting("fresh"), "paused", "{seen:?}");
    assert_eq!(waiting("soon"), "paused", "{seen:?}");
    // Scheduled for later, in flight, or finished: not waiting on the destination.
    for name in ["later", "slow", "done", "dead"] {
        assert_eq!(waiting(name), Value::Null, "{name}: {seen:?}");
    }
}

crate::on_both_backends!(api_and_dashboard_agree_on_waiting_in_every_state);
