//! Protection figures (`BENCH_ONLY=protection`): delivery to a destination with no
//! limits against an earlier build (`BENCH_BASELINE_BIN`, runs alternated); ordered
//! delivery over 100 keys against unordered; the achieved rate at `rate = "50/s"` and
//! `"1000/s"`; and the end-to-end latency of a healthy destination alone and beside
//! one that never answers. `BENCH_AB_ONLY=1` stops after the comparison with the
//! earlier build, `BENCH_ORDER_ONLY=1` after the ordered table.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::client::{connect, next_key, post_to};
use crate::scale::{Backend, BenchDatabase};
use crate::scenarios::store_events;
use crate::servers::{Server, Sink, hookrelay_binary, start_sink, wait_ready};

pub fn write_config(dir: &Path, text: &str) -> PathBuf {
    std::fs::create_dir_all(dir).expect("dir");
    let path = dir.join("hookrelay.toml");
    std::fs::write(&path, text).expect("config");
    path
}

fn sink_url(sink: &Sink) -> String {
    format!("http://{}/hook", sink.address)
}

/// What a drain measured: deliveries per second from the first arrival to the last,
/// the most arrivals within any one second, and the worker's CPU per delivery.
struct Drained {
    rate: f64,
    busiest_second: usize,
    cpu_per_delivery: Duration,
    /// The part of it on the SQLite writer thread (none on PostgreSQL).
    writer_per_delivery: Duration,
}

/// Stores `events` with `api`, then one `worker` (both from `binary`) delivers them to
/// the sink.
async fn drain(
    binary: &Path,
    backend: Backend,
    dir: &Path,
    config: &str,
    events: u64,
    sink: &Sink,
) -> Drained {
    let database = BenchDatabase::create(backend, dir).await;
    let config = write_config(dir, config);
    let api = Server::hookrelay_from(binary, "api", dir, &database.url, Some(&config));
    wait_ready(api.address).await;
    store_events(api.address, "stripe", events).await;
    drop(api);
    sink.arrivals.lock().expect("arrivals").clear();
    let worker = Server::hookrelay_from(binary, "worker", dir, &database.url, Some(&config));
    let deadline = Instant::now() + Duration::from_secs(900);
    while (sink.arrivals.lock().expect("arrivals").len() as u64) < events {
        assert!(Instant::now() < deadline, "deliveries did not finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cpu_per_delivery = Duration::from_secs_f64(worker.cpu_seconds() / events as f64);
    let writer_per_delivery =
        Duration::from_secs_f64(worker.thread_cpu_seconds("sqlite-writer") / events as f64);
    drop(worker);
    database.drop_database().await;
    let arrivals = sink.arrivals.lock().expect("arrivals");
    let times: Vec<Instant> = arrivals.iter().map(|a| a.1).collect();
    let (first, last) = (times[0], times[times.len() - 1]);
    let mut busiest_second = 0;
    let mut end = 0;
    for (start, at) in times.iter().enumerate() {
        while end < times.len() && times[end] < *at + Duration::from_secs(1) {
            end += 1;
        }
        busiest_second = busiest_second.max(end - start);
    }
    Drained {
        rate: events as f64 / (last - first).as_secs_f64(),
        busiest_second,
        cpu_per_delivery,
        writer_per_delivery,
    }
}

fn destination(sink: &str, extra: &str) -> String {
    format!(
        "[destinations.app]\nurl = \"{sink}\"\n{extra}\n\
         [sources.stripe]\n[[sources.stripe.routes]]\ndestination = \"app\"\n"
    )
}

/// `[sources.stripe] destination = URL`: what every build understands.
fn plain(sink: &str) -> String {
    format!("[sources.stripe]\ndestination = \"{sink}\"\n")
}

/// `BENCH_BACKEND=sqlite|postgres`: one backend only.
pub fn backends() -> Vec<Backend> {
    match std::env::var("BENCH_BACKEND").as_deref() {
        Ok("sqlite") => vec![Backend::Sqlite],
        Ok("postgres") => vec![Backend::Postgres],
        _ => vec![Backend::Sqlite, Backend::Postgres],
    }
}

pub fn runs() -> usize {
    std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3)
}

pub fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

pub fn list(values: &[f64]) -> String {
    values
        .iter()
        .map(|v| format!("{v:.0}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub async fn print(root: &Path, events: u64) {
    let sink = start_sink().await;
    let url = sink_url(&sink);
    let this = hookrelay_binary();
    let runs = runs();

    if let Some(baseline) = std::env::var_os("BENCH_BASELINE_BIN").map(PathBuf::from) {
        println!();
        println!(
            "| backend | deliveries/s, {events} events, no limits: baseline runs | this build's runs | this / baseline (means) | worker CPU per delivery, baseline / this (µs, means) | of which the SQLite writer thread (µs) |"
        );
        println!("|---|---|---|---|---|---|");
        for backend in backends() {
            let (mut before, mut after) = (Vec::new(), Vec::new());
            let (mut cpu_before, mut cpu_after) = (Vec::new(), Vec::new());
            let (mut writer_before, mut writer_after) = (Vec::new(), Vec::new());
            for run in 0..runs {
                let dir = root.join(format!("ab-{}-{run}", backend.name()));
                let a = drain(
                    &baseline,
                    backend,
                    &dir.join("a"),
                    &plain(&url),
                    events,
                    &sink,
                )
                .await;
                before.push(a.rate);
                cpu_before.push(a.cpu_per_delivery.as_secs_f64() * 1e6);
                writer_before.push(a.writer_per_delivery.as_secs_f64() * 1e6);
                let b = drain(&this, backend, &dir.join("b"), &plain(&url), events, &sink).await;
                after.push(b.rate);
                cpu_after.push(b.cpu_per_delivery.as_secs_f64() * 1e6);
                writer_after.push(b.writer_per_delivery.as_secs_f64() * 1e6);
            }
            // PostgreSQL's workers have no writer thread.
            let writer = match backend {
                Backend::Sqlite => {
                    format!("{:.1} / {:.1}", mean(&writer_before), mean(&writer_after))
                }
                Backend::Postgres => "—".to_owned(),
            };
            println!(
                "| {} | {} | {} | {:.3} | {:.1} / {:.1} | {writer} |",
                backend.name(),
                list(&before),
                list(&after),
                mean(&after) / mean(&before),
                mean(&cpu_before),
                mean(&cpu_after),
            );
        }
        // `BENCH_AB_ONLY=1`: the comparison with the earlier build alone.
        if std::env::var_os("BENCH_AB_ONLY").is_some() {
            return;
        }
    }

    println!();
    println!(
        "| backend | deliveries/s, unordered | ordered over 100 keys | ordered / unordered (means) |"
    );
    println!("|---|---|---|---|");
    let ordered_config = destination(
        &url,
        "ordering = \"key\"\nordering_key = \"json:/data/object/customer\"",
    );
    let unordered_config = destination(&url, "");
    for backend in backends() {
        let (mut unordered, mut ordered) = (Vec::new(), Vec::new());
        for run in 0..runs {
            let dir = root.join(format!("order-{}-{run}", backend.name()));
            // Which goes first alternates: a drain leaves PostgreSQL work behind (WAL,
            // vacuum) that would otherwise always fall on the second.
            let mut both = [
                ("u", &unordered_config, &mut unordered),
                ("o", &ordered_config, &mut ordered),
            ];
            if run % 2 == 1 {
                both.reverse();
            }
            for (name, config, rates) in both {
                rates.push(
                    drain(&this, backend, &dir.join(name), config, events, &sink)
                        .await
                        .rate,
                );
            }
        }
        println!(
            "| {} | {} | {} | {:.2} |",
            backend.name(),
            list(&unordered),
            list(&ordered),
            mean(&ordered) / mean(&unordered)
        );
    }
    // `BENCH_ORDER_ONLY=1`: the ordered table alone.
    if std::env::var_os("BENCH_ORDER_ONLY").is_some() {
        return;
    }

    println!();
    println!("| backend | `rate` | events | achieved (first to last arrival) | busiest second |");
    println!("|---|---|---|---|---|");
    for backend in [Backend::Sqlite, Backend::Postgres] {
        for (rate, count) in [(50, 500), (1000, 10_000)] {
            let config = destination(&url, &format!("rate = \"{rate}/s\""));
            let dir = root.join(format!("rate-{}-{rate}", backend.name()));
            let drained = drain(&this, backend, &dir, &config, count, &sink).await;
            println!(
                "| {} | {rate}/s | {count} | {:.1}/s | {} |",
                backend.name(),
                drained.rate,
                drained.busiest_second
            );
        }
    }

    println!();
    println!(
        "| backend | healthy destination, end to end at 200/s (`serve`) | p50 ms | p99 ms | max ms |"
    );
    println!("|---|---|---|---|---|");
    for backend in [Backend::Sqlite, Backend::Postgres] {
        for beside_dead in [false, true] {
            let dir = root.join(format!("isolation-{}-{beside_dead}", backend.name()));
            let latency = isolation(backend, &dir, beside_dead).await;
            println!(
                "| {} | {} | {:.2} | {:.2} | {:.2} |",
                backend.name(),
                if beside_dead {
                    "beside a destination that never answers"
                } else {
                    "alone"
                },
                latency.value_at_quantile(0.5) as f64 / 1e3,
                latency.value_at_quantile(0.99) as f64 / 1e3,
                latency.max() as f64 / 1e3,
            );
        }
    }
}

/// Accepts connections and never answers: a destination that hangs.
pub async fn start_black_hole() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    address
}

/// `serve` with every event routed to a healthy sink (and, `beside_dead`, also to a
/// destination that never answers, its breaker off, 10 s timeout); events sent open
/// loop at 200/s for 5 s; 202 received → healthy sink has the request, in µs.
async fn isolation(backend: Backend, dir: &Path, beside_dead: bool) -> Histogram<u64> {
    let healthy = start_sink().await;
    let dead = start_black_hole().await;
    let mut config = format!(
        "[destinations.healthy]\nurl = \"{}\"\n\
         [destinations.dead]\nurl = \"http://{dead}/hook\"\ntimeout = \"10s\"\nbreaker_failures = 0\n\
         [sources.stripe]\n[[sources.stripe.routes]]\ndestination = \"healthy\"\n",
        sink_url(&healthy)
    );
    if beside_dead {
        config.push_str("[[sources.stripe.routes]]\ndestination = \"dead\"\n");
    }
    let database = BenchDatabase::create(backend, dir).await;
    let config = write_config(dir, &config);
    let serve = Server::hookrelay_with("serve", dir, &database.url, Some(&config));
    wait_ready(serve.address).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let (rate, duration, connections) = (200.0, Duration::from_secs(5), 8);
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
                let (key, n) = next_key("isolation");
                let (status, receipt) = post_to(&mut sender, address, "stripe", &key, n).await;
                let at = Instant::now();
                assert_eq!(status, 202);
                let receipt: serde_json::Value = serde_json::from_slice(&receipt).expect("receipt");
                acknowledged.push((receipt["event_id"].as_str().expect("id").to_owned(), at));
            }
            acknowledged
        }));
    }
    let mut acknowledged = HashMap::new();
    for task in tasks {
        acknowledged.extend(task.await.expect("isolation task"));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while healthy.arrivals.lock().expect("arrivals").len() < acknowledged.len() {
        assert!(Instant::now() < deadline, "deliveries did not finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(serve);
    database.drop_database().await;
    let mut histogram = Histogram::<u64>::new(3).expect("histogram");
    for (id, arrived) in healthy.arrivals.lock().expect("arrivals").iter() {
        if let Some(acked) = acknowledged.get(id) {
            let micros = arrived.saturating_duration_since(*acked).as_micros() as u64;
            histogram.record(micros).expect("record");
        }
    }
    histogram
}
