//! Test harness: the real app on port 0 with its own SQLite file, or the real binary
//! as a child process, and waits bounded by deadlines.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hookrelay::app::{Application, Role};
use hookrelay::config::{Config, Overrides};

pub use crate::support::database::{Backend, TestDatabase};
use serde_json::Value;
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Settings every test starts from: time compressed, no jitter unless asked for.
pub const FAST: &[(&str, &str)] = &[
    ("HOOKRELAY_RETRY_BASE_DELAY", "20ms"),
    ("HOOKRELAY_RETRY_FACTOR", "2"),
    ("HOOKRELAY_RETRY_JITTER", "0"),
    ("HOOKRELAY_LEASE", "2s"),
    ("HOOKRELAY_POLL_INTERVAL", "200ms"),
];

pub struct TestApp {
    pub address: SocketAddr,
    pub client: reqwest::Client,
    pub dir: TempDir,
    pub database: TestDatabase,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
}

/// What is left of a stopped app: its files and its database.
pub struct Stopped {
    /// Holds the SQLite file (and the config) until the test is done.
    pub _dir: TempDir,
    pub database: TestDatabase,
}

/// A change to the loaded config.
type Adjust<'a> = Box<dyn FnOnce(&mut Config) + 'a>;

/// How a test's app is made: `TestApp::on(backend)`, then what it needs, then
/// `.spawn()`.
pub struct TestAppBuilder<'a> {
    backend: Backend,
    toml: Option<&'a str>,
    settings: &'a [(&'a str, &'a str)],
    adjust: Option<Adjust<'a>>,
}

impl<'a> TestAppBuilder<'a> {
    /// A config file holding `toml` (sources and the like).
    pub fn config(mut self, toml: &'a str) -> Self {
        self.toml = Some(toml);
        self
    }

    /// `HOOKRELAY_*` variables layered over [`FAST`].
    pub fn settings(mut self, settings: &'a [(&'a str, &'a str)]) -> Self {
        self.settings = settings;
        self
    }

    /// Changes the config after it was loaded (e.g. another address).
    pub fn adjust(mut self, adjust: impl FnOnce(&mut Config) + 'a) -> Self {
        self.adjust = Some(Box::new(adjust));
        self
    }

    /// A fresh database, then the app serving on a free port.
    pub async fn spawn(self) -> TestApp {
        let dir = tempfile::tempdir().expect("temp dir");
        let database = TestDatabase::create(self.backend, dir.path()).await;
        let config_file = self.toml.map(|text| {
            let path = dir.path().join("hookrelay.toml");
            std::fs::write(&path, text).expect("config file");
            path
        });
        let mut config = test_config(&database.url, config_file, self.settings);
        if let Some(adjust) = self.adjust {
            adjust(&mut config);
        }
        TestApp::start(dir, database, config).await
    }
}

impl TestApp {
    pub fn on<'a>(backend: Backend) -> TestAppBuilder<'a> {
        TestAppBuilder {
            backend,
            toml: None,
            settings: &[],
            adjust: None,
        }
    }

    /// Starts again on what a stopped app left, with the same settings.
    pub async fn restart(stopped: Stopped, settings: &[(&str, &str)]) -> Self {
        let config = test_config(&stopped.database.url, None, settings);
        Self::start(stopped._dir, stopped.database, config).await
    }

    async fn start(dir: TempDir, database: TestDatabase, config: Config) -> Self {
        let app = Application::build(config, Role::Serve)
            .await
            .expect("app builds");
        let address = app.local_addr().expect("bound");
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let task = tokio::spawn(async move {
            app.run(token).await.expect("app runs");
        });
        Self {
            address,
            client: client(),
            dir,
            database,
            shutdown,
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub async fn post(&self, source: &str, key: Option<&str>, body: &Value) -> reqwest::Response {
        post_json(&self.client, self.address, source, key, body).await
    }

    /// Posts a webhook that must be accepted; returns its event id.
    pub async fn accept(&self, source: &str, key: &str, body: Value) -> String {
        let response = self.post(source, Some(key), &body).await;
        assert_eq!(response.status(), 202, "{source}/{key} not accepted");
        response.json::<Value>().await.expect("receipt")["event_id"]
            .as_str()
            .expect("event id")
            .to_owned()
    }

    pub async fn event(&self, id: &str) -> Value {
        get_json(&self.client, self.address, &format!("/events/{id}")).await
    }

    pub async fn wait_for_status(&self, id: &str, status: &str, within: Duration) -> Value {
        wait_for_status(&self.client, self.address, id, status, within).await
    }

    /// Stops the app the way SIGTERM would and waits for it to finish.
    pub async fn stop(mut self) -> Stopped {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await.expect("app task");
        }
        // Fields cannot move out of a type with Drop; swap in placeholders.
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"));
        let placeholder = TestDatabase::create(Backend::Sqlite, self.dir.path()).await;
        let database = std::mem::replace(&mut self.database, placeholder);
        Stopped {
            _dir: dir,
            database,
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub fn test_config(
    database: &str,
    config_file: Option<PathBuf>,
    settings: &[(&str, &str)],
) -> Config {
    let mut env: HashMap<String, String> = FAST
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    env.extend(settings.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let overrides = Overrides {
        database: Some(database.to_owned()),
        listen: Some("127.0.0.1:0".into()),
        config_file,
        ..Overrides::default()
    };
    Config::load_from(&overrides, |name| env.get(name).cloned()).expect("valid test config")
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

pub async fn post_json(
    client: &reqwest::Client,
    address: SocketAddr,
    source: &str,
    key: Option<&str>,
    body: &Value,
) -> reqwest::Response {
    let mut request = client
        .post(format!("http://{address}/webhooks/{source}"))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    request.send().await.expect("request sent")
}

/// The body of `GET url` as text.
pub async fn get_text(client: &reqwest::Client, url: &str) -> String {
    client
        .get(url)
        .send()
        .await
        .expect("request sent")
        .text()
        .await
        .expect("a text body")
}

pub async fn get_json(client: &reqwest::Client, address: SocketAddr, path: &str) -> Value {
    client
        .get(format!("http://{address}{path}"))
        .send()
        .await
        .expect("request sent")
        .json()
        .await
        .expect("JSON body")
}

/// Polls until `check` yields a value or the deadline passes.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn wait_for_status(
    client: &reqwest::Client,
    address: SocketAddr,
    id: &str,
    status: &str,
    within: Duration,
) -> Value {
    let mut last = Value::Null;
    let deadline = Instant::now() + within;
    loop {
        if let Ok(response) = client
            .get(format!("http://{address}/events/{id}"))
            .send()
            .await
            && let Ok(event) = response.json::<Value>().await
        {
            if event["status"] == status {
                return event;
            }
            last = event;
        }
        assert!(
            Instant::now() < deadline,
            "event {id} did not reach {status} within {within:?}; last seen: {last}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn assert_error(body: &Value, code: &str) {
    assert_eq!(body["error"]["code"], code, "unexpected body: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "error without a message: {body}"
    );
    assert_eq!(
        body.as_object().map(|o| o.len()),
        Some(1),
        "extra fields: {body}"
    );
}

/// The real `hookrelay` binary as a child process, its stdout kept in a file.
pub struct Process {
    pub child: Child,
    pub stdout: PathBuf,
}

impl Process {
    pub fn start(args: &[&str], dir: &Path, env: &[(&str, &str)], log_name: &str) -> Self {
        let stdout_path = dir.join(log_name);
        let stdout = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&stdout_path)
            .expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_hookrelay"));
        command
            .args(args)
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(FAST.iter().copied())
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::inherit());
        Self {
            child: command.spawn().expect("hookrelay starts"),
            stdout: stdout_path,
        }
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the exit code, failing the test if the process hangs.
    pub async fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        eventually(within, "process exit", || {
            let status = self.child.try_wait().expect("try_wait");
            async move { status }
        })
        .await
    }

    pub fn log_lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.stdout)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A free loopback port (bound and released; good enough for one test).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

pub async fn wait_healthy(client: &reqwest::Client, address: SocketAddr) {
    eventually(Duration::from_secs(30), "health", || async {
        client
            .get(format!("http://{address}/health"))
            .send()
            .await
            .ok()
            .filter(|r| r.status().is_success())
            .map(|_| ())
    })
    .await
}

/// The Python that has the providers' libraries and schemathesis
/// (`tests/sdk/requirements.txt`); `scripts/test` makes it.
pub fn sdk_python() -> PathBuf {
    let python = std::env::var_os("HOOKRELAY_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-python/bin/python")
        });
    assert!(
        python.exists(),
        "{} is missing: run the suite with scripts/test, which installs the providers' \
         libraries from tests/sdk/requirements.txt",
        python.display()
    );
    python
}

/// Runs `tests/sdk/<script>` with `input` on stdin; returns its exit success and output.
pub fn run_sdk_script(script: &str, input: &Value) -> (bool, String) {
    use std::io::Write as _;
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sdk")
        .join(script);
    let mut child = Command::new(sdk_python())
        .arg(path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.to_string().as_bytes())
        .expect("input written");
    let output = child.wait_with_output().expect("python finishes");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}
