//! The machine's CPU budget for `serve` (`BENCH_ONLY=budget`): what one accepted webhook
//! and one delivery cost in CPU across the whole host (hookrelay, the load generator,
//! the receiver and, on PostgreSQL, the database server), measured one at a time, and
//! what that leaves for `serve` doing both. Also the cost of a bare HTTP exchange (the
//! load generator against a server that answers at once), the least a delivery can
//! cost, since a delivery is one such exchange plus its writes.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::client::max_throughput;
use crate::fanout::{one_route, sink_url, store_then_deliver, write_config};
use crate::scale::{Backend, BenchDatabase};
use crate::servers::{Server, Sink, start_sink, wait_ready};

/// Busy and total jiffies of the whole host, from the first line of `/proc/stat`.
#[derive(Clone, Copy)]
struct HostCpu {
    busy: u64,
    total: u64,
}

impl HostCpu {
    fn now() -> Self {
        let stat = std::fs::read_to_string("/proc/stat").expect("/proc/stat");
        let fields: Vec<u64> = stat
            .lines()
            .next()
            .expect("cpu line")
            .split_whitespace()
            .skip(1)
            .filter_map(|f| f.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal
        let idle = fields[3] + fields[4];
        let total: u64 = fields.iter().take(8).sum();
        Self {
            busy: total - idle,
            total,
        }
    }

    /// Cores kept busy since `self`.
    fn cores_since(self) -> f64 {
        let now = Self::now();
        let busy = (now.busy - self.busy) as f64;
        let total = (now.total - self.total).max(1) as f64;
        busy / total * cores()
    }
}

fn cores() -> f64 {
    std::thread::available_parallelism().map_or(1, |n| n.get()) as f64
}

/// A rate and the host's cores busy meanwhile; `cost` is CPU per unit (µs).
struct Measured {
    rate: f64,
    cores: f64,
    /// The SQLite writer thread's CPU per unit (µs), where there is one.
    writer: Option<f64>,
}

impl Measured {
    fn cost(&self) -> f64 {
        self.cores / self.rate * 1e6
    }
}

/// A server at its peak, and the host's cores busy meanwhile.
async fn at_peak(address: SocketAddr, duration: Duration, prefix: &'static str) -> Measured {
    let cpu = HostCpu::now();
    let measured = max_throughput(address, duration, prefix).await;
    Measured {
        rate: measured.rate,
        cores: cpu.cores_since(),
        writer: None,
    }
}

async fn bare_exchange(duration: Duration) -> Measured {
    let baseline = Server::baseline();
    wait_ready(baseline.address).await;
    at_peak(baseline.address, duration, "budget-bare").await
}

async fn api_alone(backend: Backend, dir: &Path, sink: &Sink, duration: Duration) -> Measured {
    let database = BenchDatabase::create(backend, dir).await;
    let config = write_config(dir, &one_route(&sink_url(sink)));
    let api = Server::hookrelay_with("api", dir, &database.url, Some(&config));
    wait_ready(api.address).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let measured = at_peak(api.address, duration, "budget-api").await;
    drop(api);
    database.drop_database().await;
    measured
}

/// One worker draining `events` stored beforehand.
async fn delivery(backend: Backend, dir: &Path, sink: &Sink, events: u64) -> Measured {
    let config = one_route(&sink_url(sink));
    let (database, worker) = store_then_deliver(backend, dir, &config, events, sink).await;
    // Measured from the first arrival, so that start-up is not counted.
    let deadline = Instant::now() + Duration::from_secs(600);
    while sink.arrivals.lock().expect("arrivals").is_empty() {
        assert!(Instant::now() < deadline, "no delivery arrived");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let (cpu, start, before) = (
        HostCpu::now(),
        Instant::now(),
        sink.arrivals.lock().expect("arrivals").len(),
    );
    let writer_before = worker.thread_cpu_seconds("sqlite-writer");
    while (sink.arrivals.lock().expect("arrivals").len() as u64) < events {
        assert!(Instant::now() < deadline, "deliveries did not finish");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let cores = cpu.cores_since();
    let delivered = (events as usize - before) as f64;
    let rate = delivered / start.elapsed().as_secs_f64();
    let writer = worker.thread_cpu_seconds("sqlite-writer") - writer_before;
    drop(worker);
    database.drop_database().await;
    Measured {
        rate,
        cores,
        writer: (writer > 0.0).then(|| writer / delivered * 1e6),
    }
}

pub async fn print(root: &Path, duration: Duration, events: u64) {
    let sink = start_sink().await;
    let host = cores();
    let bare = bare_exchange(duration).await;
    println!();
    println!(
        "bare HTTP exchange (load generator against a server answering at once): {:.0}/s on {:.2} cores = {:.1} µs of host CPU each",
        bare.rate,
        bare.cores,
        bare.cost()
    );
    println!();
    println!(
        "| backend | `api`: 202/s, cores, µs per webhook | worker: deliveries/s, cores, µs per delivery | SQLite writer thread, µs per delivery | `serve` doing both, at most (/s) | of `api` | µs per delivery that 0.85 of `api` allows |"
    );
    println!("|---|---|---|---|---|---|---|");
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let name = backend.name();
        let api = api_alone(
            backend,
            &root.join(format!("budget-api-{name}")),
            &sink,
            duration,
        )
        .await;
        let worker = delivery(
            backend,
            &root.join(format!("budget-worker-{name}")),
            &sink,
            events,
        )
        .await;
        // Accepting and delivering every webhook: each costs both, on `host` cores.
        let both = host / (api.cost() + worker.cost()) * 1e6;
        // What a delivery may cost for `serve` to keep 0.85 of `api` and deliver it all.
        let allowed = host / (0.85 * api.rate) * 1e6 - api.cost();
        println!(
            "| {name} | {:.0}, {:.2}, {:.1} | {:.0}, {:.2}, {:.1} | {} | {:.0} | {:.2} | {:.1} |",
            api.rate,
            api.cores,
            api.cost(),
            worker.rate,
            worker.cores,
            worker.cost(),
            worker.writer.map_or("—".to_owned(), |w| format!("{w:.1}")),
            both,
            both / api.rate,
            allowed
        );
    }
}
