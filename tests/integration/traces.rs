//! Traces over OTLP, read back by a real receiver that decodes them with the official
//! `opentelemetry-proto` package: one trace from the sender through every attempt
//! into the application, across processes and restarts, on both backends.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::brokers::{Kind, TestBroker};
use crate::support::helpers::*;
use crate::support::otlp::{OtlpReceiver, named, traceparent};
use crate::support::receiver::{Answer, Receiver};
use crate::support::setup::Setup;

const WITHIN: Duration = Duration::from_secs(30);
const SENDER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SENDER_SPAN: &str = "00f067aa0ba902b7";
const INGEST: &str = "POST /webhooks/{source}";

/// Exports every 50 ms, so that the tests need not wait for the default 5 s.
fn traced(otlp: &OtlpReceiver, service: &str) -> Vec<(&'static str, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.endpoint()),
        ("OTEL_BSP_SCHEDULE_DELAY", "50".into()),
        ("OTEL_SERVICE_NAME", service.into()),
    ]
}

fn as_env<'a>(vars: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    vars.iter().map(|(n, v)| (*n, v.as_str())).collect()
}

fn write_config(setup: &Setup, toml: &str) -> String {
    let path = setup.path().join("hookrelay.toml");
    std::fs::write(&path, toml).unwrap();
    path.display().to_string()
}

async fn send(address: SocketAddr, key: &str, traceparent: Option<&str>) -> String {
    let mut request = client()
        .post(format!("http://{address}/webhooks/shop"))
        .header("content-type", "application/json")
        .header("idempotency-key", key)
        .body(r#"{"type":"order.created","id":1}"#);
    if let Some(parent) = traceparent {
        request = request
            .header("traceparent", parent)
            .header("tracestate", "vendor=abc");
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 202);
    response.json::<Value>().await.unwrap()["event_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn sender_traceparent() -> String {
    format!("00-{SENDER_TRACE}-{SENDER_SPAN}-01")
}

fn attribute<'a>(span: &'a Value, name: &str) -> &'a Value {
    &span["attributes"][name]
}

fn header(request: &crate::support::receiver::Received, name: &str) -> Option<String> {
    request
        .headers
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

/// A trusted sender's trace continues through ingest (routing and the commit) and every
/// attempt, failed and retried ones included; each delivery carries a traceparent
/// whose parent is its own attempt's span, except to a destination outside the trace.
async fn one_trace_from_the_sender_through_every_attempt(backend: Backend) {
    let setup = Setup::new(backend).await;
    let otlp = OtlpReceiver::start();
    let orders = Receiver::start(vec![Answer::status(500)]).await;
    let audit = Receiver::start(vec![]).await;
    let config = write_config(
        &setup,
        &format!(
            "[destinations.orders]\nurl = \"{}\"\n\n\
             [destinations.audit]\nurl = \"{}\"\npropagate_trace = false\n\n\
             [sources.shop]\ntrust_trace_context = true\n\
             [[sources.shop.routes]]\ndestination = \"orders\"\n\
             [[sources.shop.routes]]\ndestination = \"audit\"\n",
            orders.url(),
            audit.url()
        ),
    );
    let env = traced(&otlp, "hookrelay");
    let (process, address) =
        setup.start("serve", &as_env(&env), &["--config", &config], "serve.log");
    let address = address.unwrap();
    wait_healthy(&client(), address).await;

    let id = send(address, "k1", Some(&sender_traceparent())).await;
    wait_for_status(&client(), address, &id, "delivered", WITHIN).await;
    let spans = otlp
        .wait_for("the ingest span and three attempts", WITHIN, |spans| {
            (named(spans, INGEST).len() == 1 && named(spans, "POST").len() == 3)
                .then(|| spans.to_vec())
        })
        .await;

    let ingest = named(&spans, INGEST)[0];
    assert_eq!(ingest["kind"], "SPAN_KIND_SERVER");
    assert_eq!(
        ingest["trace_id"], SENDER_TRACE,
        "the sender's trace continues"
    );
    assert_eq!(ingest["parent_span_id"], SENDER_SPAN);
    assert_eq!(ingest["service"], "hookrelay");
    assert_eq!(attribute(ingest, "hookrelay.outcome"), "stored");
    assert_eq!(attribute(ingest, "hookrelay.event_id"), id.as_str());
    assert_eq!(attribute(ingest, "hookrelay.source"), "shop");
    assert_eq!(attribute(ingest, "http.route"), "/webhooks/{source}");
    assert_eq!(attribute(ingest, "http.response.status_code"), 202);
    let ingest_id = ingest["span_id"].as_str().unwrap();
    assert_eq!(
        attribute(ingest, "hookrelay.deliveries"),
        2,
        "routed to both"
    );
    let commit_ms = attribute(ingest, "hookrelay.commit_ms").as_f64().unwrap();
    assert!(
        commit_ms > 0.0,
        "how long the durable insert took: {ingest}"
    );

    let attempts = named(&spans, "POST");
    for attempt in &attempts {
        assert_eq!(attempt["kind"], "SPAN_KIND_CLIENT");
        assert_eq!(attempt["trace_id"], SENDER_TRACE);
        assert_eq!(
            attempt["parent_span_id"], ingest_id,
            "each attempt is a child of ingest"
        );
        assert_eq!(attribute(attempt, "event_id"), id.as_str());
    }
    let to_orders: Vec<&&Value> = attempts
        .iter()
        .filter(|s| attribute(s, "destination") == "orders")
        .collect();
    assert_eq!(to_orders.len(), 2);
    let failed = to_orders
        .iter()
        .find(|s| attribute(s, "hookrelay.attempt") == 1)
        .unwrap();
    assert_eq!(failed["status"]["code"], "STATUS_CODE_ERROR");
    assert_eq!(attribute(failed, "error.type"), "500");
    assert_eq!(attribute(failed, "http.response.status_code"), 500);
    let retried = to_orders
        .iter()
        .find(|s| attribute(s, "hookrelay.attempt") == 2)
        .unwrap();
    assert_eq!(attribute(retried, "http.request.resend_count"), 1);
    assert_eq!(attribute(retried, "http.response.status_code"), 200);
    assert_ne!(retried["status"]["code"], "STATUS_CODE_ERROR");
    for record in named(&spans, "record outcome") {
        assert!(
            attempts
                .iter()
                .any(|a| a["span_id"] == record["parent_span_id"]),
            "each outcome is recorded inside its attempt: {record}"
        );
    }

    // The application joins the trace under the attempt that reached it.
    let received = orders.received();
    assert_eq!(received.len(), 2);
    for (request, span) in received.iter().zip([failed, retried]) {
        let (trace, parent, flags) = traceparent(&header(request, "traceparent").unwrap());
        assert_eq!(trace, SENDER_TRACE);
        assert_eq!(parent, span["span_id"].as_str().unwrap());
        assert_eq!(flags, "01");
        assert_eq!(header(request, "tracestate").as_deref(), Some("vendor=abc"));
    }
    let outside = audit.received();
    assert_eq!(outside.len(), 1);
    assert_eq!(
        header(&outside[0], "traceparent"),
        None,
        "propagate_trace = false"
    );
    assert_eq!(header(&outside[0], "tracestate"), None);

    let event = get_json(&client(), address, &format!("/events/{id}")).await;
    assert_eq!(event["trace_id"], SENDER_TRACE);
    // Log lines inside a span carry its ids.
    let lines = process.log_lines();
    let accepted = lines.iter().find(|l| l.contains("Event accepted")).unwrap();
    let accepted: Value = serde_json::from_str(accepted).unwrap();
    assert_eq!(accepted["context"]["trace_id"], SENDER_TRACE);
    assert_eq!(accepted["context"]["span_id"], ingest_id);
    let retry = lines
        .iter()
        .find(|l| l.contains("retry scheduled"))
        .unwrap();
    let retry: Value = serde_json::from_str(retry).unwrap();
    assert_eq!(retry["context"]["span_id"], failed["span_id"]);
}

/// A sender that is not trusted cannot choose the trace: ingest starts a new one and
/// links the sender's; the dashboard links the trace where `trace_url` says.
async fn an_untrusted_sender_is_linked_and_a_new_trace_begins(backend: Backend) {
    let setup = Setup::new(backend).await;
    let otlp = OtlpReceiver::start();
    let app = Receiver::start(vec![]).await;
    let config = write_config(
        &setup,
        &format!(
            "[telemetry]\ntrace_url = \"https://traces.example/trace/{{trace_id}}\"\n\n\
             [sources.shop]\ndestination = \"{}\"\n",
            app.url()
        ),
    );
    let env = traced(&otlp, "hookrelay");
    let (_process, address) =
        setup.start("serve", &as_env(&env), &["--config", &config], "serve.log");
    let address = address.unwrap();
    wait_healthy(&client(), address).await;
    let id = send(address, "k1", Some(&sender_traceparent())).await;
    wait_for_status(&client(), address, &id, "delivered", WITHIN).await;
    let spans = otlp
        .wait_for("ingest and the attempt", WITHIN, |spans| {
            (named(spans, INGEST).len() == 1 && named(spans, "POST").len() == 1)
                .then(|| spans.to_vec())
        })
        .await;
    let ingest = named(&spans, INGEST)[0];
    let trace = ingest["trace_id"].as_str().unwrap();
    assert_ne!(trace, SENDER_TRACE, "a new trace");
    assert_eq!(ingest["parent_span_id"], "", "a root span");
    assert_eq!(
        ingest["links"][0],
        serde_json::json!({"trace_id": SENDER_TRACE, "span_id": SENDER_SPAN})
    );
    let attempt = named(&spans, "POST")[0];
    assert_eq!(attempt["trace_id"], trace);
    let (carried, parent, _) = traceparent(&header(&app.received()[0], "traceparent").unwrap());
    assert_eq!(
        carried, trace,
        "the application joins hookrelay's trace, not the sender's"
    );
    assert_eq!(parent, attempt["span_id"].as_str().unwrap());

    let page = get_text(&client(), &format!("http://{address}/ui/events/{id}")).await;
    assert!(
        page.contains(&format!("href=\"https://traces.example/trace/{trace}\"")),
        "the event page links its trace: {page}"
    );
}

/// An `api` process takes the webhook, one worker fails it and stops, another
/// retries it: three processes, one trace.
async fn api_and_worker_processes_keep_one_trace_across_a_restart(backend: Backend) {
    let setup = Setup::new(backend).await;
    let otlp = OtlpReceiver::start();
    let app = Receiver::start(vec![Answer::status(503)]).await;
    let config = write_config(
        &setup,
        &format!(
            "[destinations.orders]\nurl = \"{}\"\nretry_base_delay = \"2s\"\n\n\
             [sources.shop]\n[[sources.shop.routes]]\ndestination = \"orders\"\n",
            app.url()
        ),
    );
    let extra = ["--config", config.as_str()];
    let api_env = traced(&otlp, "hookrelay-api");
    let (_api, address) = setup.start("api", &as_env(&api_env), &extra, "api.log");
    let address = address.unwrap();
    wait_healthy(&client(), address).await;
    let first_env = traced(&otlp, "hookrelay-worker-1");
    let (mut first, _) = setup.start("worker", &as_env(&first_env), &extra, "worker-1.log");
    let id = send(address, "k1", None).await;
    eventually(WITHIN, "the first attempt", || async {
        (app.received().len() == 1).then_some(())
    })
    .await;
    // A graceful stop: the worker exports the spans it still holds.
    first.signal("TERM");
    first.wait_exit(WITHIN).await;
    let second_env = traced(&otlp, "hookrelay-worker-2");
    let (_second, _) = setup.start("worker", &as_env(&second_env), &extra, "worker-2.log");
    wait_for_status(&client(), address, &id, "delivered", WITHIN).await;

    let spans = otlp
        .wait_for("ingest and both attempts", WITHIN, |spans| {
            (named(spans, INGEST).len() == 1 && named(spans, "POST").len() == 2)
                .then(|| spans.to_vec())
        })
        .await;
    let ingest = named(&spans, INGEST)[0];
    assert_eq!(ingest["service"], "hookrelay-api");
    let mut attempts = named(&spans, "POST");
    attempts.sort_by_key(|s| s["attributes"]["hookrelay.attempt"].as_i64());
    assert_eq!(attempts[0]["service"], "hookrelay-worker-1");
    assert_eq!(attempts[1]["service"], "hookrelay-worker-2");
    for attempt in attempts {
        assert_eq!(attempt["trace_id"], ingest["trace_id"]);
        assert_eq!(attempt["parent_span_id"], ingest["span_id"]);
    }
    let received = app.received();
    let (trace, _, _) = traceparent(&header(&received[1], "traceparent").unwrap());
    assert_eq!(trace, ingest["trace_id"].as_str().unwrap());
}

/// Sampled at 0: nothing is exported, and deliveries still carry a traceparent that
/// says "not sampled", so the application does not start its own sampled trace.
async fn sampling_off_exports_nothing(backend: Backend) {
    let setup = Setup::new(backend).await;
    let otlp = OtlpReceiver::start();
    let app = Receiver::start(vec![]).await;
    let config = write_config(
        &setup,
        &format!("[sources.shop]\ndestination = \"{}\"\n", app.url()),
    );
    let mut env = traced(&otlp, "hookrelay");
    env.push(("OTEL_TRACES_SAMPLER", "traceidratio".into()));
    env.push(("OTEL_TRACES_SAMPLER_ARG", "0".into()));
    let (mut process, address) =
        setup.start("serve", &as_env(&env), &["--config", &config], "serve.log");
    let address = address.unwrap();
    wait_healthy(&client(), address).await;
    let id = send(address, "k1", None).await;
    wait_for_status(&client(), address, &id, "delivered", WITHIN).await;
    let (_, _, flags) = traceparent(&header(&app.received()[0], "traceparent").unwrap());
    assert_eq!(flags, "00", "not sampled");
    process.signal("TERM");
    process.wait_exit(WITHIN).await;
    assert_eq!(otlp.spans().await, Vec::<Value>::new());
}

/// A collector that is down, or one so slow that the export queue fills: webhooks are
/// answered and delivered at their usual pace, and the lost spans are counted.
async fn a_collector_down_or_slow_never_holds_up_webhooks(backend: Backend) {
    let slow = OtlpReceiver::slow(Duration::from_secs(20));
    let down = crate::support::receiver::closed_port_url().replace("/hook", "");
    for (collector, counted) in [(down, "failed"), (slow.endpoint(), "dropped")] {
        let setup = Setup::new(backend).await;
        let app = Receiver::start(vec![]).await;
        let config = write_config(
            &setup,
            &format!("[sources.shop]\ndestination = \"{}\"\n", app.url()),
        );
        let env = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "20"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "16"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "4"),
            ("OTEL_BSP_EXPORT_TIMEOUT", "30000"),
        ];
        let (_process, address) = setup.start("serve", &env, &["--config", &config], "serve.log");
        let address = address.unwrap();
        wait_healthy(&client(), address).await;
        let mut slowest = Duration::ZERO;
        let mut ids = Vec::new();
        for n in 0..60 {
            let started = Instant::now();
            ids.push(send(address, &format!("k{n}"), None).await);
            slowest = slowest.max(started.elapsed());
        }
        assert!(
            slowest < Duration::from_secs(2),
            "{counted}: the slowest webhook took {slowest:?}"
        );
        for id in &ids {
            wait_for_status(&client(), address, id, "delivered", WITHIN).await;
        }
        let metric = format!("hookrelay_trace_spans_total{{outcome=\"{counted}\"}} ");
        eventually(WITHIN, &metric, || async {
            let text = get_text(&client(), &format!("http://{address}/metrics")).await;
            text.lines()
                .find_map(|line| line.strip_prefix(&metric))
                .and_then(|n| n.trim().parse::<u64>().ok())
                .filter(|n| *n > 0)
        })
        .await;
    }
}

/// A broker destination gets a producer span, and the message a traceparent whose
/// parent is that span (Redis Streams here; every kind shares the path).
async fn a_broker_message_carries_its_producer_span(backend: Backend) {
    let broker = TestBroker::start(Kind::Redis).await;
    let destination = broker.destination("events").await;
    let setup = Setup::new(backend).await;
    let otlp = OtlpReceiver::start();
    let config = write_config(
        &setup,
        &format!(
            "[destinations.bus]\n{destination}\n\
             [sources.shop]\n[[sources.shop.routes]]\ndestination = \"bus\"\n"
        ),
    );
    let env = traced(&otlp, "hookrelay");
    let (_process, address) =
        setup.start("serve", &as_env(&env), &["--config", &config], "serve.log");
    let address = address.unwrap();
    wait_healthy(&client(), address).await;
    let id = send(address, "k1", None).await;
    wait_for_status(&client(), address, &id, "delivered", WITHIN).await;
    let spans = otlp
        .wait_for("the producer span", WITHIN, |spans| {
            (named(spans, "send bus").len() == 1).then(|| spans.to_vec())
        })
        .await;
    let producer = named(&spans, "send bus")[0];
    assert_eq!(producer["kind"], "SPAN_KIND_PRODUCER");
    assert_eq!(attribute(producer, "messaging.system"), "redis");
    assert_eq!(attribute(producer, "messaging.operation.type"), "send");
    assert_eq!(attribute(producer, "messaging.message.id"), id.as_str());
    assert!(
        attribute(producer, "messaging.destination.name")
            .as_str()
            .unwrap()
            .ends_with("events"),
        "{producer}"
    );
    let consumed = broker.consume("events", 1, WITHIN).await;
    let (trace, parent, _) = traceparent(consumed[0].header("traceparent").unwrap());
    assert_eq!(trace, producer["trace_id"].as_str().unwrap());
    assert_eq!(parent, producer["span_id"].as_str().unwrap());
}

/// OTLP over gRPC (`OTEL_EXPORTER_OTLP_PROTOCOL=grpc`) carries the same spans.
async fn traces_go_over_grpc_too(backend: Backend) {
    let setup = Setup::new(backend).await;
    let otlp = OtlpReceiver::grpc();
    let app = Receiver::start(vec![]).await;
    let config = write_config(
        &setup,
        &format!("[sources.shop]\ndestination = \"{}\"\n", app.url()),
    );
    let endpoint = format!("http://127.0.0.1:{}", otlp.grpc_port.unwrap());
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_BSP_SCHEDULE_DELAY", "50"),
    ];
    let (_process, address) = setup.start("serve", &env, &["--config", &config], "serve.log");
    let address = address.unwrap();
    wait_healthy(&client(), address).await;
    let id = send(address, "k1", None).await;
    wait_for_status(&client(), address, &id, "delivered", WITHIN).await;
    let spans = otlp
        .wait_for("ingest and the attempt over gRPC", WITHIN, |spans| {
            (named(spans, INGEST).len() == 1 && named(spans, "POST").len() == 1)
                .then(|| spans.to_vec())
        })
        .await;
    let ingest = named(&spans, INGEST)[0];
    assert_eq!(attribute(ingest, "hookrelay.event_id"), id.as_str());
    assert_eq!(
        named(&spans, "POST")[0]["parent_span_id"],
        ingest["span_id"]
    );
}

/// An alert's send is a client span of its own.
async fn an_alert_send_is_a_span(backend: Backend) {
    let setup = Setup::new(backend).await;
    let otlp = OtlpReceiver::start();
    let alerts = Receiver::start(vec![]).await;
    let strict = Receiver::answering(Vec::new(), || Answer::status(410)).await;
    let config = write_config(
        &setup,
        &format!(
            "[destinations.strict]\nurl = \"{}\"\n\
             [sources.shop]\n[[sources.shop.routes]]\ndestination = \"strict\"\n\
             [alerts]\nurl = \"{}\"\nformat = \"json\"\ndigest = \"300ms\"\n",
            strict.url(),
            alerts.url()
        ),
    );
    let env = traced(&otlp, "hookrelay");
    let (_process, address) =
        setup.start("serve", &as_env(&env), &["--config", &config], "serve.log");
    let address = address.unwrap();
    wait_healthy(&client(), address).await;
    let id = send(address, "k1", None).await;
    wait_for_status(&client(), address, &id, "dead_lettered", WITHIN).await;
    let spans = otlp
        .wait_for("the alert's span", WITHIN, |spans| {
            (named(spans, "send alert").len() == 1).then(|| spans.to_vec())
        })
        .await;
    let span = named(&spans, "send alert")[0];
    assert_eq!(span["kind"], "SPAN_KIND_CLIENT");
    assert_eq!(
        attribute(span, "hookrelay.alert"),
        "destination.dead_lettered"
    );
    assert_eq!(attribute(span, "hookrelay.destination"), "strict");
    assert_eq!(attribute(span, "http.response.status_code"), 200);
    assert_eq!(alerts.received().len(), 1);
}

crate::on_both_backends!(
    an_alert_send_is_a_span,
    traces_go_over_grpc_too,
    one_trace_from_the_sender_through_every_attempt,
    an_untrusted_sender_is_linked_and_a_new_trace_begins,
    api_and_worker_processes_keep_one_trace_across_a_restart,
    sampling_off_exports_nothing,
    a_collector_down_or_slow_never_holds_up_webhooks,
    a_broker_message_carries_its_producer_span,
);
