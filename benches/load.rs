//! Load benchmark: durable ingest against the bare-HTTP ceiling, latency at fixed
//! arrival rates, wake-up latency and memory. Run with `cargo bench --bench load`.
//!
//! Every figure is measured in the same run with the same load generator, and the
//! headline is a ratio to the ceiling, because the machine is shared and noisy.
//! The ceiling is an axum server (this program re-executed) that parses the same JSON
//! and answers 202 without storing anything.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

const CONNECTIONS: usize = 64;
const ROLE_VAR: &str = "HOOKRELAY_BENCH_ROLE";

fn main() {
    if std::env::var(ROLE_VAR).as_deref() == Ok("baseline") {
        return baseline_server();
    }
    let seconds: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(run(Duration::from_secs(seconds)));
}

/// A Stripe-like event of about 850 bytes.
fn body(n: u64) -> Bytes {
    let text = format!(
        r#"{{"id":"evt_bench_{n:012}","object":"event","api_version":"2024-06-20","created":1732972800,"type":"payment_intent.succeeded","livemode":false,"pending_webhooks":1,"request":{{"id":"req_8b1c2d3e4f5a6b","idempotency_key":"6f1d4b2a-9c8e-4f3a-b2d1-0e9f8a7b6c5d"}},"data":{{"object":{{"id":"pi_3Q0bench{n:012}","object":"payment_intent","amount":4999,"amount_capturable":0,"amount_received":4999,"currency":"eur","customer":"cus_Qbench000001","description":"Order #A-100234 (2 items)","latest_charge":"ch_3Q0bench000001","metadata":{{"order_id":"A-100234","cart":"c_77812","channel":"web"}},"payment_method":"pm_1Q0bench000001","payment_method_types":["card"],"receipt_email":"customer@example.com","status":"succeeded","shipping":{{"name":"Jane Doe","address":{{"line1":"Hauptstrasse 1","city":"Berlin","postal_code":"10115","country":"DE"}}}}}}}}}}"#
    );
    Bytes::from(text)
}

struct Server {
    child: Child,
    address: SocketAddr,
}

impl Server {
    fn hookrelay(command: &str, dir: &Path) -> Self {
        Self::hookrelay_with(command, dir, None)
    }

    fn hookrelay_with(command: &str, dir: &Path, config: Option<&Path>) -> Self {
        let address = free_address();
        let database = format!("sqlite://{}", dir.join("bench.db").display());
        let mut args = vec![command.to_owned(), "--database".into(), database];
        if command != "worker" {
            args.extend(["--listen".into(), address.to_string()]);
        }
        if let Some(config) = config {
            args.extend(["--config".into(), config.display().to_string()]);
        }
        let child = Command::new(env!("CARGO_BIN_EXE_hookrelay"))
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("hookrelay starts");
        Self { child, address }
    }

    fn baseline() -> Self {
        let address = free_address();
        let child = Command::new(std::env::current_exe().expect("own path"))
            .env(ROLE_VAR, "baseline")
            .env("HOOKRELAY_BENCH_LISTEN", address.to_string())
            .stdout(Stdio::null())
            .spawn()
            .expect("baseline starts");
        Self { child, address }
    }

    fn rss_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_address() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
}

async fn wait_ready(address: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(address).await.is_err() {
        assert!(Instant::now() < deadline, "server did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(address: SocketAddr) -> Sender {
    let stream = TcpStream::connect(address).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    sender
}

/// Sends one webhook; returns the status and the response body.
async fn post(sender: &mut Sender, address: SocketAddr, key: &str, n: u64) -> (u16, Bytes) {
    post_to(sender, address, "stripe", key, n).await
}

async fn post_to(
    sender: &mut Sender,
    address: SocketAddr,
    source: &str,
    key: &str,
    n: u64,
) -> (u16, Bytes) {
    let request = Request::post(format!("http://{address}/webhooks/{source}"))
        .header("host", address.to_string())
        .header("content-type", "application/json")
        .header("idempotency-key", key)
        .body(Full::new(body(n)))
        .expect("request");
    sender.ready().await.expect("connection ready");
    let response = sender.send_request(request).await.expect("response");
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, body)
}

static KEYS: AtomicU64 = AtomicU64::new(0);

fn next_key(prefix: &str) -> (String, u64) {
    let n = KEYS.fetch_add(1, Ordering::Relaxed);
    (format!("{prefix}-{n}"), n)
}

/// Closed loop: every connection sends as fast as answers come back.
async fn max_throughput(address: SocketAddr, duration: Duration, prefix: &'static str) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let warmup = Duration::from_millis(500);
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let stop = stop.clone();
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(address).await;
            while !stop.load(Ordering::Relaxed) {
                let (key, n) = next_key(prefix);
                let (status, _) = post(&mut sender, address, &key, n).await;
                assert_eq!(status, 202, "unexpected status");
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(warmup).await;
    let start_count = done.load(Ordering::Relaxed);
    let start = Instant::now();
    tokio::time::sleep(duration).await;
    let count = done.load(Ordering::Relaxed) - start_count;
    let elapsed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("load task");
    }
    count as f64 / elapsed.as_secs_f64()
}

/// Open loop at a fixed arrival rate: latency counts from each request's scheduled
/// start, so queueing behind a slow answer is not hidden.
async fn latency_at(
    address: SocketAddr,
    rate: f64,
    duration: Duration,
    prefix: &'static str,
) -> Histogram<u64> {
    let interval = Duration::from_secs_f64(CONNECTIONS as f64 / rate);
    let per_connection = (duration.as_secs_f64() / interval.as_secs_f64()) as u64;
    let start = tokio::time::Instant::now() + Duration::from_millis(200);
    let mut tasks = Vec::new();
    for connection in 0..CONNECTIONS {
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(address).await;
            let mut histogram = Histogram::<u64>::new(3).expect("histogram");
            let offset = interval.mul_f64(connection as f64 / CONNECTIONS as f64);
            for k in 0..per_connection {
                let scheduled = start + offset + interval * k as u32;
                tokio::time::sleep_until(scheduled).await;
                let (key, n) = next_key(prefix);
                let (status, _) = post(&mut sender, address, &key, n).await;
                assert_eq!(status, 202);
                histogram
                    .record(scheduled.elapsed().as_micros() as u64)
                    .expect("record");
            }
            histogram
        }));
    }
    let mut total = Histogram::<u64>::new(3).expect("histogram");
    for task in tasks {
        total.add(task.await.expect("latency task")).expect("merge");
    }
    total
}

fn micros_since_epoch() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Lone events on an idle `serve`: from the 202 reaching the client to the attempt's
/// start, and from the request's arrival to the attempt's start.
async fn wake_up(
    address: SocketAddr,
    database: &Path,
    samples: usize,
) -> (Histogram<u64>, Histogram<u64>) {
    let mut from_202 = Histogram::<u64>::new(3).expect("histogram");
    let mut from_arrival = Histogram::<u64>::new(3).expect("histogram");
    let mut sender = connect(address).await;
    let conn = rusqlite::Connection::open(database).expect("open database");
    for _ in 0..samples {
        let (key, n) = next_key("wake");
        let (status, receipt) = post(&mut sender, address, &key, n).await;
        let acknowledged = micros_since_epoch();
        assert_eq!(status, 202);
        let receipt: serde_json::Value = serde_json::from_slice(&receipt).expect("receipt");
        let id = receipt["event_id"].as_str().expect("id").to_owned();
        let deadline = Instant::now() + Duration::from_secs(5);
        let (created, started) = loop {
            let row: Option<(i64, i64)> = conn
                .query_row(
                    "SELECT e.created_at, a.started_at FROM events e JOIN attempts a ON a.event_id = e.id
                     WHERE e.id = ?1",
                    [&id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .ok();
            if let Some(row) = row {
                break row;
            }
            assert!(Instant::now() < deadline, "event not processed");
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        from_202
            .record((started - acknowledged).max(0) as u64)
            .expect("record");
        from_arrival
            .record((started - created).max(0) as u64)
            .expect("record");
        // Let the worker go idle again.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (from_202, from_arrival)
}

fn ms(micros: u64) -> String {
    format!("{:.2}", micros as f64 / 1000.0)
}

async fn run(duration: Duration) {
    println!(
        "load: {CONNECTIONS} connections, ~{} byte bodies, unique keys, {duration:?} per figure",
        body(0).len()
    );
    let dir = tempfile::tempdir().expect("temp dir");

    let baseline = Server::baseline();
    wait_ready(baseline.address).await;
    let ceiling = max_throughput(baseline.address, duration, "base").await;
    drop(baseline);

    let api_dir = dir.path().join("api");
    std::fs::create_dir_all(&api_dir).expect("dir");
    let api = Server::hookrelay("api", &api_dir);
    wait_ready(api.address).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle_rss = api.rss_kib("VmRSS:");
    let api_rate = max_throughput(api.address, duration, "api").await;
    let api_peak_rss = api.rss_kib("VmHWM:");
    if std::env::var("BENCH_ONLY").as_deref() == Ok("delivery") {
        let (rate, count) = delivery_throughput(dir.path(), 20_000).await;
        let (e2e, _) = end_to_end(dir.path(), 1000.0, duration).await;
        println!(
            "delivery {rate:.0}/s over {count}; e2e p50 {} p99 {} ms",
            ms(e2e.value_at_quantile(0.5)),
            ms(e2e.value_at_quantile(0.99))
        );
        return;
    }
    if std::env::var("BENCH_ONLY").as_deref() == Ok("ingest") {
        println!(
            "ceiling {ceiling:.0}/s, api {api_rate:.0}/s, ratio {:.2}",
            api_rate / ceiling
        );
        return;
    }
    let low = latency_at(api.address, api_rate * 0.25, duration, "lat25").await;
    let high = latency_at(api.address, api_rate * 0.75, duration, "lat75").await;
    drop(api);

    let serve_dir = dir.path().join("serve");
    std::fs::create_dir_all(&serve_dir).expect("dir");
    let serve = Server::hookrelay("serve", &serve_dir);
    wait_ready(serve.address).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (from_202, from_arrival) = wake_up(serve.address, &serve_dir.join("bench.db"), 200).await;
    let serve_rate = max_throughput(serve.address, duration, "serve").await;
    let serve_peak_rss = serve.rss_kib("VmHWM:");
    drop(serve);

    let (delivery_rate, delivered) = delivery_throughput(dir.path(), 20_000).await;
    let (e2e, e2e_rate) = end_to_end(dir.path(), 1000.0, duration).await;

    println!();
    println!("| measure | value | ratio to ceiling |");
    println!("|---|---|---|");
    println!(
        "| bare-HTTP ceiling (axum, parse JSON, 202, no storage) | {ceiling:.0} req/s | 1.00 |"
    );
    println!(
        "| durable ingest, `hookrelay api` | {api_rate:.0} req/s | {:.2} |",
        api_rate / ceiling
    );
    println!(
        "| durable ingest while delivering, `hookrelay serve` | {serve_rate:.0} req/s | {:.2} |",
        serve_rate / ceiling
    );
    println!();
    println!("| open-loop latency, `api` | rate | p50 ms | p99 ms | p99.9 ms | max ms |");
    println!("|---|---|---|---|---|---|");
    for (label, rate, h) in [
        ("25 % of max", api_rate * 0.25, &low),
        ("75 % of max", api_rate * 0.75, &high),
    ] {
        println!(
            "| {label} | {rate:.0}/s | {} | {} | {} | {} |",
            ms(h.value_at_quantile(0.5)),
            ms(h.value_at_quantile(0.99)),
            ms(h.value_at_quantile(0.999)),
            ms(h.max())
        );
    }
    println!();
    println!(
        "| wake-up, lone events on idle `serve` ({} samples) | p50 ms | p99 ms | max ms |",
        from_202.len()
    );
    println!("|---|---|---|---|");
    for (label, h) in [
        ("202 received → attempt started", &from_202),
        (
            "request arrived → attempt started (includes the fsync)",
            &from_arrival,
        ),
    ] {
        println!(
            "| {label} | {} | {} | {} |",
            ms(h.value_at_quantile(0.5)),
            ms(h.value_at_quantile(0.99)),
            ms(h.max())
        );
    }
    println!();
    println!("| delivery to a local receiver that answers 200 at once | value |");
    println!("|---|---|");
    println!(
        "| `worker` draining {delivered} stored events (first to last arrival) | {delivery_rate:.0} deliveries/s |"
    );
    println!();
    println!(
        "| end to end, 202 received → receiver has the request (`serve`, open loop) | rate | p50 ms | p99 ms | p99.9 ms | max ms |"
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| {} events | {e2e_rate:.0}/s | {} | {} | {} | {} |",
        e2e.len(),
        ms(e2e.value_at_quantile(0.5)),
        ms(e2e.value_at_quantile(0.99)),
        ms(e2e.value_at_quantile(0.999)),
        ms(e2e.max())
    );
    println!();
    println!("| memory | RSS |");
    println!("|---|---|");
    println!("| `api` idle | {:.1} MiB |", idle_rss as f64 / 1024.0);
    println!(
        "| `api` peak under load | {:.1} MiB |",
        api_peak_rss as f64 / 1024.0
    );
    println!(
        "| `serve` peak under load | {:.1} MiB |",
        serve_peak_rss as f64 / 1024.0
    );
}

/// A destination that answers 200 at once and notes when each event arrived.
struct Sink {
    address: SocketAddr,
    arrivals: Arc<std::sync::Mutex<Vec<(String, Instant)>>>,
}

async fn start_sink() -> Sink {
    use axum::Router;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;

    type Arrivals = Arc<std::sync::Mutex<Vec<(String, Instant)>>>;
    async fn receive(State(arrivals): State<Arrivals>, headers: HeaderMap) -> StatusCode {
        let id = headers
            .get("x-hookrelay-event-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        arrivals
            .lock()
            .expect("arrivals")
            .push((id, Instant::now()));
        StatusCode::OK
    }

    let arrivals: Arrivals = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let router = Router::new()
        .route("/hook", post(receive))
        .with_state(arrivals.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    Sink { address, arrivals }
}

fn sink_config(dir: &Path, sink: &Sink) -> std::path::PathBuf {
    let path = dir.join("hookrelay.toml");
    std::fs::write(
        &path,
        format!(
            "[sources.app]\ndestination = \"http://{}/hook\"\n",
            sink.address
        ),
    )
    .expect("config");
    path
}

/// Stores `count` events with `api` alone, then lets one `worker` deliver them all.
async fn delivery_throughput(root: &Path, count: u64) -> (f64, u64) {
    let dir = root.join("delivery");
    std::fs::create_dir_all(&dir).expect("dir");
    let sink = start_sink().await;
    let config = sink_config(&dir, &sink);
    let api = Server::hookrelay_with("api", &dir, Some(&config));
    wait_ready(api.address).await;
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let next = next.clone();
        let address = api.address;
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(address).await;
            while next.fetch_add(1, Ordering::Relaxed) < count {
                let (key, n) = next_key("deliver");
                let (status, _) = post_to(&mut sender, address, "app", &key, n).await;
                assert_eq!(status, 202);
            }
        }));
    }
    for task in tasks {
        task.await.expect("store task");
    }
    drop(api);

    let worker = Server::hookrelay_with("worker", &dir, Some(&config));
    let deadline = Instant::now() + Duration::from_secs(300);
    while (sink.arrivals.lock().expect("arrivals").len() as u64) < count {
        assert!(Instant::now() < deadline, "deliveries did not finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(worker);
    let arrivals = sink.arrivals.lock().expect("arrivals");
    let first = arrivals.first().map(|a| a.1).expect("arrivals");
    let last = arrivals.last().map(|a| a.1).expect("arrivals");
    (count as f64 / (last - first).as_secs_f64(), count)
}

/// Open loop at `rate` against `serve` with a destination: from the 202 reaching the
/// client to the destination receiving the event.
async fn end_to_end(root: &Path, rate: f64, duration: Duration) -> (Histogram<u64>, f64) {
    let dir = root.join("e2e");
    std::fs::create_dir_all(&dir).expect("dir");
    let sink = start_sink().await;
    let config = sink_config(&dir, &sink);
    let serve = Server::hookrelay_with("serve", &dir, Some(&config));
    wait_ready(serve.address).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let connections = 16;
    let interval = Duration::from_secs_f64(connections as f64 / rate);
    let per_connection = (duration.as_secs_f64() / interval.as_secs_f64()) as u64;
    let start = tokio::time::Instant::now() + Duration::from_millis(100);
    let mut tasks = Vec::new();
    for connection in 0..connections {
        let address = serve.address;
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(address).await;
            let mut acknowledged = Vec::new();
            let offset = interval.mul_f64(connection as f64 / connections as f64);
            for k in 0..per_connection {
                tokio::time::sleep_until(start + offset + interval * k as u32).await;
                let (key, n) = next_key("e2e");
                let (status, receipt) = post_to(&mut sender, address, "app", &key, n).await;
                let at = Instant::now();
                assert_eq!(status, 202);
                let receipt: serde_json::Value = serde_json::from_slice(&receipt).expect("receipt");
                acknowledged.push((receipt["event_id"].as_str().expect("id").to_owned(), at));
            }
            acknowledged
        }));
    }
    let mut acknowledged = std::collections::HashMap::new();
    for task in tasks {
        acknowledged.extend(task.await.expect("e2e task"));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while sink.arrivals.lock().expect("arrivals").len() < acknowledged.len() {
        assert!(Instant::now() < deadline, "deliveries did not finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(serve);
    let mut histogram = Histogram::<u64>::new(3).expect("histogram");
    for (id, arrived) in sink.arrivals.lock().expect("arrivals").iter() {
        if let Some(acked) = acknowledged.get(id) {
            let micros = arrived.saturating_duration_since(*acked).as_micros() as u64;
            histogram.record(micros).expect("record");
        }
    }
    (histogram, rate)
}

/// The ceiling: the same HTTP stack and JSON parsing, no storage.
fn baseline_server() {
    use axum::Router;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;

    async fn accept(
        headers: HeaderMap,
        body: Bytes,
    ) -> (StatusCode, axum::Json<serde_json::Value>) {
        if serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_err()
            || !headers.contains_key("idempotency-key")
        {
            return (StatusCode::BAD_REQUEST, axum::Json(serde_json::json!({})));
        }
        let id = format!("evt_{}", uuid::Uuid::new_v4());
        (
            StatusCode::ACCEPTED,
            axum::Json(serde_json::json!({"event_id": id, "status": "accepted"})),
        )
    }

    let address = std::env::var("HOOKRELAY_BENCH_LISTEN").expect("listen address");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&address).await.expect("bind");
        let router = Router::new().route("/webhooks/{source}", post(accept));
        axum::serve(listener, router).await.expect("serve");
    });
}
