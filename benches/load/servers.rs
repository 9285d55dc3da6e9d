//! The processes under test: hookrelay, the bare-HTTP ceiling, and a destination.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::net::TcpStream;

use crate::ROLE_VAR;

pub struct Server {
    child: Child,
    pub address: SocketAddr,
}

impl Server {
    /// On the SQLite file `bench.db` in `dir`.
    pub fn hookrelay(command: &str, dir: &Path) -> Self {
        Self::hookrelay_with(command, dir, &sqlite_url(dir), None)
    }

    pub fn hookrelay_with(
        command: &str,
        dir: &Path,
        database: &str,
        config: Option<&Path>,
    ) -> Self {
        Self::hookrelay_from(&hookrelay_binary(), command, dir, database, config)
    }

    /// Like [`Server::hookrelay_with`], from the binary at `binary`.
    pub fn hookrelay_from(
        binary: &Path,
        command: &str,
        dir: &Path,
        database: &str,
        config: Option<&Path>,
    ) -> Self {
        Self::hookrelay_env(binary, command, dir, database, config, &[])
    }

    /// Like [`Server::hookrelay_from`], with these environment variables.
    pub fn hookrelay_env(
        binary: &Path,
        command: &str,
        dir: &Path,
        database: &str,
        config: Option<&Path>,
        env: &[(&str, String)],
    ) -> Self {
        let address = free_address();
        let mut args = vec![command.to_owned(), "--database".into(), database.to_owned()];
        if command != "worker" {
            args.extend(["--listen".into(), address.to_string()]);
        }
        if let Some(config) = config {
            args.extend(["--config".into(), config.display().to_string()]);
        }
        let child = Command::new(binary)
            .args(&args)
            .envs(env.iter().map(|(name, value)| (name, value)))
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("hookrelay starts");
        Self { child, address }
    }

    pub fn baseline() -> Self {
        let address = free_address();
        let child = Command::new(std::env::current_exe().expect("own path"))
            .env(ROLE_VAR, "baseline")
            .env("HOOKRELAY_BENCH_LISTEN", address.to_string())
            .stdout(Stdio::null())
            .spawn()
            .expect("baseline starts");
        Self { child, address }
    }

    /// CPU time (user + system) the server has used so far, in seconds.
    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds(&format!("/proc/{}/stat", self.child.id()))
    }

    /// CPU time (user + system) of the server's threads named `name`, in seconds.
    pub fn thread_cpu_seconds(&self, name: &str) -> f64 {
        let tasks = format!("/proc/{}/task", self.child.id());
        std::fs::read_dir(&tasks)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|task| {
                std::fs::read_to_string(task.path().join("comm"))
                    .is_ok_and(|comm| comm.trim() == name)
            })
            .map(|task| cpu_seconds(&task.path().join("stat").display().to_string()))
            .sum()
    }

    pub fn rss_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("bench.db").display())
}

/// Creates or upgrades the schema and waits for it.
pub fn migrate(database: &str) {
    let status = Command::new(hookrelay_binary())
        .args(["migrate", "--database", database])
        .stdout(Stdio::null())
        .status()
        .expect("hookrelay migrate runs");
    assert!(status.success(), "migrate failed");
}

pub fn free_address() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
}

pub async fn wait_ready(address: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(address).await.is_err() {
        assert!(Instant::now() < deadline, "server did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A destination that answers 200 at once and notes when each event arrived.
pub struct Sink {
    pub address: SocketAddr,
    pub arrivals: Arc<std::sync::Mutex<Vec<(String, Instant)>>>,
}

pub async fn start_sink() -> Sink {
    use axum::Router;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;

    type Arrivals = Arc<std::sync::Mutex<Vec<(String, Instant)>>>;
    async fn receive(State(arrivals): State<Arrivals>, headers: HeaderMap) -> StatusCode {
        let id = headers
            .get("x-hookrelay-event-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        arrivals
            .lock()
            .expect("arrivals")
            .push((id, Instant::now()));
        StatusCode::OK
    }

    let arrivals: Arrivals = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let router = Router::new()
        .route("/hook", post(receive))
        .with_state(arrivals.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    Sink { address, arrivals }
}

pub fn sink_config(dir: &Path, sink: &Sink) -> std::path::PathBuf {
    let path = dir.join("hookrelay.toml");
    std::fs::write(
        &path,
        format!(
            "[sources.app]\ndestination = \"http://{}/hook\"\n",
            sink.address
        ),
    )
    .expect("config");
    path
}

/// The ceiling: the same HTTP stack and JSON parsing, no storage.
pub fn baseline_server() {
    use axum::Router;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;

    async fn accept(
        headers: HeaderMap,
        body: Bytes,
    ) -> (StatusCode, axum::Json<serde_json::Value>) {
        if serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_err()
            || !headers.contains_key("idempotency-key")
        {
            return (StatusCode::BAD_REQUEST, axum::Json(serde_json::json!({})));
        }
        let id = format!("evt_{}", uuid::Uuid::new_v4());
        (
            StatusCode::ACCEPTED,
            axum::Json(serde_json::json!({"event_id": id, "status": "accepted"})),
        )
    }

    let address = std::env::var("HOOKRELAY_BENCH_LISTEN").expect("listen address");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&address).await.expect("bind");
        let router = Router::new().route("/webhooks/{source}", post(accept));
        axum::serve(listener, router).await.expect("serve");
    });
}

/// utime + stime from a `/proc/…/stat` file, in seconds (clock ticks are 100/s on Linux).
pub fn cpu_seconds(stat_path: &str) -> f64 {
    let stat = std::fs::read_to_string(stat_path).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may contain spaces.
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the file: 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// The binary under test: this build's, or `BENCH_HOOKRELAY_BIN` to compare builds
/// (A/B runs in one session, where the machine's drift is smaller than between days).
pub fn hookrelay_binary() -> std::path::PathBuf {
    std::env::var_os("BENCH_HOOKRELAY_BIN")
        .map(Into::into)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_hookrelay").into())
}
