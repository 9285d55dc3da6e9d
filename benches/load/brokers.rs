//! Broker destinations (`BENCH_ONLY=brokers`): the drain rate of stored events into
//! Kafka (tansu), NATS JetStream, Redis Streams, RabbitMQ and SQS (moto), each as a
//! ratio to the HTTP drain into a local receiver measured in the same run.
//!
//! `BENCH_BROKER_EVENTS` events per drain (100,000 by default), `BENCH_SQS_EVENTS`
//! for SQS (2,000: its local endpoint, moto, is a Python server that takes a few
//! dozen messages a second, so the figure measures moto, not hookrelay),
//! `BENCH_BROKERS=kafka,nats,...` to pick, `BENCH_BACKEND` as elsewhere. Needs what
//! `scripts/test` installs and starts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::protection::{backends, write_config};
use crate::scale::{Backend, BenchDatabase};
use crate::scenarios::store_events;
use crate::servers::{Server, free_address, start_sink, wait_ready};

const KINDS: &[&str] = &["http", "kafka", "nats", "redis", "amqp", "sqs"];

/// A broker for one drain and the destination table that publishes to it.
struct Target {
    table: String,
    _server: Option<Killed>,
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn python() -> PathBuf {
    std::env::var_os("HOOKRELAY_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-python/bin/python")
        })
}

fn tansu() -> PathBuf {
    std::env::var_os("HOOKRELAY_TEST_TANSU")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default();
            home.join(".cache/hookrelay-tools/tansu-0.6.0/bin/tansu")
        })
}

/// Runs `tests/sdk/brokers.py` with one request.
fn broker_script(request: serde_json::Value) {
    use std::io::Write as _;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/brokers.py");
    let mut child = Command::new(python())
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("python starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(request.to_string().as_bytes())
        .expect("request written");
    assert!(child.wait().expect("python ends").success(), "{request}");
}

async fn wait_port(address: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(address).await.is_err() {
        assert!(Instant::now() < deadline, "{address} did not open");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn target(kind: &str, sink: SocketAddr) -> Target {
    let name = format!("bench{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let (table, server) = match kind {
        "http" => (format!("url = \"http://{sink}/hook\"\n"), None),
        "kafka" => {
            let address = free_address();
            let child = Command::new(tansu())
                .args([
                    "broker",
                    "--storage-engine",
                    "memory://tansu/",
                    "--listener-url",
                    &format!("tcp://{address}"),
                    "--advertised-listener-url",
                    &format!("tcp://{address}"),
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("tansu starts");
            wait_port(address).await;
            let created = Command::new(tansu())
                .args([
                    "topic",
                    "create",
                    &name,
                    "--broker",
                    &format!("tcp://{address}"),
                ])
                .stdout(Stdio::null())
                .status()
                .expect("tansu topic create");
            assert!(created.success());
            (
                format!("url = \"kafka://{address}/{name}\"\n"),
                Some(Killed(child)),
            )
        }
        "nats" => {
            broker_script(serde_json::json!({"kind": "nats", "op": "setup",
                "server": "nats://127.0.0.1:4222", "stream": name,
                "subjects": format!("{name}.>")}));
            (
                format!("url = \"nats://127.0.0.1:4222/{name}.events\"\n"),
                None,
            )
        }
        "redis" => (format!("url = \"redis://127.0.0.1:6379/{name}\"\n"), None),
        "amqp" => {
            broker_script(serde_json::json!({"kind": "amqp", "op": "setup",
                "uri": "amqp://guest:guest@127.0.0.1:5672/%2f", "queue": name}));
            (
                format!(
                    "url = \"amqp://guest:guest@127.0.0.1:5672/%2f\"\nrouting_key = \"{name}\"\n"
                ),
                None,
            )
        }
        "sqs" => {
            let address = free_address();
            let child = Command::new(python())
                .args(["-m", "moto.server", "-H", "127.0.0.1"])
                .args(["-p", &address.port().to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("moto starts");
            wait_port(address).await;
            broker_script(serde_json::json!({"kind": "sqs", "op": "setup",
                "endpoint": format!("http://{address}"), "queue": name}));
            (
                format!(
                    "url = \"sqs+http://{address}/123456789012/{name}\"\n\
                     aws_access_key_id = \"bench\"\naws_secret_access_key = \"bench\"\n"
                ),
                Some(Killed(child)),
            )
        }
        other => panic!("unknown kind {other}"),
    };
    Target {
        table,
        _server: server,
    }
}

/// Deliveries delivered so far.
async fn delivered(backend: Backend, database: &BenchDatabase) -> u64 {
    const SQL: &str = "SELECT count(*) FROM deliveries WHERE status = 'delivered'";
    match backend {
        Backend::Sqlite => {
            let path = database.url.trim_start_matches("sqlite://").to_owned();
            tokio::task::spawn_blocking(move || {
                rusqlite::Connection::open(path)
                    .and_then(|c| c.query_row(SQL, [], |r| r.get::<_, i64>(0)))
                    .unwrap_or(0) as u64
            })
            .await
            .expect("count")
        }
        Backend::Postgres => {
            let client = database.client().await;
            client
                .query_one(SQL, &[])
                .await
                .map(|r| r.get::<_, i64>(0) as u64)
                .unwrap_or(0)
        }
    }
}

/// Waits until `events` deliveries are delivered; deliveries per second from the first
/// delivered to the last, counted in the database.
pub async fn drain_rate(
    backend: Backend,
    database: &BenchDatabase,
    events: u64,
    within: Duration,
    what: &str,
) -> f64 {
    let deadline = Instant::now() + within;
    let mut first = None;
    loop {
        let done = delivered(backend, database).await;
        if done > 0 && first.is_none() {
            first = Some((Instant::now(), done));
        }
        if done >= events {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {done} of {events} delivered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (start, already) = first.expect("some delivered");
    (events - already) as f64 / start.elapsed().as_secs_f64()
}

/// Stores `events` with `api`, then one `worker` publishes them: deliveries per
/// second from the first delivered to the last.
async fn drain(backend: Backend, dir: &Path, kind: &str, events: u64, sink: SocketAddr) -> f64 {
    let target = target(kind, sink).await;
    let database = BenchDatabase::create(backend, dir).await;
    let config = write_config(
        dir,
        &format!(
            "[destinations.bus]\n{}\n[sources.stripe]\n[[sources.stripe.routes]]\n\
             destination = \"bus\"\n",
            target.table
        ),
    );
    let api = Server::hookrelay_with("api", dir, &database.url, Some(&config));
    wait_ready(api.address).await;
    store_events(api.address, "stripe", events).await;
    drop(api);
    let worker = Server::hookrelay_with("worker", dir, &database.url, Some(&config));
    let rate = drain_rate(backend, &database, events, Duration::from_secs(1800), kind).await;
    drop(worker);
    database.drop_database().await;
    rate
}

pub async fn print(root: &Path) {
    let events: u64 = std::env::var("BENCH_BROKER_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let sqs_events: u64 = std::env::var("BENCH_SQS_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let chosen = std::env::var("BENCH_BROKERS").unwrap_or_default();
    let kinds: Vec<&str> = KINDS
        .iter()
        .copied()
        .filter(|k| *k == "http" || chosen.is_empty() || chosen.split(',').any(|c| c == *k))
        .collect();
    let sink = start_sink().await;
    println!();
    println!("| backend | destination | events | deliveries/s | / HTTP drain |");
    println!("|---|---|---|---|---|");
    for backend in backends() {
        let mut http = 0.0;
        for kind in &kinds {
            let count = if *kind == "sqs" { sqs_events } else { events };
            let dir = root.join(format!("brokers-{kind}-{backend:?}"));
            let rate = drain(backend, &dir, kind, count, sink.address).await;
            if *kind == "http" {
                http = rate;
            }
            println!(
                "| {backend:?} | {kind} | {count} | {rate:.0} | {:.2} |",
                rate / http
            );
        }
    }
}
