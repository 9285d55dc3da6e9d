//! Tracing's cost (`BENCH_ONLY=tracing`): ingest (the `api` role's closed-loop rate)
//! and delivery (one `worker` draining stored events into a local receiver) with
//! tracing configured but sampled at 0, and with every trace sampled, each as a
//! ratio to the same figure without tracing, measured in the same run. The OTLP
//! endpoint is a local receiver that takes every export and answers at once.
//!
//! `BENCH_RUNS` rounds (3), the modes interleaved within each; `BENCH_TRACE_EVENTS`
//! events per drain (20,000); `BENCH_BACKEND` as elsewhere. With `BENCH_BASELINE_BIN`
//! an earlier build runs too, without tracing (the A/B of the path without it).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::brokers::drain_rate;
use crate::client::max_throughput;
use crate::protection::{backends, mean, runs, write_config};
use crate::scale::{Backend, BenchDatabase};
use crate::scenarios::store_events;
use crate::servers::{Server, hookrelay_binary, start_sink, wait_ready};

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// `BENCH_BASELINE_BIN`, no tracing.
    Before,
    Off,
    SampledZero,
    AllSampled,
}

fn modes() -> Vec<Mode> {
    let mut modes = vec![Mode::Off, Mode::SampledZero, Mode::AllSampled];
    if std::env::var_os("BENCH_BASELINE_BIN").is_some() {
        modes.push(Mode::Before);
    }
    modes
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Before => "the baseline build (BENCH_BASELINE_BIN), no tracing",
            Mode::Off => "no tracing",
            Mode::SampledZero => "tracing, sampled at 0",
            Mode::AllSampled => "tracing, every trace sampled",
        }
    }

    fn env(self, collector: SocketAddr) -> Vec<(&'static str, String)> {
        let ratio = match self {
            Mode::Off | Mode::Before => return Vec::new(),
            Mode::SampledZero => "0",
            Mode::AllSampled => "1",
        };
        vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{collector}")),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio".into()),
            ("OTEL_TRACES_SAMPLER_ARG", ratio.into()),
        ]
    }
}

/// An OTLP/HTTP endpoint that takes every export and answers 200 with an empty
/// (valid) response, counting the bytes it got.
async fn start_collector() -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    use axum::Router;
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::routing::post;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    async fn receive(State(bytes): State<Arc<AtomicU64>>, body: Bytes) -> &'static str {
        bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
        ""
    }
    let bytes = Arc::new(AtomicU64::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let router = Router::new()
        .route("/v1/traces", post(receive))
        .with_state(bytes.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (address, bytes)
}

struct Figures {
    ingest: f64,
    delivery: f64,
}

async fn measure(
    backend: Backend,
    dir: &Path,
    mode: Mode,
    collector: SocketAddr,
    sink: SocketAddr,
    duration: Duration,
    events: u64,
) -> Figures {
    let binary = match mode {
        Mode::Before => std::env::var_os("BENCH_BASELINE_BIN")
            .expect("BENCH_BASELINE_BIN")
            .into(),
        _ => hookrelay_binary(),
    };
    let env = mode.env(collector);
    let database = BenchDatabase::create(backend, dir).await;
    let config = write_config(
        dir,
        &format!(
            "[destinations.app]\nurl = \"http://{sink}/hook\"\n\n\
             [sources.stripe]\n[[sources.stripe.routes]]\ndestination = \"app\"\n"
        ),
    );
    let api = Server::hookrelay_env(&binary, "api", dir, &database.url, Some(&config), &env);
    wait_ready(api.address).await;
    let ingest = max_throughput(api.address, duration, "trace").await.rate;
    drop(api);
    // A fresh database for the drain, its events stored under the same mode (their
    // trace context is what each attempt continues).
    database.drop_database().await;
    let drain_dir = dir.join("drain");
    let database = BenchDatabase::create(backend, &drain_dir).await;
    let api = Server::hookrelay_env(&binary, "api", dir, &database.url, Some(&config), &env);
    wait_ready(api.address).await;
    store_events(api.address, "stripe", events).await;
    drop(api);
    let worker = Server::hookrelay_env(&binary, "worker", dir, &database.url, Some(&config), &env);
    let delivery = drain_rate(
        backend,
        &database,
        events,
        Duration::from_secs(600),
        "traced",
    )
    .await;
    drop(worker);
    database.drop_database().await;
    Figures { ingest, delivery }
}

pub async fn print(root: &Path, duration: Duration) {
    let events: u64 = std::env::var("BENCH_TRACE_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let (collector, exported) = start_collector().await;
    let sink = start_sink().await;
    println!();
    println!(
        "| backend | mode | ingest/s | ratio | deliveries/s | ratio | runs: ingest; deliveries |"
    );
    println!("|---|---|---|---|---|---|---|");
    let modes = modes();
    for backend in backends() {
        let mut ingest = vec![Vec::new(); modes.len()];
        let mut delivery = vec![Vec::new(); modes.len()];
        for round in 0..runs() {
            for (index, mode) in modes.iter().enumerate() {
                let dir = root.join(format!("tracing-{backend:?}-{round}-{index}"));
                std::fs::create_dir_all(&dir).expect("dir");
                let figures = measure(
                    backend,
                    &dir,
                    *mode,
                    collector,
                    sink.address,
                    duration,
                    events,
                )
                .await;
                ingest[index].push(figures.ingest);
                delivery[index].push(figures.delivery);
            }
        }
        let (base_ingest, base_delivery) = (mean(&ingest[0]), mean(&delivery[0]));
        let listed = |values: &[f64]| {
            values
                .iter()
                .map(|v| format!("{v:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        for (index, mode) in modes.iter().enumerate() {
            let (i, d) = (mean(&ingest[index]), mean(&delivery[index]));
            println!(
                "| {backend:?} | {} | {i:.0} | {:.3} | {d:.0} | {:.3} | {}; {} |",
                mode.name(),
                i / base_ingest,
                d / base_delivery,
                listed(&ingest[index]),
                listed(&delivery[index])
            );
        }
    }
    let bytes = exported.load(std::sync::atomic::Ordering::Relaxed);
    println!("OTLP bytes received by the collector: {bytes}");
}
