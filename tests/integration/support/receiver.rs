//! A real HTTP receiver for deliveries: records every request and answers from a
//! script (status, headers, delay), then 200.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
    /// The status it was answered with.
    pub status: u16,
}

#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub delay: Duration,
    pub body: String,
}

impl Answer {
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            delay: Duration::ZERO,
            body: format!("answer {status}"),
        }
    }

    pub fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }

    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    pub fn body(mut self, body: &str) -> Self {
        self.body = body.to_owned();
        self
    }
}

/// What the receiver answers once its script is used up.
type Fallback = Box<dyn Fn() -> Answer + Send + Sync>;

struct Shared {
    received: Mutex<Vec<Received>>,
    script: Mutex<VecDeque<Answer>>,
    fallback: Fallback,
    open: AtomicUsize,
    most_open: AtomicUsize,
}

pub struct Receiver {
    pub address: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Receiver {
    /// Answers with `script` in order, then 200 to everything.
    pub async fn start(script: Vec<Answer>) -> Self {
        Self::answering(script, || Answer::status(200)).await
    }

    /// Answers with `script` in order, then with what `fallback` says.
    pub async fn answering(
        script: Vec<Answer>,
        fallback: impl Fn() -> Answer + Send + Sync + 'static,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener, script, Box::new(fallback))
    }

    /// Answers 200 to everything on `address` (e.g. one that was closed so far).
    pub async fn start_on(address: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind(address).await.unwrap();
        Self::serve(listener, Vec::new(), Box::new(|| Answer::status(200)))
    }

    fn serve(listener: tokio::net::TcpListener, script: Vec<Answer>, fallback: Fallback) -> Self {
        let shared = Arc::new(Shared {
            received: Mutex::default(),
            script: Mutex::new(script.into()),
            fallback,
            open: AtomicUsize::new(0),
            most_open: AtomicUsize::new(0),
        });
        let router = Router::new()
            .route("/hook", post(receive))
            .with_state(shared.clone());
        let address = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Self {
            address,
            shared,
            server,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.address)
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    /// The most requests it had open at once.
    pub fn most_open(&self) -> usize {
        self.shared.most_open.load(Ordering::SeqCst)
    }
}

async fn receive(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let open = shared.open.fetch_add(1, Ordering::SeqCst) + 1;
    shared.most_open.fetch_max(open, Ordering::SeqCst);
    // Counted down even when the client gives up and the request is dropped.
    let _open = OpenRequest(&shared.open);
    let at = Instant::now();
    let scripted = shared.script.lock().unwrap().pop_front();
    let answer = scripted.unwrap_or_else(|| (shared.fallback)());
    shared.received.lock().unwrap().push(Received {
        headers,
        body,
        at,
        status: answer.status,
    });
    tokio::time::sleep(answer.delay).await;
    let mut response = (StatusCode::from_u16(answer.status).unwrap(), answer.body).into_response();
    for (name, value) in answer.headers {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

struct OpenRequest<'a>(&'a AtomicUsize);

impl Drop for OpenRequest<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A loopback port with nothing listening on it.
pub fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{address}/hook")
}
