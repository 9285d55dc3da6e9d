//! The day-long outage (`BENCH_ONLY=outage`): a destination whose breaker is open
//! while `BENCH_OUTAGE_BACKLOG` deliveries (default 1,000,000) wait for it. Measured
//! against the same build with an empty backlog, in the same run:
//! - `serve`'s ingest with the backlog waiting, as a ratio to its ingest with none;
//! - how long `GET /destinations`, `/metrics`, `/ui` and `/ui/destinations` take;
//! - once the breaker closes, the drain rate of the first 100,000 deliveries, as a
//!   ratio to draining a backlog of 100,000.
//!
//! The backlog is written straight into the database (an hour of HTTP ingest would
//! measure nothing more); `BENCH_BACKEND=sqlite|postgres` picks the backend.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::client::max_throughput;
use crate::protection::write_config;
use crate::scale::{Backend, BenchDatabase};
use crate::servers::{Server, Sink, migrate, start_sink, wait_ready};

/// Deliveries timed after the breaker closes.
const DRAINED: u64 = 100_000;

fn backlog() -> u64 {
    std::env::var("BENCH_OUTAGE_BACKLOG")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000)
}

fn config(sink: &Sink) -> String {
    format!(
        "[destinations.app]\nurl = \"http://{}/hook\"\n\n\
         [sources.stripe]\n[[sources.stripe.routes]]\ndestination = \"app\"\n",
        sink.address
    )
}

/// Writes `count` deliveries due to `app`, and `app`'s breaker open for an hour.
async fn seed(database: &BenchDatabase, backend: Backend, count: u64) {
    migrate(&database.url);
    // At least one: the statements below write a first row whatever the count.
    let count = count.max(1);
    let now = crate::client::micros_since_epoch();
    let hour = 3_600_000_000i64;
    match backend {
        Backend::Sqlite => {
            let path = database.url.trim_start_matches("sqlite://").to_owned();
            tokio::task::spawn_blocking(move || {
                let conn = rusqlite::Connection::open(path).expect("open");
                conn.execute_batch("PRAGMA journal_mode = WAL; BEGIN")
                    .expect("begin");
                conn.execute(
                    "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < ?1)
                     INSERT INTO events (id, source, idempotency_key, event_type, created_at,
                                         content_type, headers, body)
                     SELECT printf('evt_waiting_%09d', x), 'stripe', printf('waiting-%09d', x),
                            'invoice.paid', ?2 - ?1 + x, 'application/json', '[]',
                            CAST('{\"waiting\":true}' AS BLOB)
                     FROM n",
                    rusqlite::params![count as i64, now],
                )
                .expect("seed events");
                conn.execute(
                    "INSERT INTO deliveries (event_id, destination, status, max_attempts,
                                             next_attempt_at, updated_at)
                     SELECT id, 'app', 'queued', 5, created_at, created_at FROM events",
                    [],
                )
                .expect("seed deliveries");
                conn.execute(
                    "INSERT INTO destinations (name, failures, breaker_since, probe_at,
                                               probe_pause_us)
                     VALUES ('app', 5, ?1, ?2, 300000000)",
                    rusqlite::params![now, now + hour],
                )
                .expect("open breaker");
                conn.execute_batch("COMMIT").expect("commit");
            })
            .await
            .expect("seed task");
        }
        Backend::Postgres => {
            let client = database.client().await;
            client
                .execute(
                    "INSERT INTO events (id, source, idempotency_key, event_type, created_at,
                                         content_type, headers, body)
                     SELECT 'evt_waiting_' || lpad(x::text, 9, '0'), 'stripe',
                            'waiting-' || x, 'invoice.paid', $2 - $1 + x,
                            'application/json', '[]', convert_to('{\"waiting\":true}', 'UTF8')
                     FROM generate_series(1, $1::bigint) AS x",
                    &[&(count as i64), &now],
                )
                .await
                .expect("seed events");
            client
                .execute(
                    "INSERT INTO deliveries (event_id, destination, status, max_attempts,
                                             next_attempt_at, updated_at)
                     SELECT id, 'app', 'queued', 5, created_at, created_at FROM events",
                    &[],
                )
                .await
                .expect("seed deliveries");
            client
                .execute(
                    "INSERT INTO destinations (name, failures, breaker_since, probe_at,
                                               probe_pause_us)
                     VALUES ('app', 5, $1, $2, 300000000)",
                    &[&now, &(now + hour)],
                )
                .await
                .expect("open breaker");
            // What autovacuum would have done by then (one statement each: VACUUM
            // cannot run in the implicit transaction of several).
            for table in ["events", "deliveries"] {
                client
                    .batch_execute(&format!("VACUUM ANALYZE {table}"))
                    .await
                    .expect("analyze");
            }
        }
    }
}

/// Closes `app`'s breaker behind the running process's back, as a probe's success
/// would.
async fn close_breaker(database: &BenchDatabase, backend: Backend) {
    let sql = "UPDATE destinations SET failures = 0, breaker_since = NULL, probe_at = NULL
               WHERE name = 'app'";
    match backend {
        Backend::Sqlite => {
            let path = database.url.trim_start_matches("sqlite://").to_owned();
            tokio::task::spawn_blocking(move || {
                let conn = rusqlite::Connection::open(path).expect("open");
                conn.busy_timeout(Duration::from_secs(10)).expect("timeout");
                conn.execute(sql, []).expect("close breaker");
            })
            .await
            .expect("close task");
        }
        Backend::Postgres => {
            database
                .client()
                .await
                .execute(sql, &[])
                .await
                .expect("close breaker");
        }
    }
}

/// The slowest of three answers to `path`.
async fn slowest_answer(address: std::net::SocketAddr, path: &str) -> Duration {
    let client = reqwest::Client::new();
    let mut slowest = Duration::ZERO;
    for _ in 0..3 {
        let started = Instant::now();
        let response = client
            .get(format!("http://{address}{path}"))
            .send()
            .await
            .expect("answer");
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        response.bytes().await.expect("body");
        slowest = slowest.max(started.elapsed());
    }
    slowest
}

struct Outage {
    ingest: f64,
    reads: Vec<(&'static str, Duration)>,
    drain: f64,
}

/// `serve`'s ingest with (next to) nothing waiting behind the open breaker.
async fn ingest_alone(backend: Backend, dir: &Path, duration: Duration) -> f64 {
    let sink = start_sink().await;
    let database = BenchDatabase::create(backend, dir).await;
    seed(&database, backend, 1).await;
    let config = write_config(dir, &config(&sink));
    let serve = Server::hookrelay_with("serve", dir, &database.url, Some(&config));
    wait_ready(serve.address).await;
    let rate = max_throughput(serve.address, duration, "outage").await.rate;
    drop(serve);
    database.drop_database().await;
    rate
}

const READS: [&str; 4] = ["/destinations", "/metrics", "/ui", "/ui/destinations"];

/// `serve` with `waiting` deliveries behind the open breaker: its ingest, its reads,
/// then the drain of the first [`DRAINED`] once the breaker closes.
async fn measure(backend: Backend, dir: &Path, waiting: u64, duration: Duration) -> Outage {
    let sink = start_sink().await;
    let database = BenchDatabase::create(backend, dir).await;
    seed(&database, backend, waiting).await;
    let config = write_config(dir, &config(&sink));
    let serve = Server::hookrelay_with("serve", dir, &database.url, Some(&config));
    wait_ready(serve.address).await;
    let ingest = max_throughput(serve.address, duration, "outage").await.rate;
    let mut reads = Vec::new();
    for path in READS {
        reads.push((path, slowest_answer(serve.address, path).await));
    }
    sink.arrivals.lock().expect("arrivals").clear();
    close_breaker(&database, backend).await;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(600);
    let (first, last) = loop {
        let span = {
            let arrivals = sink.arrivals.lock().expect("arrivals");
            (arrivals.len() as u64 >= DRAINED)
                .then(|| (arrivals[0].1, arrivals[DRAINED as usize - 1].1))
        };
        if let Some(span) = span {
            break span;
        }
        assert!(Instant::now() < deadline, "the drain did not finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    drop(serve);
    database.drop_database().await;
    Outage {
        ingest,
        reads,
        drain: DRAINED as f64 / (last - first).as_secs_f64(),
    }
}

pub async fn print(root: &Path, duration: Duration) {
    let backend = match std::env::var("BENCH_BACKEND").as_deref() {
        Ok("postgres") => Backend::Postgres,
        _ => Backend::Sqlite,
    };
    let waiting = backlog();
    println!(
        "\n### The day-long outage ({}): {waiting} deliveries behind an open breaker\n",
        backend.name()
    );
    let empty = ingest_alone(backend, &root.join("empty"), duration).await;
    let small = measure(backend, &root.join("small"), DRAINED, duration).await;
    let large = measure(backend, &root.join("large"), waiting, duration).await;
    println!("| figure | none or {DRAINED} waiting | {waiting} waiting | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| `serve` ingest, 202/s (none waiting) | {empty:.0} | {:.0} | {:.2} |",
        large.ingest,
        large.ingest / empty
    );
    println!(
        "| `serve` ingest, 202/s ({DRAINED} waiting) | {:.0} | {:.0} | {:.2} |",
        small.ingest,
        large.ingest,
        large.ingest / small.ingest
    );
    println!(
        "| drain of the first {DRAINED} after recovery, /s | {:.0} | {:.0} | {:.2} |",
        small.drain,
        large.drain,
        large.drain / small.drain
    );
    for ((path, small), (_, large)) in small.reads.iter().zip(&large.reads) {
        println!(
            "| `GET {path}`, slowest of 3 | {:.1} ms | {:.1} ms | |",
            small.as_secs_f64() * 1e3,
            large.as_secs_f64() * 1e3
        );
    }
}
