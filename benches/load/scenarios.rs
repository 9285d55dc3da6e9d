//! Wake-up, delivery and end-to-end measurements.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::CONNECTIONS;
use crate::client::*;
use crate::servers::*;

/// Lone events on an idle `serve`: from the 202 reaching the client to the attempt's
/// start, and from the request's arrival to the attempt's start.
pub async fn wake_up(
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

/// Posts `count` webhooks to `source` over every connection, each answered 202.
pub async fn store_events(address: SocketAddr, source: &'static str, count: u64) {
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(address).await;
            while next.fetch_add(1, Ordering::Relaxed) < count {
                let (key, n) = next_key("deliver");
                let (status, _) = post_to(&mut sender, address, source, &key, n).await;
                assert_eq!(status, 202);
            }
        }));
    }
    for task in tasks {
        task.await.expect("store task");
    }
}

pub struct DeliveryFigures {
    /// 202s per second while storing the events (`api` alone).
    pub ingest: f64,
    /// Deliveries per second, first arrival to last.
    pub delivery: f64,
}

/// Stores `count` events with `api` alone, then lets `workers` worker processes
/// deliver them all to a destination that answers 200 at once.
pub async fn delivery_throughput(
    dir: &Path,
    database: &str,
    count: u64,
    workers: usize,
) -> DeliveryFigures {
    std::fs::create_dir_all(dir).expect("dir");
    let sink = start_sink().await;
    let config = sink_config(dir, &sink);
    let api = Server::hookrelay_with("api", dir, database, Some(&config));
    wait_ready(api.address).await;
    let started = Instant::now();
    store_events(api.address, "app", count).await;
    let ingest = count as f64 / started.elapsed().as_secs_f64();
    drop(api);

    let running: Vec<Server> = (0..workers)
        .map(|_| Server::hookrelay_with("worker", dir, database, Some(&config)))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(300);
    while (sink.arrivals.lock().expect("arrivals").len() as u64) < count {
        assert!(Instant::now() < deadline, "deliveries did not finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(running);
    let arrivals = sink.arrivals.lock().expect("arrivals");
    let first = arrivals.first().map(|a| a.1).expect("arrivals");
    let last = arrivals.last().map(|a| a.1).expect("arrivals");
    DeliveryFigures {
        ingest,
        delivery: count as f64 / (last - first).as_secs_f64(),
    }
}

/// Open loop at `rate` against `serve` with a destination: from the 202 reaching the
/// client to the destination receiving the event.
pub async fn end_to_end(root: &Path, rate: f64, duration: Duration) -> (Histogram<u64>, f64) {
    let dir = root.join("e2e");
    std::fs::create_dir_all(&dir).expect("dir");
    let sink = start_sink().await;
    let config = sink_config(&dir, &sink);
    let serve = Server::hookrelay_with("serve", &dir, &sqlite_url(&dir), Some(&config));
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
