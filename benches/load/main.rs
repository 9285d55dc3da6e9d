//! Load benchmark: durable ingest against the bare-HTTP ceiling, latency at fixed
//! arrival rates, wake-up latency and memory. Run with `cargo bench --bench load`.
//!
//! Every figure is measured in the same run with the same load generator, and the
//! headline is a ratio to the ceiling, because the machine is shared and noisy.
//! The ceiling is an axum server (this program re-executed) that parses the same JSON
//! and answers 202 without storing anything.

mod alerts;
mod brokers;
mod budget;
mod client;
mod fanout;
mod outage;
mod protection;
mod scale;
mod scenarios;
mod servers;
mod tracing;

use std::time::Duration;

use client::{body, latency_at, max_throughput};
use scenarios::{delivery_throughput, end_to_end, wake_up};
use servers::{Server, baseline_server, wait_ready};

pub const CONNECTIONS: usize = 64;
pub const ROLE_VAR: &str = "HOOKRELAY_BENCH_ROLE";

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

/// CPU used by a server and by this load generator over one measurement.
struct CpuMeter {
    server: f64,
    generator: f64,
}

impl CpuMeter {
    fn start(server: &Server) -> Self {
        Self {
            server: server.cpu_seconds(),
            generator: servers::cpu_seconds("/proc/self/stat"),
        }
    }

    /// Microseconds of CPU per request: (server, load generator).
    fn per_request(&self, server: &Server, requests: u64) -> (f64, f64) {
        let per = |seconds: f64| seconds * 1e6 / requests.max(1) as f64;
        (
            per(server.cpu_seconds() - self.server),
            per(servers::cpu_seconds("/proc/self/stat") - self.generator),
        )
    }
}

/// Events stored and then delivered for the delivery figure (`BENCH_DELIVERY_EVENTS`).
fn delivery_events() -> u64 {
    std::env::var("BENCH_DELIVERY_EVENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000)
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
    if std::env::var("BENCH_ONLY").as_deref() == Ok("stalls") {
        let runs = std::env::var("BENCH_RUNS")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(3);
        fanout::print_stalls(dir.path(), duration, runs).await;
        return;
    }
    if std::env::var("BENCH_ONLY").as_deref() == Ok("alerts") {
        let runs = std::env::var("BENCH_RUNS")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(3);
        alerts::print(dir.path(), duration, runs).await;
        return;
    }
    if std::env::var("BENCH_ONLY").as_deref() == Ok("brokers") {
        brokers::print(dir.path()).await;
        return;
    }
    if std::env::var("BENCH_ONLY").as_deref() == Ok("tracing") {
        tracing::print(dir.path(), duration).await;
        return;
    }
    if std::env::var("BENCH_ONLY").as_deref() == Ok("protection") {
        protection::print(dir.path(), delivery_events()).await;
        return;
    }
    if std::env::var("BENCH_ONLY").as_deref() == Ok("budget") {
        budget::print(dir.path(), duration, delivery_events()).await;
        return;
    }
    if std::env::var("BENCH_ONLY").as_deref() == Ok("outage") {
        outage::print(dir.path(), duration).await;
        return;
    }
    if std::env::var("BENCH_ONLY").as_deref() == Ok("fanout") {
        fanout::print(dir.path(), duration, delivery_events()).await;
        return;
    }

    let baseline = Server::baseline();
    wait_ready(baseline.address).await;
    let cpu = CpuMeter::start(&baseline);
    let measured = max_throughput(baseline.address, duration, "base").await;
    let (ceiling, baseline_cpu) = (measured.rate, cpu.per_request(&baseline, measured.requests));
    drop(baseline);

    let api_dir = dir.path().join("api");
    std::fs::create_dir_all(&api_dir).expect("dir");
    let api = Server::hookrelay("api", &api_dir);
    wait_ready(api.address).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle_rss = api.rss_kib("VmRSS:");
    let cpu = CpuMeter::start(&api);
    let measured = max_throughput(api.address, duration, "api").await;
    let (api_rate, api_cpu) = (measured.rate, cpu.per_request(&api, measured.requests));
    let api_peak_rss = api.rss_kib("VmHWM:");
    if matches!(
        std::env::var("BENCH_ONLY").as_deref(),
        Ok("scale" | "history")
    ) {
        print_scale(dir.path()).await;
        return;
    }
    if std::env::var("BENCH_ONLY").as_deref() == Ok("delivery") {
        let count = delivery_events();
        let delivery_dir = dir.path().join("delivery");
        let rate =
            delivery_throughput(&delivery_dir, &servers::sqlite_url(&delivery_dir), count, 1)
                .await
                .delivery;
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
        println!(
            "CPU µs per request, server / load generator: ceiling {:.1} / {:.1}, api {:.1} / {:.1}",
            baseline_cpu.0, baseline_cpu.1, api_cpu.0, api_cpu.1
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
    let serve_rate = max_throughput(serve.address, duration, "serve").await.rate;
    let serve_peak_rss = serve.rss_kib("VmHWM:");
    drop(serve);

    let delivered = delivery_events();
    let delivery_dir = dir.path().join("delivery");
    let delivery_rate = delivery_throughput(
        &delivery_dir,
        &servers::sqlite_url(&delivery_dir),
        delivered,
        1,
    )
    .await
    .delivery;
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
    println!("| CPU per request (µs) | server | load generator | both cores busy |");
    println!("|---|---|---|---|");
    for (label, (server, generator), rate) in [
        ("bare-HTTP ceiling", baseline_cpu, ceiling),
        ("`hookrelay api`", api_cpu, api_rate),
    ] {
        println!(
            "| {label} | {server:.1} | {generator:.1} | {:.0} % |",
            (server + generator) * rate / 1e6 / 2.0 * 100.0
        );
    }
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
    print_scale(dir.path()).await;
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

async fn print_scale(root: &std::path::Path) {
    let history: u64 = std::env::var("BENCH_HISTORY")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    if std::env::var("BENCH_ONLY").as_deref() != Ok("history") {
        print_workers(root).await;
    }
    print_history(root, history).await;
}

async fn print_workers(root: &std::path::Path) {
    let rows = scale::workers_table(root).await;
    println!();
    println!(
        "| backend | worker processes | ingest, `api` alone (202/s) | delivery (deliveries/s) |"
    );
    println!("|---|---|---|---|");
    for row in rows {
        println!(
            "| {} | {} | {:.0} | {:.0} |",
            row.backend.name(),
            row.workers,
            row.figures.ingest,
            row.figures.delivery
        );
    }
}

async fn print_history(root: &std::path::Path, history: u64) {
    let rows = scale::history_table(root, history).await;
    println!();
    println!(
        "| backend | ingest, empty | ingest, {history} delivered in the table | ratio | delivery, empty | delivery, with history | ratio |"
    );
    println!("|---|---|---|---|---|---|---|");
    for row in &rows {
        println!(
            "| {} | {:.0}/s | {:.0}/s | {:.2} | {:.0}/s | {:.0}/s | {:.2} |",
            row.backend.name(),
            row.empty.ingest,
            row.with_history.ingest,
            row.with_history.ingest / row.empty.ingest,
            row.empty.delivery,
            row.with_history.delivery,
            row.with_history.delivery / row.empty.delivery,
        );
    }
    for row in &rows {
        println!(
            "seeding {} took {:.0} s",
            row.backend.name(),
            row.seed_seconds
        );
    }
}
