//! Several API and worker processes on one database.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::helpers::*;
use crate::support::receiver::Receiver;
use crate::support::setup::Setup;

async fn two_apis_and_three_workers_deliver_everything_once(backend: Backend) {
    let setup = Setup::new(backend).await;
    let receiver = Receiver::start(vec![]).await;
    let config = setup.path().join("hookrelay.toml");
    std::fs::write(
        &config,
        format!("[sources.app]\ndestination = \"{}\"\n", receiver.url()),
    )
    .unwrap();
    let config = config.display().to_string();
    let extra = ["--config", config.as_str()];

    // The first process creates the schema; the rest start against it together.
    let (_api_a, a) = setup.start("api", &[], &extra, "api-a.log");
    let a = a.unwrap();
    wait_healthy(&client(), a).await;
    let (_api_b, b) = setup.start("api", &[], &extra, "api-b.log");
    let b = b.unwrap();
    let _workers: Vec<_> = (0..3)
        .map(|n| setup.start("worker", &[], &extra, &format!("worker-{n}.log")))
        .collect();
    wait_healthy(&client(), b).await;

    // Every event is sent to one API and its redelivery to the other.
    let events = 2000;
    let clients = 16;
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            tokio::spawn(async move {
                let client = client();
                let mut ids = Vec::new();
                for n in (c..events).step_by(clients) {
                    let key = format!("event-{n}");
                    let body = json!({"n": n});
                    let (first, second) = if n % 2 == 0 { (a, b) } else { (b, a) };
                    let response = post_json(&client, first, "app", Some(&key), &body).await;
                    assert_eq!(response.status(), 202);
                    let accepted: Value = response.json().await.unwrap();
                    let again = post_json(&client, second, "app", Some(&key), &body).await;
                    assert_eq!(again.status(), 200, "the redelivery to the other API");
                    let duplicate: Value = again.json().await.unwrap();
                    assert_eq!(duplicate["event_id"], accepted["event_id"]);
                    ids.push(accepted["event_id"].as_str().unwrap().to_owned());
                }
                ids
            })
        })
        .collect();
    let mut ids = Vec::new();
    for task in tasks {
        ids.extend(task.await.unwrap());
    }
    assert_eq!(ids.len(), events);

    let deadline = Instant::now() + Duration::from_secs(60);
    while receiver.received().len() < events {
        assert!(
            Instant::now() < deadline,
            "only {} of {events} delivered",
            receiver.received().len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Nothing crashed, so nothing may arrive twice; give stragglers a moment to show.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut deliveries: HashMap<String, usize> = HashMap::new();
    for request in receiver.received() {
        let id = request.headers["x-hookrelay-event-id"]
            .to_str()
            .unwrap()
            .to_owned();
        *deliveries.entry(id).or_default() += 1;
    }
    assert_eq!(deliveries.len(), events);
    let twice: Vec<_> = deliveries.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    assert!(ids.iter().all(|id| deliveries.contains_key(id)));
    let stored = setup.count("SELECT COUNT(*) FROM events").await;
    assert_eq!(stored as usize, events);
    eventually(
        Duration::from_secs(10),
        "every event marked delivered",
        || async {
            let delivered = setup
                .count("SELECT COUNT(*) FROM deliveries WHERE status = 'delivered'")
                .await;
            (delivered as usize == events).then_some(())
        },
    )
    .await;
}

crate::on_both_backends!(two_apis_and_three_workers_deliver_everything_once);
