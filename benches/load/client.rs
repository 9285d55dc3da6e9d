//! The load generator: hyper HTTP/1.1 connections, closed and open loop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::CONNECTIONS;

/// A Stripe-like event of about 850 bytes.
pub fn body(n: u64) -> Bytes {
    // 100 customers: the ordering key of the ordered-delivery figure.
    let customer = n % 100;
    let text = format!(
        r#"{{"id":"evt_bench_{n:012}","object":"event","api_version":"2024-06-20","created":1732972800,"type":"payment_intent.succeeded","livemode":false,"pending_webhooks":1,"request":{{"id":"req_8b1c2d3e4f5a6b","idempotency_key":"6f1d4b2a-9c8e-4f3a-b2d1-0e9f8a7b6c5d"}},"data":{{"object":{{"id":"pi_3Q0bench{n:012}","object":"payment_intent","amount":4999,"amount_capturable":0,"amount_received":4999,"currency":"eur","customer":"cus_Qbench{customer:06}","description":"Order #A-100234 (2 items)","latest_charge":"ch_3Q0bench000001","metadata":{{"order_id":"A-100234","cart":"c_77812","channel":"web"}},"payment_method":"pm_1Q0bench000001","payment_method_types":["card"],"receipt_email":"customer@example.com","status":"succeeded","shipping":{{"name":"Jane Doe","address":{{"line1":"Hauptstrasse 1","city":"Berlin","postal_code":"10115","country":"DE"}}}}}}}}}}"#
    );
    Bytes::from(text)
}

pub type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

pub async fn connect(address: SocketAddr) -> Sender {
    let stream = TcpStream::connect(address).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    sender
}

/// Sends one webhook; returns the status and the response body.
pub async fn post(sender: &mut Sender, address: SocketAddr, key: &str, n: u64) -> (u16, Bytes) {
    post_to(sender, address, "stripe", key, n).await
}

pub async fn post_to(
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

pub static KEYS: AtomicU64 = AtomicU64::new(0);

pub fn next_key(prefix: &str) -> (String, u64) {
    let n = KEYS.fetch_add(1, Ordering::Relaxed);
    (format!("{prefix}-{n}"), n)
}

/// Closed loop: every connection sends as fast as answers come back.
/// Closed-loop throughput over `duration` (after a warm-up), and every request sent,
/// warm-up included, for per-request costs measured around the whole call.
pub struct Throughput {
    pub rate: f64,
    pub requests: u64,
    /// The longest single request in the measured window (a stall shows here).
    pub longest: Duration,
}

pub async fn max_throughput(
    address: SocketAddr,
    duration: Duration,
    prefix: &'static str,
) -> Throughput {
    max_throughput_with(address, duration, prefix, CONNECTIONS).await
}

pub async fn max_throughput_with(
    address: SocketAddr,
    duration: Duration,
    prefix: &'static str,
    connections: usize,
) -> Throughput {
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let longest = Arc::new(AtomicU64::new(0));
    let warmup = Duration::from_millis(500);
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let stop = stop.clone();
        let done = done.clone();
        let measuring = measuring.clone();
        let longest = longest.clone();
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(address).await;
            while !stop.load(Ordering::Relaxed) {
                let (key, n) = next_key(prefix);
                let sent = Instant::now();
                let (status, _) = post(&mut sender, address, &key, n).await;
                assert_eq!(status, 202, "unexpected status");
                if measuring.load(Ordering::Relaxed) {
                    longest.fetch_max(sent.elapsed().as_micros() as u64, Ordering::Relaxed);
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(warmup).await;
    measuring.store(true, Ordering::Relaxed);
    let start_count = done.load(Ordering::Relaxed);
    let start = Instant::now();
    tokio::time::sleep(duration).await;
    let count = done.load(Ordering::Relaxed) - start_count;
    let elapsed = start.elapsed();
    measuring.store(false, Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("load task");
    }
    Throughput {
        rate: count as f64 / elapsed.as_secs_f64(),
        requests: done.load(Ordering::Relaxed),
        longest: Duration::from_micros(longest.load(Ordering::Relaxed)),
    }
}

/// Open loop at a fixed arrival rate: latency counts from each request's scheduled
/// start, so queueing behind a slow answer is not hidden.
pub async fn latency_at(
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

pub fn micros_since_epoch() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}
