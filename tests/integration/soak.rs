//! The soak: webhooks posted all along while worker and API processes are killed with
//! SIGKILL and started again, and a destination flaps; then everything drains and the
//! receivers' records are checked against what was acknowledged: nothing missing,
//! nothing at a destination its routes did not choose, per-key order kept at the
//! ordered destination, duplicates counted, nothing dead-lettered.
//!
//! The suite runs it for a few seconds on each backend; `scripts/soak` runs it for as
//! long as `SOAK_SECONDS` says (e.g. `SOAK_SECONDS=600 scripts/soak`).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::*;
use crate::processes::Setup;
use crate::receiver::{Answer, Received, Receiver};

/// How long the chaos lasts.
fn soak_length() -> Duration {
    let seconds = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6);
    Duration::from_secs(seconds)
}

/// What one client posted and had acknowledged: `(event id, key, sequence in key)`.
type Acknowledged = Arc<Mutex<Vec<(String, String, u64)>>>;

/// Posts webhooks for `key` one after another (so their order is the key's order),
/// until `stop`; a refused or failed request is posted again with the same
/// idempotency key, as a sender would.
async fn post_key(address: SocketAddr, key: String, stop: Arc<AtomicBool>, acked: Acknowledged) {
    let client = client();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        // Every tenth is a refund: the ordered destination's route takes only orders.
        let kind = if n % 10 == 9 {
            "refund.created"
        } else {
            "order.paid"
        };
        let body = json!({"type": kind, "key": key, "n": n});
        let response = client
            .post(format!("http://{address}/webhooks/shop"))
            .header("content-type", "application/json")
            .header("idempotency-key", format!("{key}-{n}"))
            .body(body.to_string())
            .send()
            .await;
        let Ok(response) = response else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        match response.status().as_u16() {
            200 | 202 => {
                let receipt: Value = response.json().await.unwrap_or_default();
                if let Some(id) = receipt["event_id"].as_str() {
                    acked.lock().unwrap().push((id.to_owned(), key.clone(), n));
                }
                n += 1;
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

fn field(received: &Received, name: &str) -> Value {
    serde_json::from_slice::<Value>(&received.body).unwrap_or_default()[name].clone()
}

fn event_id(received: &Received) -> String {
    received.headers["x-hookrelay-event-id"]
        .to_str()
        .unwrap()
        .to_owned()
}

/// What the receivers' records say against what was acknowledged.
#[derive(Debug, Default)]
struct Report {
    acknowledged: usize,
    missing: Vec<String>,
    wrong_destination: Vec<String>,
    out_of_order: Vec<String>,
    duplicates: usize,
    dead_lettered: i64,
}

async fn soak_survives_kills_and_a_flapping_destination(backend: Backend) {
    let setup = Setup::new(backend).await;
    // `all` flaps: down for a while, up for a while, all along the soak.
    let flapping = Arc::new(AtomicBool::new(false));
    let down = flapping.clone();
    let all = Receiver::answering(Vec::new(), move || {
        Answer::status(if down.load(Ordering::Relaxed) {
            503
        } else {
            200
        })
    })
    .await;
    let ordered = Receiver::start(Vec::new()).await;
    let config = setup.path().join("hookrelay.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[destinations.all]
url = "{all}"
breaker_probe = "200ms"
breaker_probe_max = "500ms"

[destinations.ordered]
url = "{ordered}"
ordering = "key"
ordering_key = "json:/key"

[sources.shop]
[[sources.shop.routes]]
destination = "all"
[[sources.shop.routes]]
destination = "ordered"
event_types = ["order.*"]
"#,
            all = all.url(),
            ordered = ordered.url(),
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    let env = [
        ("HOOKRELAY_LEASE", "2s"),
        // A constant pause between tries: a long soak's many failures would otherwise
        // schedule retries far beyond its drain.
        ("HOOKRELAY_RETRY_BASE_DELAY", "100ms"),
        ("HOOKRELAY_RETRY_FACTOR", "1"),
        ("HOOKRELAY_MAX_ATTEMPTS", "1000"),
    ];
    let args = ["--config", config.as_str()];
    let (mut api, address) = setup.start("api", &env, &args, "api.log");
    let address = address.unwrap();
    wait_healthy(&client(), address).await;
    let mut workers = [
        setup.start("worker", &env, &args, "worker-0.log").0,
        setup.start("worker", &env, &args, "worker-1.log").0,
    ];

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Acknowledged::default();
    let clients: Vec<_> = (0..6)
        .map(|k| {
            tokio::spawn(post_key(
                address,
                format!("k{k}"),
                stop.clone(),
                acked.clone(),
            ))
        })
        .collect();

    // The chaos: every few hundred milliseconds one of the processes is killed with
    // SIGKILL and started again, and the destination `all` goes down or comes back.
    let ends = Instant::now() + soak_length();
    let mut round = 0usize;
    while Instant::now() < ends {
        tokio::time::sleep(Duration::from_millis(fastrand::u64(300..900))).await;
        round += 1;
        flapping.store(fastrand::bool(), Ordering::Relaxed);
        match fastrand::usize(0..3) {
            0 => {
                api.kill();
                api = Process::start(
                    &[
                        "api",
                        "--database",
                        &setup.database.url,
                        "--listen",
                        &address.to_string(),
                        "--config",
                        &config,
                    ],
                    setup.path(),
                    &env,
                    &format!("api-{round}.log"),
                );
                wait_healthy(&client(), address).await;
            }
            which => {
                let worker = &mut workers[which - 1];
                worker.kill();
                *worker = setup
                    .start("worker", &env, &args, &format!("worker-{round}.log"))
                    .0;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    flapping.store(false, Ordering::Relaxed);

    // Everything drains, then the records are read.
    let acked = acked.lock().unwrap().clone();
    let orders: usize = acked.iter().filter(|(_, _, n)| n % 10 != 9).count();
    // Until every delivery is made, or nothing more arrives for 30 s (the ordered
    // destination drains one key at a time, so a long soak's backlog takes a while):
    // the report then says what is missing.
    let mut progress = (0, 0);
    let mut last_progress = Instant::now();
    while last_progress.elapsed() < Duration::from_secs(30) {
        let to_all: HashSet<String> = all
            .received()
            .iter()
            .filter(|r| r.status < 300)
            .map(event_id)
            .collect();
        let to_ordered: HashSet<String> = ordered.received().iter().map(event_id).collect();
        if to_all.len() >= acked.len() && to_ordered.len() >= orders {
            break;
        }
        if (to_all.len(), to_ordered.len()) != progress {
            progress = (to_all.len(), to_ordered.len());
            last_progress = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let report = report(&setup, &acked, &all.received(), &ordered.received()).await;
    println!("soak ({backend:?}, {round} kills): {report:?}");
    assert!(report.acknowledged > 0);
    if let Some(first) = report.missing.first() {
        // What the first one missing looks like now, and its key's head.
        let id = first.rsplit(' ').next().unwrap_or_default();
        let event = get_json(&client(), address, &format!("/events/{id}")).await;
        let attempts = get_json(&client(), address, &format!("/events/{id}/attempts")).await;
        let stuck = setup
            .count("SELECT COUNT(*) FROM deliveries WHERE status = 'processing'")
            .await;
        panic!(
            "{} missing, the first {first}: {event}\nattempts: {attempts}\n\
             processing now: {stuck}\n{report:?}",
            report.missing.len()
        );
    }
    assert!(report.wrong_destination.is_empty(), "{report:?}");
    assert!(report.out_of_order.is_empty(), "{report:?}");
    assert_eq!(report.dead_lettered, 0, "{report:?}");
}

async fn report(
    setup: &Setup,
    acked: &[(String, String, u64)],
    to_all: &[Received],
    to_ordered: &[Received],
) -> Report {
    let delivered_all: HashSet<String> = to_all
        .iter()
        .filter(|r| r.status < 300)
        .map(event_id)
        .collect();
    let ordered_ids: Vec<String> = to_ordered.iter().map(event_id).collect();
    let mut report = Report {
        acknowledged: acked.len(),
        ..Report::default()
    };
    for (id, key, n) in acked {
        let is_order = n % 10 != 9;
        if !delivered_all.contains(id) || (is_order && !ordered_ids.contains(id)) {
            report.missing.push(format!("{key}-{n} {id}"));
        }
        if !is_order && ordered_ids.contains(id) {
            report.wrong_destination.push(format!("{key}-{n} {id}"));
        }
    }
    // Per key, the ordered destination's first arrivals are in the order posted.
    let mut last: HashMap<String, i64> = HashMap::new();
    let mut seen: HashSet<String> = HashSet::new();
    for received in to_ordered {
        let id = event_id(received);
        if !seen.insert(id.clone()) {
            report.duplicates += 1;
            continue;
        }
        let key = field(received, "key")
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let n = field(received, "n").as_i64().unwrap_or_default();
        let previous = last.insert(key.clone(), n).unwrap_or(-1);
        if n < previous {
            report
                .out_of_order
                .push(format!("{key}: {n} after {previous}"));
        }
    }
    let mut delivered_once: HashSet<String> = HashSet::new();
    report.duplicates += to_all
        .iter()
        .filter(|r| r.status < 300)
        .filter(|r| !delivered_once.insert(event_id(r)))
        .count();
    report.dead_lettered = setup
        .count("SELECT COUNT(*) FROM deliveries WHERE status = 'dead_lettered'")
        .await;
    report
}

crate::on_both_backends!(soak_survives_kills_and_a_flapping_destination);
