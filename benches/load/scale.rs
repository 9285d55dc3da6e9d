//! PostgreSQL beside SQLite: ingest and delivery with 1, 2 and 4 worker processes, and
//! whether claims slow down when the table holds a long history.

use std::path::Path;
use std::time::Instant;

use tokio_postgres::NoTls;

use crate::scenarios::{DeliveryFigures, delivery_throughput};
use crate::servers::{migrate, sqlite_url};

/// Events stored and delivered per figure.
const EVENTS: u64 = 20_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }
}

fn admin_url() -> String {
    std::env::var("HOOKRELAY_BENCH_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

async fn admin(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .expect("PostgreSQL for the benchmark (HOOKRELAY_BENCH_POSTGRES)");
    tokio::spawn(connection);
    client
}

/// A fresh database for one figure; PostgreSQL ones are dropped afterwards.
pub struct BenchDatabase {
    pub url: String,
    postgres_name: Option<String>,
}

impl BenchDatabase {
    pub async fn create(backend: Backend, dir: &Path) -> Self {
        std::fs::create_dir_all(dir).expect("dir");
        match backend {
            Backend::Sqlite => Self {
                url: sqlite_url(dir),
                postgres_name: None,
            },
            Backend::Postgres => {
                let name = format!("hookrelay_bench_{}", uuid::Uuid::new_v4().simple());
                admin(&admin_url())
                    .await
                    .batch_execute(&format!("CREATE DATABASE {name}"))
                    .await
                    .expect("create database");
                let base = admin_url();
                let (server, _) = base.rsplit_once('/').expect("URL with a database");
                Self {
                    url: format!("{server}/{name}"),
                    postgres_name: Some(name),
                }
            }
        }
    }

    pub async fn drop_database(self) {
        if let Some(name) = self.postgres_name {
            let _ = admin(&admin_url())
                .await
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await;
        }
    }

    /// A connection to this PostgreSQL database.
    pub async fn client(&self) -> tokio_postgres::Client {
        admin(&self.url).await
    }

    /// Fills the table with `count` delivered events, as months of traffic would.
    pub async fn seed_history(&self, count: u64) {
        migrate(&self.url);
        match &self.postgres_name {
            None => {
                let path = self.url.trim_start_matches("sqlite://").to_owned();
                tokio::task::spawn_blocking(move || {
                    let conn = rusqlite::Connection::open(path).expect("open");
                    conn.execute(
                        "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < ?1)
                         INSERT INTO events (id, source, idempotency_key, created_at,
                                             content_type, headers, body)
                         SELECT printf('evt_history_%09d', x), 'app', printf('history-%09d', x),
                                x, 'application/json', '[]', zeroblob(800)
                         FROM n",
                        [count as i64],
                    )
                    .expect("seed history");
                    conn.execute(
                        "INSERT INTO deliveries (event_id, destination, status, attempts,
                                                 max_attempts, updated_at)
                         SELECT id, 'app', 'delivered', 1, 5, created_at FROM events",
                        [],
                    )
                    .expect("seed deliveries");
                })
                .await
                .expect("seed task");
            }
            Some(_) => {
                let client = admin(&self.url).await;
                client
                    .execute(
                        "INSERT INTO events (id, source, idempotency_key, created_at,
                                             content_type, headers, body)
                         SELECT 'evt_history_' || lpad(x::text, 9, '0'), 'app',
                                'history-' || x, x, 'application/json',
                                '[]', decode(repeat('00', 800), 'hex')
                         FROM generate_series(1, $1::bigint) AS x",
                        &[&(count as i64)],
                    )
                    .await
                    .expect("seed history");
                client
                    .execute(
                        "INSERT INTO deliveries (event_id, destination, status, attempts,
                                                 max_attempts, updated_at)
                         SELECT id, 'app', 'delivered', 1, 5, created_at FROM events",
                        &[],
                    )
                    .await
                    .expect("seed deliveries");
                client
                    .batch_execute("VACUUM ANALYZE events; VACUUM ANALYZE deliveries")
                    .await
                    .expect("analyze");
            }
        }
    }
}

pub struct ScaleRow {
    pub backend: Backend,
    pub workers: usize,
    pub figures: DeliveryFigures,
}

/// Ingest (`api` alone) and delivery with 1, 2 and 4 worker processes, each on a
/// fresh database.
pub async fn workers_table(root: &Path) -> Vec<ScaleRow> {
    let mut rows = Vec::new();
    for backend in [Backend::Sqlite, Backend::Postgres] {
        for workers in [1, 2, 4] {
            let dir = root.join(format!("scale-{}-{workers}", backend.name()));
            let database = BenchDatabase::create(backend, &dir).await;
            let figures = delivery_throughput(&dir, &database.url, EVENTS, workers).await;
            database.drop_database().await;
            rows.push(ScaleRow {
                backend,
                workers,
                figures,
            });
        }
    }
    rows
}

pub struct HistoryRow {
    pub backend: Backend,
    pub empty: DeliveryFigures,
    pub with_history: DeliveryFigures,
    pub seed_seconds: f64,
}

/// The same ingest and delivery on an empty table and on one holding `history`
/// delivered events.
pub async fn history_table(root: &Path, history: u64) -> Vec<HistoryRow> {
    let mut rows = Vec::new();
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let dir = root.join(format!("empty-{}", backend.name()));
        let database = BenchDatabase::create(backend, &dir).await;
        let empty = delivery_throughput(&dir, &database.url, EVENTS, 1).await;
        database.drop_database().await;

        let dir = root.join(format!("history-{}", backend.name()));
        let database = BenchDatabase::create(backend, &dir).await;
        let seeding = Instant::now();
        database.seed_history(history).await;
        let seed_seconds = seeding.elapsed().as_secs_f64();
        let with_history = delivery_throughput(&dir, &database.url, EVENTS, 1).await;
        database.drop_database().await;
        rows.push(HistoryRow {
            backend,
            empty,
            with_history,
            seed_seconds,
        });
    }
    rows
}
