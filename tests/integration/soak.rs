//! The soak: webhooks posted all along while `api`, `serve` and `worker` processes are
//! killed with SIGKILL and started again, the database goes away for a moment
//! (PostgreSQL restarted, SQLite's disk full) and a destination flaps; then everything drains and the
//! receivers' records are checked against what was acknowledged: nothing missing,
//! nothing at a destination its routes did not choose, per-key order kept at the
//! ordered destination, duplicates counted, nothing dead-lettered.
//!
//! The suite runs it for a few seconds on each backend; `scripts/soak` runs it for as
//! long as `SOAK_SECONDS` says (e.g. `SOAK_SECONDS=600 scripts/soak`).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::helpers::*;
use crate::support::postgres_server::PrivateCluster;
use crate::support::receiver::{Answer, Received, Receiver};
use crate::support::setup::Setup;
use crate::support::small_disk::SmallDisk;

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
async fn post_key(
    address: SocketAddr,
    key: String,
    stop: Arc<AtomicBool>,
    acked: Acknowledged,
    refused: Arc<AtomicUsize>,
) {
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
            refused.fetch_add(1, Ordering::Relaxed);
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
            _ => {
                refused.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await
            }
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

/// The database's own chaos: PostgreSQL on a server of the soak's own, stopped and
/// started again; SQLite on a small disk of its own, filled up for a while.
enum Database {
    Sqlite(SmallDisk),
    Postgres(Arc<PrivateCluster>),
}

impl Database {
    async fn create(backend: Backend) -> Self {
        match backend {
            // Room for a long soak's events; the chaos fills what is left.
            Backend::Sqlite => Self::Sqlite(SmallDisk::mount("1g")),
            Backend::Postgres => Self::Postgres(Arc::new(
                tokio::task::spawn_blocking(PrivateCluster::create)
                    .await
                    .unwrap(),
            )),
        }
    }

    fn test_database(&self) -> TestDatabase {
        match self {
            Self::Sqlite(disk) => TestDatabase::at(
                Backend::Sqlite,
                format!("sqlite://{}", disk.path.join("hookrelay.db").display()),
            ),
            Self::Postgres(server) => TestDatabase::at(Backend::Postgres, server.url()),
        }
    }

    /// Takes the database away for a moment: the server is down, or the disk is full.
    async fn outage(&self) -> &'static str {
        let length = Duration::from_millis(fastrand::u64(300..1500));
        match self {
            Self::Sqlite(disk) => {
                let filler = disk.path.join("filler");
                fill(&filler);
                tokio::time::sleep(length).await;
                std::fs::remove_file(&filler).unwrap();
                "disk full"
            }
            Self::Postgres(server) => {
                let stopped = server.clone();
                tokio::task::spawn_blocking(move || stopped.stop())
                    .await
                    .unwrap();
                tokio::time::sleep(length).await;
                let started = server.clone();
                tokio::task::spawn_blocking(move || started.start())
                    .await
                    .unwrap();
                "database restart"
            }
        }
    }
}

/// Writes `path` until the disk has no room left.
fn fill(path: &std::path::Path) {
    use std::io::Write;
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 1024 * 1024];
    while file.write_all(&chunk).is_ok() {}
}

/// A process of the soak's that listens: started again on the same address.
struct Listening {
    command: &'static str,
    address: SocketAddr,
    process: Process,
}

async fn soak_survives_kills_and_a_flapping_destination(backend: Backend) {
    let database = Database::create(backend).await;
    let setup = Setup::on(database.test_database());
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
    // An `api` and a `serve` take webhooks; `serve` and two `worker`s deliver them.
    let mut listening = Vec::new();
    for command in ["api", "serve"] {
        let (process, address) = setup.start(command, &env, &args, &format!("{command}.log"));
        let address = address.unwrap();
        wait_healthy(&client(), address).await;
        listening.push(Listening {
            command,
            address,
            process,
        });
    }
    let mut workers = [
        setup.start("worker", &env, &args, "worker-0.log").0,
        setup.start("worker", &env, &args, "worker-1.log").0,
    ];

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Acknowledged::default();
    // Requests refused or cut off (a process killed, the database away): posted again.
    let refused = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..6)
        .map(|k| {
            tokio::spawn(post_key(
                listening[k % 2].address,
                format!("k{k}"),
                stop.clone(),
                acked.clone(),
                refused.clone(),
            ))
        })
        .collect();

    // The chaos: every few hundred milliseconds one of the processes is killed with
    // SIGKILL and started again, or the database goes away for a moment; and the
    // destination `all` goes down or comes back.
    let ends = Instant::now() + soak_length();
    let mut round = 0usize;
    let mut chaos: HashMap<&str, usize> = HashMap::new();
    while Instant::now() < ends {
        tokio::time::sleep(Duration::from_millis(fastrand::u64(300..900))).await;
        round += 1;
        flapping.store(fastrand::bool(), Ordering::Relaxed);
        let what = match fastrand::usize(0..5) {
            0 | 1 => {
                let process = &mut listening[fastrand::usize(0..2)];
                process.process.kill();
                let listen = process.address.to_string();
                process.process = Process::start(
                    &[
                        process.command,
                        "--database",
                        &setup.database.url,
                        "--listen",
                        &listen,
                        "--config",
                        &config,
                    ],
                    setup.path(),
                    &env,
                    &format!("{}-{round}.log", process.command),
                );
                wait_healthy(&client(), process.address).await;
                process.command
            }
            2 | 3 => {
                let worker = &mut workers[fastrand::usize(0..2)];
                worker.kill();
                *worker = setup
                    .start("worker", &env, &args, &format!("worker-{round}.log"))
                    .0;
                "worker"
            }
            _ => database.outage().await,
        };
        *chaos.entry(what).or_default() += 1;
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
    println!(
        "soak ({backend:?}, {round} rounds of chaos: {chaos:?}, {} requests refused \
         or cut off and posted again): {report:?}",
        refused.load(Ordering::Relaxed)
    );
    assert!(report.acknowledged > 0);
    if let Some(first) = report.missing.first() {
        // What the first one missing looks like now, and its key's head.
        let id = first.rsplit(' ').next().unwrap_or_default();
        let address = listening[0].address;
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
