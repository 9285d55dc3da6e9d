//! Alerts (`BENCH_ONLY=alerts`): ingest throughput of `serve` with no `[alerts]`
//! against the same with alerts going to a receiver that accepts connections and never
//! answers, runs alternated, both backends. Every event is routed to a destination
//! that rejects it (410: dead-lettered at once, a digest per second) and to one that
//! is down (its breaker opens: a failing alert), so alerts are raised and pile up
//! while the load runs.

use std::path::Path;
use std::time::Duration;

use crate::client::max_throughput;
use crate::protection::{list, mean, start_black_hole, write_config};
use crate::scale::{Backend, BenchDatabase};
use crate::servers::{Server, free_address, wait_ready};

/// A server answering every POST with 410 Gone.
async fn rejecting() -> std::net::SocketAddr {
    use axum::Router;
    use axum::http::StatusCode;
    use axum::routing::post;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let router = Router::new().route("/hook", post(|| async { StatusCode::GONE }));
    tokio::spawn(async move { axum::serve(listener, router).await });
    address
}

pub async fn print(root: &Path, duration: Duration, runs: usize) {
    let reject = rejecting().await;
    let hole = start_black_hole().await;
    let down = free_address();
    let routes = format!(
        "[destinations.strict]\nurl = \"http://{reject}/hook\"\n\
         [destinations.down]\nurl = \"http://{down}/hook\"\n\
         [sources.stripe]\n[[sources.stripe.routes]]\ndestination = \"strict\"\n\
         [[sources.stripe.routes]]\ndestination = \"down\"\n"
    );
    let alerting = format!(
        "{routes}[alerts]\nurl = \"http://{hole}/hook\"\ndigest = \"1s\"\nlag = \"1s\"\n\
         timeout = \"10s\"\n"
    );
    println!();
    println!(
        "| backend | webhooks/s, `serve`, no `[alerts]`: runs | alerts to a receiver that never answers: runs | with / without (means) |"
    );
    println!("|---|---|---|---|");
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let (mut without, mut with) = (Vec::new(), Vec::new());
        for run in 0..runs {
            for (label, config, into) in [
                ("without", &routes, &mut without),
                ("with", &alerting, &mut with),
            ] {
                let dir = root.join(format!("alerts-{}-{run}-{label}", backend.name()));
                let database = BenchDatabase::create(backend, &dir).await;
                let config = write_config(&dir, config);
                let server = Server::hookrelay_with("serve", &dir, &database.url, Some(&config));
                wait_ready(server.address).await;
                // Long enough for the breaker to open and the first digests to pile up.
                tokio::time::sleep(Duration::from_millis(300)).await;
                into.push(
                    max_throughput(server.address, duration, "alerts")
                        .await
                        .rate,
                );
                drop(server);
                database.drop_database().await;
            }
        }
        println!(
            "| {} | {} | {} | {:.3} |",
            backend.name(),
            list(&without),
            list(&with),
            mean(&with) / mean(&without)
        );
    }
}
