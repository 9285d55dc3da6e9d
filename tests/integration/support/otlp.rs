//! A real OTLP/HTTP receiver (`tests/sdk/otlp_receiver.py`, which decodes with the
//! official `opentelemetry-proto` package) and what the tests read from it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::helpers::{client, eventually, sdk_python};

pub struct OtlpReceiver {
    child: Child,
    pub port: u16,
    /// Where it takes OTLP over gRPC, when started with [`OtlpReceiver::grpc`].
    pub grpc_port: Option<u16>,
}

impl OtlpReceiver {
    pub fn start() -> Self {
        Self::with_args(&[])
    }

    /// One that takes `delay` to answer each export: a slow collector.
    pub fn slow(delay: Duration) -> Self {
        Self::with_args(&["--delay", &delay.as_secs_f64().to_string()])
    }

    /// One that takes OTLP over gRPC too.
    pub fn grpc() -> Self {
        Self::with_args(&["--grpc"])
    }

    fn with_args(args: &[&str]) -> Self {
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/otlp_receiver.py");
        let mut child = Command::new(sdk_python())
            .arg(script)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the OTLP receiver starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("the receiver prints its port");
        let mut ports = line.split_whitespace().map(|p| p.parse().expect("a port"));
        let port = ports.next().expect("the HTTP port");
        Self {
            child,
            port,
            grpc_port: ports.next(),
        }
    }

    /// The base URL, as `OTEL_EXPORTER_OTLP_ENDPOINT` takes it.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub async fn spans(&self) -> Vec<Value> {
        client()
            .get(format!("http://127.0.0.1:{}/spans", self.port))
            .send()
            .await
            .expect("the receiver answers")
            .json()
            .await
            .expect("spans as JSON")
    }

    /// Waits until `check` finds what it looks for in the spans received.
    pub async fn wait_for<T>(
        &self,
        what: &str,
        within: Duration,
        check: impl Fn(&[Value]) -> Option<T>,
    ) -> T {
        let check = &check;
        eventually(within, what, || async move { check(&self.spans().await) }).await
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The spans named `name`.
pub fn named<'a>(spans: &'a [Value], name: &str) -> Vec<&'a Value> {
    spans.iter().filter(|s| s["name"] == name).collect()
}

/// The `traceparent` parts: trace id, parent span id, flags.
pub fn traceparent(value: &str) -> (String, String, String) {
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "a W3C traceparent: {value}");
    assert_eq!(parts[0], "00", "version 00: {value}");
    (parts[1].into(), parts[2].into(), parts[3].into())
}
