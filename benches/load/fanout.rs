//! Fan-out figures (`BENCH_ONLY=fanout`): ingest with one route against three matching
//! routes, on SQLite and PostgreSQL; draining deliveries spread over three destinations
//! against one; and `serve` accepting and delivering at its peak against `api` alone,
//! with the longest single request of each run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::client::max_throughput;
use crate::protection::{list, mean};
use crate::scale::{Backend, BenchDatabase};
use crate::scenarios::store_events;
use crate::servers::{Server, Sink, start_sink, wait_ready};

/// `[sources.stripe]` with one route, as a release before named destinations wrote it.
pub fn one_route(sink: &str) -> String {
    format!("[sources.stripe]\ndestination = \"{sink}\"\n")
}

/// Three routes that all match the benchmark's Stripe-like body: by event type, by a
/// body filter, and a catch-all; each to its own destination.
fn three_routes(sink: &str) -> String {
    format!(
        r#"
[destinations.billing]
url = "{sink}"
[destinations.analytics]
url = "{sink}"
[destinations.archive]
url = "{sink}"

[sources.stripe]
[[sources.stripe.routes]]
destination = "billing"
event_types = ["payment_intent.*", "invoice.*"]
[[sources.stripe.routes]]
destination = "analytics"
filter = {{ body = {{ data = {{ object = {{ amount = {{ "$gte" = 1000 }}, currency = {{ "$in" = ["eur", "usd"] }} }} }} }} }}
[[sources.stripe.routes]]
destination = "archive"
"#
    )
}

pub fn write_config(dir: &Path, text: &str) -> PathBuf {
    std::fs::create_dir_all(dir).expect("dir");
    let path = dir.join("hookrelay.toml");
    std::fs::write(&path, text).expect("config");
    path
}

pub fn sink_url(sink: &Sink) -> String {
    format!("http://{}/hook", sink.address)
}

pub struct IngestFigure {
    pub rate: f64,
    pub longest: Duration,
    /// CPU per 202, in microseconds: `api`'s whole process, its SQLite writer thread.
    pub cpu: f64,
    pub writer: f64,
}

/// `api` alone at its peak on a fresh database with `config`.
async fn ingest(backend: Backend, dir: &Path, config: &str, duration: Duration) -> IngestFigure {
    let database = BenchDatabase::create(backend, dir).await;
    let config = write_config(dir, config);
    let api = Server::hookrelay_with("api", dir, &database.url, Some(&config));
    wait_ready(api.address).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (cpu, writer) = (api.cpu_seconds(), api.thread_cpu_seconds("sqlite-writer"));
    let measured = max_throughput(api.address, duration, "fanout").await;
    let per_request = |seconds: f64| seconds * 1e6 / measured.requests.max(1) as f64;
    let cpu = per_request(api.cpu_seconds() - cpu);
    let writer = per_request(api.thread_cpu_seconds("sqlite-writer") - writer);
    drop(api);
    database.drop_database().await;
    IngestFigure {
        rate: measured.rate,
        longest: measured.longest,
        cpu,
        writer,
    }
}

/// A fresh database with `config` and `events` stored by `api` alone, and one `worker`
/// started to deliver them (the sink's earlier arrivals cleared).
pub async fn store_then_deliver(
    backend: Backend,
    dir: &Path,
    config: &str,
    events: u64,
    sink: &Sink,
) -> (BenchDatabase, Server) {
    let database = BenchDatabase::create(backend, dir).await;
    let config = write_config(dir, config);
    let api = Server::hookrelay_with("api", dir, &database.url, Some(&config));
    wait_ready(api.address).await;
    store_events(api.address, "stripe", events).await;
    drop(api);
    sink.arrivals.lock().expect("arrivals").clear();
    let worker = Server::hookrelay_with("worker", dir, &database.url, Some(&config));
    (database, worker)
}

/// Stores `events` with `api` alone, then one worker delivers them; deliveries per
/// second from the first arrival to the last.
async fn drain(
    backend: Backend,
    dir: &Path,
    config: &str,
    events: u64,
    deliveries: u64,
    sink: &Sink,
) -> f64 {
    let (database, worker) = store_then_deliver(backend, dir, config, events, sink).await;
    let deadline = Instant::now() + Duration::from_secs(600);
    while (sink.arrivals.lock().expect("arrivals").len() as u64) < deliveries {
        assert!(Instant::now() < deadline, "deliveries did not finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(worker);
    database.drop_database().await;
    let arrivals = sink.arrivals.lock().expect("arrivals");
    let first = arrivals.first().map(|a| a.1).expect("arrivals");
    let last = arrivals.last().map(|a| a.1).expect("arrivals");
    deliveries as f64 / (last - first).as_secs_f64()
}

pub struct PeakFigure {
    pub api: f64,
    pub serve_accepted: f64,
    pub serve_delivered: f64,
    pub api_longest: Duration,
    pub serve_longest: Duration,
}

/// `api` alone, then `serve` (one route to the sink) at its peak: what it accepts and
/// what reaches the sink in the same window.
async fn peak(backend: Backend, root: &Path, sink: &Sink, duration: Duration) -> PeakFigure {
    let config = one_route(&sink_url(sink));
    let api = ingest(backend, &root.join("peak-api"), &config, duration).await;

    let dir = root.join("peak-serve");
    let database = BenchDatabase::create(backend, &dir).await;
    let config = write_config(&dir, &config);
    let serve = Server::hookrelay_with("serve", &dir, &database.url, Some(&config));
    wait_ready(serve.address).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    sink.arrivals.lock().expect("arrivals").clear();
    // The window `max_throughput` measures: after its 500 ms warm-up.
    let counted = {
        let sink = sink.arrivals.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let before = sink.lock().expect("arrivals").len();
            tokio::time::sleep(duration).await;
            sink.lock().expect("arrivals").len() - before
        })
    };
    let measured = max_throughput(serve.address, duration, "peak").await;
    let delivered = counted.await.expect("counter") as f64 / duration.as_secs_f64();
    drop(serve);
    database.drop_database().await;
    PeakFigure {
        api: api.rate,
        serve_accepted: measured.rate,
        serve_delivered: delivered,
        api_longest: api.longest,
        serve_longest: measured.longest,
    }
}

/// Whether the build under test has `[destinations]` and routes (an earlier build,
/// given with `BENCH_HOOKRELAY_BIN`, may not): it then has the `routes` command.
fn knows_destinations() -> bool {
    std::process::Command::new(crate::servers::hookrelay_binary())
        .args(["routes", "--help"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

pub async fn print(root: &Path, duration: Duration, events: u64) {
    let sink = start_sink().await;
    let url = sink_url(&sink);
    let one_route_only = !knows_destinations();
    println!();
    let runs = crate::protection::runs();
    println!(
        "| backend | ingest, 1 route (202/s, per run) | ingest, 3 routes (202/s, per run) | ratio of means | `api` CPU per 202, 1 / 3 routes (µs; SQLite writer) | longest request, 1 / 3 routes (ms, worst run) |"
    );
    println!("|---|---|---|---|---|---|");
    for backend in crate::protection::backends() {
        // Runs alternate (one route, three routes, one, ...): the host's drift falls on
        // both alike.
        let (mut one, mut three): (Vec<IngestFigure>, Vec<IngestFigure>) = (Vec::new(), Vec::new());
        for run in 0..runs {
            one.push(
                ingest(
                    backend,
                    &root.join(format!("one-{}-{run}", backend.name())),
                    &one_route(&url),
                    duration,
                )
                .await,
            );
            if one_route_only {
                continue;
            }
            three.push(
                ingest(
                    backend,
                    &root.join(format!("three-{}-{run}", backend.name())),
                    &three_routes(&url),
                    duration,
                )
                .await,
            );
        }
        let rates = |figures: &[IngestFigure]| figures.iter().map(|f| f.rate).collect::<Vec<_>>();
        let mean_of = |figures: &[IngestFigure], of: fn(&IngestFigure) -> f64| {
            mean(&figures.iter().map(of).collect::<Vec<_>>())
        };
        let cpu = |figures: &[IngestFigure]| match backend {
            Backend::Sqlite => format!(
                "{:.1} ({:.1})",
                mean_of(figures, |f| f.cpu),
                mean_of(figures, |f| f.writer)
            ),
            Backend::Postgres => format!("{:.1}", mean_of(figures, |f| f.cpu)),
        };
        let longest = |figures: &[IngestFigure]| {
            let worst = figures.iter().map(|f| f.longest).max().unwrap_or_default();
            format!("{:.1}", worst.as_secs_f64() * 1e3)
        };
        if one_route_only {
            // An earlier build knows no `[destinations]`: its one-route figures only.
            println!(
                "| {} | {} | — | — | {} / — | {} / — |",
                backend.name(),
                list(&rates(&one)),
                cpu(&one),
                longest(&one)
            );
            continue;
        }
        println!(
            "| {} | {} | {} | {:.2} | {} / {} | {} / {} |",
            backend.name(),
            list(&rates(&one)),
            list(&rates(&three)),
            mean(&rates(&three)) / mean(&rates(&one)),
            cpu(&one),
            cpu(&three),
            longest(&one),
            longest(&three)
        );
    }

    println!();
    println!(
        "| backend | `serve` accepts (202/s) | `serve` delivers (/s) | delivered / accepted | `api` alone (202/s) | serve / api | longest request, api / serve (ms) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for backend in crate::protection::backends() {
        let figure = peak(
            backend,
            &root.join(format!("peak-{}", backend.name())),
            &sink,
            duration,
        )
        .await;
        println!(
            "| {} | {:.0} | {:.0} | {:.2} | {:.0} | {:.2} | {:.1} / {:.1} |",
            backend.name(),
            figure.serve_accepted,
            figure.serve_delivered,
            figure.serve_delivered / figure.serve_accepted,
            figure.api,
            figure.serve_accepted / figure.api,
            figure.api_longest.as_secs_f64() * 1e3,
            figure.serve_longest.as_secs_f64() * 1e3,
        );
    }

    println!();
    println!("| SQLite, one worker | deliveries | deliveries/s |");
    println!("|---|---|---|");
    let single = drain(
        Backend::Sqlite,
        &root.join("drain-one"),
        &one_route(&url),
        events,
        events,
        &sink,
    )
    .await;
    println!("| {events} events to one destination | {events} | {single:.0} |");
    if !one_route_only {
        let spread = events.div_ceil(3);
        let three = drain(
            Backend::Sqlite,
            &root.join("drain-three"),
            &three_routes(&url),
            spread,
            spread * 3,
            &sink,
        )
        .await;
        println!(
            "| {spread} events to three destinations | {} | {three:.0} |",
            spread * 3
        );
    }
}

/// Writes the page cache back and lets the disk settle, so that the measured window
/// does not sync behind earlier runs' (or the build's) writeback.
async fn quiet_disk() {
    let _ = std::process::Command::new("sync").status();
    tokio::time::sleep(Duration::from_millis(1000)).await;
}

/// Another program's disk traffic on the same filesystem while it runs: 256 MiB
/// written and synced, then deleted, every half second.
struct BusyDisk {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BusyDisk {
    fn start(dir: &Path) -> Self {
        use std::io::Write;
        let stop = Arc::new(AtomicBool::new(false));
        let path = dir.join("busy-disk");
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let chunk = vec![7u8; 1 << 20];
            while !flag.load(Ordering::Relaxed) {
                let mut file = std::fs::File::create(&path).expect("busy file");
                for _ in 0..256 {
                    file.write_all(&chunk).expect("busy write");
                }
                file.sync_all().expect("busy sync");
                drop(file);
                std::fs::remove_file(&path).expect("busy delete");
                std::thread::sleep(Duration::from_millis(500));
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for BusyDisk {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The longest single request per run of `api` and `serve` (one route to the sink) at
/// 1 and 32 connections on SQLite, each run on a settled disk: a stall of the writer
/// shows here. Then `api` at 32 connections beside another program's disk traffic:
/// a commit's sync waits behind it.
pub async fn print_stalls(root: &Path, duration: Duration, runs: usize) {
    let sink = start_sink().await;
    let config = one_route(&sink_url(&sink));
    println!();
    println!(
        "| process | connections | disk | requests/s per run | longest request per run (ms) |"
    );
    println!("|---|---|---|---|---|");
    let cases = [
        ("api", 1, false),
        ("api", 32, false),
        ("serve", 1, false),
        ("serve", 32, false),
        ("api", 32, true),
    ];
    for (command, connections, busy) in cases {
        let mut rates = Vec::new();
        let mut longest = Vec::new();
        for run in 0..runs {
            let dir = root.join(format!("stall-{command}-{connections}-{busy}-{run}"));
            let database = BenchDatabase::create(Backend::Sqlite, &dir).await;
            let config = write_config(&dir, &config);
            let server = Server::hookrelay_with(command, &dir, &database.url, Some(&config));
            wait_ready(server.address).await;
            quiet_disk().await;
            let traffic = busy.then(|| BusyDisk::start(&dir));
            let measured =
                crate::client::max_throughput_with(server.address, duration, "stall", connections)
                    .await;
            drop(traffic);
            rates.push(format!("{:.0}", measured.rate));
            longest.push(format!("{:.1}", measured.longest.as_secs_f64() * 1e3));
        }
        let disk = if busy {
            "another program writing"
        } else {
            "settled"
        };
        println!(
            "| `{command}` | {connections} | {disk} | {} | {} |",
            rates.join(", "),
            longest.join(", ")
        );
    }
}
