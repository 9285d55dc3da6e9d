//! Real brokers for the destination conformance suite, one set of names per test:
//! a Kafka-protocol broker (`tansu`) and an SQS endpoint (`moto`) started per test,
//! and this machine's RabbitMQ, NATS JetStream and Redis. hookrelay reaches each
//! through a [`Proxy`] the test can cut; what it published is read back with each
//! broker's own Python client (`tests/sdk/brokers.py`), not with hookrelay's code.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

use super::helpers::{eventually, free_port, run_sdk_script, sdk_python};
use super::proxy::Proxy;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Kafka,
    Sqs,
    Amqp,
    Nats,
    Redis,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kafka => "kafka",
            Self::Sqs => "sqs",
            Self::Amqp => "amqp",
            Self::Nats => "nats",
            Self::Redis => "redis",
        }
    }
}

/// One message as the broker's own client read it.
#[derive(Debug, Clone)]
pub struct Consumed {
    pub body: Vec<u8>,
    pub headers: Vec<(String, String)>,
    pub key: Option<String>,
    pub meta: Value,
    pub cloudevent: Option<Value>,
}

impl Consumed {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The event id hookrelay put on it.
    pub fn event_id(&self) -> String {
        self.header("hookrelay-event-id")
            .unwrap_or_else(|| panic!("no hookrelay-event-id in {:?}", self.headers))
            .to_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// A broker for one test, reached by hookrelay through a proxy.
pub struct TestBroker {
    pub kind: Kind,
    pub proxy: Proxy,
    /// The name every topic, queue, stream or subject of this test starts with.
    pub name: String,
    /// Where the test's consumer reaches the broker itself.
    direct: String,
    /// tansu or moto, stopped with the test.
    server: Option<Child>,
    /// Kafka: the broker's own listener, where topics are made.
    admin: Option<SocketAddr>,
}

/// moto takes any keys.
const SQS_KEYS: &str = "aws_access_key_id = \"test\"\naws_secret_access_key = \"test\"\n";
const KAFKA_PORT_WAIT: Duration = Duration::from_secs(20);

impl TestBroker {
    pub async fn start(kind: Kind) -> Self {
        let name = format!("hr{}", uuid::Uuid::new_v4().simple())[..14].to_owned();
        let (upstream, direct, server, proxy) = match kind {
            Kind::Kafka => {
                // The broker advertises the proxy, so that hookrelay's producer (and
                // the consumer) reach it through the proxy after the first metadata.
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let proxy_address = listener.local_addr().unwrap();
                let port = free_port();
                let child = Command::new(tansu())
                    .args([
                        "broker",
                        "--storage-engine",
                        "memory://tansu/",
                        "--listener-url",
                        &format!("tcp://127.0.0.1:{port}"),
                        "--advertised-listener-url",
                        &format!("tcp://{proxy_address}"),
                    ])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("tansu starts (scripts/test installs it)");
                let upstream: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
                wait_for_port(upstream, KAFKA_PORT_WAIT).await;
                let proxy = Proxy::on(listener, upstream);
                (
                    upstream,
                    proxy_address.to_string(),
                    Some(child),
                    Some(proxy),
                )
            }
            Kind::Sqs => {
                let port = free_port();
                let child = Command::new(sdk_python())
                    .args([
                        "-m",
                        "moto.server",
                        "-H",
                        "127.0.0.1",
                        "-p",
                        &port.to_string(),
                    ])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("moto starts (scripts/test installs it)");
                let upstream: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
                wait_for_port(upstream, Duration::from_secs(30)).await;
                (upstream, format!("http://{upstream}"), Some(child), None)
            }
            Kind::Amqp => {
                machine_service(5672, "RabbitMQ", "amqp://guest:guest@127.0.0.1:5672/%2f")
            }
            Kind::Nats => machine_service(4222, "NATS", "nats://127.0.0.1:4222"),
            Kind::Redis => machine_service(6379, "Redis", "redis://127.0.0.1:6379"),
        };
        let proxy = match proxy {
            Some(proxy) => proxy,
            None => Proxy::start(upstream).await,
        };
        Self {
            kind,
            proxy,
            name,
            direct,
            server,
            admin: (kind == Kind::Kafka).then_some(upstream),
        }
    }

    /// The `url` line and options of a destination publishing to this test's
    /// target `suffix` (a topic, queue, stream or subject is made for it first).
    pub async fn destination(&self, suffix: &str) -> String {
        let target = self.target(suffix);
        let proxy = self.proxy.address;
        match self.kind {
            Kind::Kafka => {
                let status = Command::new(tansu())
                    .args([
                        "topic",
                        "create",
                        &target,
                        "--broker",
                        &format!("tcp://{}", self.admin.unwrap()),
                    ])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .expect("tansu topic create runs");
                assert!(status.success(), "topic {target} created");
                format!("url = \"kafka://{proxy}/{target}\"\n")
            }
            Kind::Sqs => {
                self.run(json!({"op": "setup", "queue": target, "endpoint": self.direct}))
                    .await;
                format!("url = \"sqs+http://{proxy}/123456789012/{target}\"\n{SQS_KEYS}")
            }
            Kind::Amqp => {
                self.run(
                    json!({"op": "setup", "uri": self.direct, "exchange": target,
                                "queue": target, "binding": "#"}),
                )
                .await;
                format!(
                    "url = \"amqp://guest:guest@{proxy}/%2f\"\nexchange = \"{target}\"\n\
                     routing_key = \"{{source}}.{{event_type}}\"\n"
                )
            }
            Kind::Nats => {
                self.run(
                    json!({"op": "setup", "server": self.direct, "stream": target,
                                "subjects": format!("{target}.>")}),
                )
                .await;
                format!("url = \"nats://{proxy}/{target}.{{source}}\"\n")
            }
            Kind::Redis => format!("url = \"redis://{proxy}/{target}\"\n"),
        }
    }

    /// A destination that takes no message over 100 bytes (Kafka: the producer's
    /// `message.max.bytes`; NATS: the stream's `max_msg_size`).
    pub async fn small_destination(&self) -> String {
        let target = self.target("small");
        let proxy = self.proxy.address;
        match self.kind {
            Kind::Kafka => {
                let status = Command::new(tansu())
                    .args(["topic", "create", &target, "--broker"])
                    .arg(format!("tcp://{}", self.admin.unwrap()))
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .expect("tansu topic create runs");
                assert!(status.success());
                format!(
                    "url = \"kafka://{proxy}/{target}\"\nkafka = {{ \"message.max.bytes\" = \"1000\" }}\n"
                )
            }
            Kind::Nats => {
                self.run(
                    json!({"op": "setup", "server": self.direct, "stream": target,
                                "subjects": format!("{target}.>"), "max_msg_size": 100}),
                )
                .await;
                format!("url = \"nats://{proxy}/{target}.{{source}}\"\n")
            }
            other => panic!("{other:?} has no size limit to test here"),
        }
    }

    /// A destination whose topic, queue, exchange or stream does not exist (Redis: a
    /// key that holds a string, not a stream).
    pub async fn missing_destination(&self) -> String {
        let target = self.target("missing");
        let proxy = self.proxy.address;
        match self.kind {
            Kind::Kafka => format!("url = \"kafka://{proxy}/{target}\"\n"),
            Kind::Sqs => format!("url = \"sqs+http://{proxy}/123456789012/{target}\"\n{SQS_KEYS}"),
            Kind::Amqp => format!(
                "url = \"amqp://guest:guest@{proxy}/%2f\"\nexchange = \"{target}\"\n\
                 routing_key = \"x\"\n"
            ),
            Kind::Nats => format!("url = \"nats://{proxy}/{target}\"\n"),
            Kind::Redis => {
                let status = Command::new("redis-cli")
                    .args(["-p", "6379", "SET", &target, "not a stream"])
                    .stdout(Stdio::null())
                    .status()
                    .expect("redis-cli runs");
                assert!(status.success());
                format!("url = \"redis://{proxy}/{target}\"\n")
            }
        }
    }

    /// Reads `count` messages published to `suffix`'s target (all there are, for
    /// Redis), waiting up to `within`.
    pub async fn consume(&self, suffix: &str, count: usize, within: Duration) -> Vec<Consumed> {
        self.consume_with(suffix, json!({"count": count}), within)
            .await
    }

    /// Reads until `count` distinct events arrived (some may have come twice).
    pub async fn consume_distinct(
        &self,
        suffix: &str,
        count: usize,
        within: Duration,
    ) -> Vec<Consumed> {
        self.consume_with(suffix, json!({"count": count, "distinct": true}), within)
            .await
    }

    /// As [`consume`](Self::consume), each parsed by the CloudEvents SDK too (Kafka).
    pub async fn consume_cloudevents(&self, suffix: &str, count: usize) -> Vec<Consumed> {
        let request = json!({"count": count, "cloudevents": true});
        self.consume_with(suffix, request, Duration::from_secs(20))
            .await
    }

    async fn consume_with(
        &self,
        suffix: &str,
        mut request: Value,
        within: Duration,
    ) -> Vec<Consumed> {
        let target = self.target(suffix);
        request["op"] = "consume".into();
        request["timeout"] = within.as_secs_f64().into();
        let fields = match self.kind {
            Kind::Kafka => json!({"bootstrap": self.direct, "topic": target}),
            Kind::Sqs => json!({"endpoint": self.direct, "queue": target}),
            Kind::Amqp => json!({"uri": self.direct, "queue": target}),
            Kind::Nats => json!({"server": self.direct, "stream": target}),
            Kind::Redis => json!({"server": self.direct, "stream": target}),
        };
        for (k, v) in fields.as_object().unwrap() {
            request[k] = v.clone();
        }
        let found = self.run(request).await;
        found
            .as_array()
            .expect("a list of messages")
            .iter()
            .map(|m| Consumed {
                body: base64::engine::general_purpose::STANDARD
                    .decode(m["body"].as_str().unwrap())
                    .unwrap(),
                headers: m["headers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|pair| {
                        (
                            pair[0].as_str().unwrap().to_owned(),
                            pair[1].as_str().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect(),
                key: m["key"].as_str().map(str::to_owned),
                meta: m["meta"].clone(),
                cloudevent: m.get("cloudevent").cloned(),
            })
            .collect()
    }

    /// This test's name for `suffix`: FIFO queues end in `.fifo` as SQS wants.
    pub fn target(&self, suffix: &str) -> String {
        match (self.kind, suffix.strip_suffix(".fifo")) {
            (Kind::Sqs, Some(base)) => format!("{}-{base}.fifo", self.name),
            (Kind::Sqs, None) => format!("{}-{suffix}", self.name),
            _ => format!("{}.{suffix}", self.name).replace('.', "_"),
        }
    }

    async fn run(&self, mut request: Value) -> Value {
        request["kind"] = self.kind.as_str().into();
        let (ok, output) =
            tokio::task::spawn_blocking(move || run_sdk_script("brokers.py", &request))
                .await
                .unwrap();
        assert!(ok, "tests/sdk/brokers.py failed: {output}");
        serde_json::from_str(output.lines().last().unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}: {output}"))
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.kill();
            let _ = server.wait();
        }
    }
}

/// A broker this machine runs, checked to be up (scripts/test starts them).
fn machine_service(
    port: u16,
    name: &str,
    direct: &str,
) -> (SocketAddr, String, Option<Child>, Option<Proxy>) {
    let address: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert!(
        std::net::TcpStream::connect_timeout(&address, Duration::from_secs(2)).is_ok(),
        "{name} is not answering on {address}: run the suite with scripts/test, which starts it"
    );
    (address, direct.to_owned(), None, None)
}

async fn wait_for_port(address: SocketAddr, within: Duration) {
    eventually(within, "broker port", || async move {
        tokio::net::TcpStream::connect(address)
            .await
            .ok()
            .map(|_| ())
    })
    .await;
}

/// tansu, a Kafka-protocol broker: `HOOKRELAY_TEST_TANSU`, or where scripts/test
/// installs it.
fn tansu() -> PathBuf {
    if let Some(path) = std::env::var_os("HOOKRELAY_TEST_TANSU") {
        return PathBuf::from(path);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let path = home.join(".cache/hookrelay-tools/tansu-0.6.0/bin/tansu");
    assert!(
        path.exists(),
        "{} is missing: run the suite with scripts/test, which installs it",
        path.display()
    );
    path
}
