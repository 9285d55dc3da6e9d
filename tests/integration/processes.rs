//! The real binary as separate processes, on both backends: crashes, restarts,
//! graceful stops, the api/worker split on one database, and the log format.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::helpers::*;
use crate::support::setup::Setup;

type Accepted = Arc<Mutex<Vec<String>>>;

/// Posts from `clients` tasks until `stop` is set; returns the ids that got a 202.
async fn post_until(
    address: SocketAddr,
    clients: usize,
    round: usize,
    body: Value,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Vec<String> {
    let accepted = Accepted::default();
    post_into(address, clients, round, body, stop, accepted.clone()).await;
    accepted.lock().unwrap().clone()
}

/// Like `post_until`, adding each acknowledged id to `accepted` as it comes.
async fn post_into(
    address: SocketAddr,
    clients: usize,
    round: usize,
    body: Value,
    stop: Arc<std::sync::atomic::AtomicBool>,
    accepted: Accepted,
) {
    let tasks: Vec<_> = (0..clients)
        .map(|client_no| {
            let accepted = accepted.clone();
            let stop = stop.clone();
            let body = body.clone();
            tokio::spawn(async move {
                let client = client();
                for n in 0.. {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    let key = format!("r{round}-c{client_no}-n{n}");
                    let request = client
                        .post(format!("http://{address}/webhooks/load"))
                        .header("content-type", "application/json")
                        .header("idempotency-key", &key)
                        .body(body.to_string())
                        .send()
                        .await;
                    let Ok(response) = request else { break };
                    if response.status() != 202 {
                        break;
                    }
                    let Ok(receipt) = response.json::<Value>().await else {
                        break;
                    };
                    accepted
                        .lock()
                        .unwrap()
                        .push(receipt["event_id"].as_str().unwrap().to_owned());
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

async fn wait_all_delivered(address: SocketAddr, ids: &[String], within: Duration) {
    let client = client();
    let deadline = Instant::now() + within;
    let mut pending: Vec<&String> = ids.iter().collect();
    while !pending.is_empty() {
        let mut still = Vec::new();
        for id in pending {
            let event = get_json(&client, address, &format!("/events/{id}")).await;
            assert_ne!(
                event["error"]["code"], "not_found",
                "acknowledged event {id} was lost"
            );
            if event["status"] != "delivered" {
                still.push(id);
            }
        }
        pending = still;
        assert!(
            pending.is_empty() || Instant::now() < deadline,
            "{} events not delivered within {within:?}, e.g. {}",
            pending.len(),
            pending[0]
        );
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A worker whose configuration lacks a source's destination (a config edited, or a
/// worker started with the wrong file) must not hand that source's events to the
/// built-in processor, which would mark them delivered without reaching the
/// application. They fail visibly, and are delivered once replayed to a worker that
/// has the destination.
async fn a_worker_without_the_destination_does_not_swallow_events(backend: Backend) {
    let setup = Setup::new(backend).await;
    let receiver = crate::support::receiver::Receiver::start(Vec::new()).await;
    let with_destination = setup.path().join("with-destination.toml");
    std::fs::write(
        &with_destination,
        format!(
            "[sources.shop]\ndestination = \"{}\"\n[sources.side]\n",
            receiver.url()
        ),
    )
    .unwrap();
    let without_destination = setup.path().join("without-destination.toml");
    std::fs::write(&without_destination, "[sources.shop]\n[sources.side]\n").unwrap();
    let config = |path: &Path| ["--config".to_owned(), path.display().to_string()];
    let env = [("HOOKRELAY_MAX_ATTEMPTS", "2")];

    let with = config(&with_destination);
    let with: Vec<&str> = with.iter().map(String::as_str).collect();
    let (_api, address) = setup.start("api", &env, &with, "api.log");
    let address = address.unwrap();
    let client = client();
    wait_healthy(&client, address).await;
    let without = config(&without_destination);
    let without: Vec<&str> = without.iter().map(String::as_str).collect();
    let (mut stale_worker, _) = setup.start("worker", &env, &without, "stale-worker.log");

    let response = post_json(&client, address, "shop", Some("order-1"), &json!({"n": 1})).await;
    assert_eq!(response.status(), 202);
    let id = response.json::<Value>().await.unwrap()["event_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The stale worker is working (it delivers what it knows)...
    let side = post_json(&client, address, "side", Some("side-1"), &json!({"n": 2})).await;
    let side = side.json::<Value>().await.unwrap()["event_id"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_for_status(
        &client,
        address,
        &side,
        "delivered",
        Duration::from_secs(15),
    )
    .await;
    // ...yet it leaves the delivery to a destination it does not know alone: no
    // attempt, nothing dead-lettered.
    let event: Value = client
        .get(format!("http://{address}/events/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(event["status"], "queued", "{event}");
    assert_eq!(event["attempts"], 0, "{event}");
    assert!(receiver.received().is_empty());
    stale_worker.kill();

    // A worker configured with it delivers it, without a replay.
    let (_worker, _) = setup.start("worker", &env, &with, "worker.log");
    wait_for_status(&client, address, &id, "delivered", Duration::from_secs(15)).await;
    assert_eq!(receiver.received().len(), 1);
}

async fn a_killed_worker_s_event_is_taken_over_after_the_lease(backend: Backend) {
    let setup = Setup::new(backend).await;
    let env = [("HOOKRELAY_LEASE", "1s")];
    let (_api, address) = setup.start("api", &env, &[], "api.log");
    let address = address.unwrap();
    let client = client();
    wait_healthy(&client, address).await;
    let (mut first_worker, _) = setup.start("worker", &env, &[], "worker1.log");

    let receipt: Value = post_json(
        &client,
        address,
        "crash",
        Some("k"),
        &json!({"simulate_delay_ms": 2500}),
    )
    .await
    .json()
    .await
    .unwrap();
    let id = receipt["event_id"].as_str().unwrap();
    wait_for_status(&client, address, id, "processing", Duration::from_secs(10)).await;
    first_worker.kill();

    let (_second_worker, _) = setup.start("worker", &env, &[], "worker2.log");
    let event = wait_for_status(&client, address, id, "delivered", Duration::from_secs(20)).await;
    assert_eq!(event["attempts"], 2);
    let history = get_json(&client, address, &format!("/events/{id}/attempts")).await;
    let history = history["attempts"].as_array().unwrap();
    assert_eq!(history.len(), 2);
    assert!(
        history[0]["error"]
            .as_str()
            .unwrap()
            .contains("lease expired"),
        "{history:?}"
    );
    assert_eq!(history[1]["error"], Value::Null);
    assert_eq!(
        setup
            .count("SELECT COUNT(*) FROM deliveries WHERE status = 'processing'")
            .await,
        0
    );
}

async fn an_event_that_kills_every_worker_is_dead_lettered(backend: Backend) {
    let setup = Setup::new(backend).await;
    let env = [
        ("HOOKRELAY_LEASE", "500ms"),
        ("HOOKRELAY_MAX_ATTEMPTS", "2"),
    ];
    let (_api, address) = setup.start("api", &env, &[], "api.log");
    let address = address.unwrap();
    let client = client();
    wait_healthy(&client, address).await;
    let receipt: Value = post_json(
        &client,
        address,
        "poison",
        Some("k"),
        &json!({"simulate_delay_ms": 30000}),
    )
    .await
    .json()
    .await
    .unwrap();
    let id = receipt["event_id"].as_str().unwrap();
    for round in 0..2 {
        let (mut worker, _) = setup.start("worker", &env, &[], &format!("w{round}.log"));
        eventually(Duration::from_secs(10), "a claimed attempt", || {
            let client = client.clone();
            async move {
                let event = get_json(&client, address, &format!("/events/{id}")).await;
                (event["status"] == "processing" && event["attempts"] == round + 1).then_some(())
            }
        })
        .await;
        worker.kill();
    }
    let (_survivor, _) = setup.start("worker", &env, &[], "w-last.log");
    let event = wait_for_status(
        &client,
        address,
        id,
        "dead_lettered",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(event["attempts"], 2);
    assert!(
        event["last_error"]
            .as_str()
            .unwrap()
            .contains("lease expired")
    );
}

async fn api_and_worker_processes_share_one_file(backend: Backend) {
    let setup = Setup::new(backend).await;
    let (_api, address) = setup.start("api", &[], &[], "api.log");
    let address = address.unwrap();
    let client = client();
    wait_healthy(&client, address).await;
    let (_worker, _) = setup.start("worker", &[], &[], "worker.log");

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopper = stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        stopper.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let ids = post_until(address, 8, 0, json!({"kind": "split"}), stop).await;
    assert!(ids.len() > 100, "only {} accepted", ids.len());
    wait_all_delivered(address, &ids, Duration::from_secs(60)).await;
}

/// A worker on its own serves its metrics, health and readiness where it is told to:
/// the attempts it made are counted there, not in the API's process.
async fn a_worker_alone_serves_its_own_metrics(backend: Backend) {
    let setup = Setup::new(backend).await;
    let (_api, address) = setup.start("api", &[], &[], "api.log");
    let address = address.unwrap();
    let client = client();
    wait_healthy(&client, address).await;
    let worker_address: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let listen = worker_address.to_string();
    let (_worker, _) = setup.start("worker", &[], &["--listen", &listen], "worker.log");
    wait_healthy(&client, worker_address).await;
    let ids = vec![post_ok_id(&client, address, "metrics-1").await];
    wait_all_delivered(address, &ids, Duration::from_secs(30)).await;
    let attempts = |text: &str| {
        text.lines()
            .find(|line| {
                line.starts_with("hookrelay_attempts_total")
                    && line.contains("outcome=\"delivered\"")
            })
            .map(str::to_owned)
    };
    let worker_metrics = get_text(&client, &format!("http://{worker_address}/metrics")).await;
    let line = attempts(&worker_metrics).expect("the worker counts its attempts");
    assert!(line.ends_with(" 1"), "{line}");
    let api_metrics = get_text(&client, &format!("http://{address}/metrics")).await;
    assert_eq!(attempts(&api_metrics), None, "the API made no attempt");
    let ready = client
        .get(format!("http://{worker_address}/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    // Nothing else is served there.
    let events = client
        .get(format!("http://{worker_address}/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 404);
}

async fn post_ok_id(client: &reqwest::Client, address: SocketAddr, key: &str) -> String {
    let response = post_json(client, address, "split", Some(key), &json!({"k": key})).await;
    assert_eq!(response.status(), 202);
    response.json::<Value>().await.unwrap()["event_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Starts `serve` (with `extra` arguments) `rounds` times, posts from 16 clients and
/// SIGKILLs it once `at_least` events were acknowledged; returns every acknowledged id.
async fn kill_serve_under_load(
    setup: &Setup,
    rounds: usize,
    at_least: usize,
    extra: &[&str],
) -> Vec<String> {
    let mut acknowledged: Vec<String> = Vec::new();
    for round in 0..rounds {
        let (mut serve, address) = setup.start("serve", &[], extra, &format!("serve{round}.log"));
        let address = address.unwrap();
        wait_healthy(&client(), address).await;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let accepted = Accepted::default();
        let load = tokio::spawn(post_into(
            address,
            16,
            round,
            json!({"round": round}),
            stop.clone(),
            accepted.clone(),
        ));
        // Kill once this round has had real load, whatever the machine's speed.
        eventually(
            Duration::from_secs(30),
            "enough acknowledged events",
            || {
                let count = accepted.lock().unwrap().len();
                async move { (count >= at_least).then_some(()) }
            },
        )
        .await;
        serve.kill(); // SIGKILL: no chance to flush anything
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        load.await.unwrap();
        acknowledged.extend(accepted.lock().unwrap().drain(..));
    }
    acknowledged
}

async fn killing_serve_under_load_loses_no_acknowledged_event(backend: Backend) {
    let setup = Setup::new(backend).await;
    let acknowledged = kill_serve_under_load(&setup, 3, 400, &[]).await;
    let unique: HashSet<&String> = acknowledged.iter().collect();
    assert_eq!(unique.len(), acknowledged.len(), "an id was issued twice");
    assert!(
        acknowledged.len() >= 1200,
        "only {} acknowledged",
        acknowledged.len()
    );

    let (_serve, address) = setup.start("serve", &[], &[], "serve-final.log");
    let address = address.unwrap();
    wait_healthy(&client(), address).await;
    wait_all_delivered(address, &acknowledged, Duration::from_secs(120)).await;
    eventually(
        Duration::from_secs(10),
        "no event in processing",
        || async {
            let processing = setup
                .count("SELECT COUNT(*) FROM deliveries WHERE status = 'processing'")
                .await;
            (processing == 0).then_some(())
        },
    )
    .await;
}

async fn sigterm_under_load_drains_and_exits_cleanly(backend: Backend) {
    let setup = Setup::new(backend).await;
    let (mut serve, address) = setup.start("serve", &[], &[], "serve.log");
    let address = address.unwrap();
    let client = client();
    wait_healthy(&client, address).await;
    // Some attempts are still running when the signal comes.
    for n in 0..5 {
        let key = format!("slow-{n}");
        let response = post_json(
            &client,
            address,
            "slow",
            Some(&key),
            &json!({"simulate_delay_ms": 10000}),
        )
        .await;
        assert_eq!(response.status(), 202);
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = tokio::spawn(post_until(address, 16, 0, json!({"x": 1}), stop.clone()));
    tokio::time::sleep(Duration::from_millis(700)).await;
    serve.signal("TERM");
    let status = serve.wait_exit(Duration::from_secs(15)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acknowledged = load.await.unwrap();
    assert!(status.success(), "exit status {status:?}");
    assert!(!acknowledged.is_empty());

    assert_eq!(
        setup
            .count("SELECT COUNT(*) FROM deliveries WHERE status = 'processing'")
            .await,
        0
    );
    let ids: Vec<String> = acknowledged.iter().map(|id| format!("'{id}'")).collect();
    let found = setup
        .count(&format!(
            "SELECT COUNT(*) FROM events WHERE id IN ({})",
            ids.join(",")
        ))
        .await;
    assert_eq!(
        found as usize,
        acknowledged.len(),
        "an acknowledged event is missing after SIGTERM"
    );
}

/// A delivery still waiting on a slow destination when SIGTERM arrives is handed
/// back: the process exits at once, and the attempt does not count.
async fn sigterm_hands_back_a_delivery_in_flight(backend: Backend) {
    let setup = Setup::new(backend).await;
    let slow = crate::support::receiver::Answer::status(200).delay(Duration::from_secs(30));
    let receiver = crate::support::receiver::Receiver::start(vec![slow]).await;
    let config = setup.path().join("hookrelay.toml");
    std::fs::write(
        &config,
        format!(
            "[sources.shop]\ndestination = \"{}\"\ntimeout = \"60s\"\n",
            receiver.url()
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    let (mut serve, address) = setup.start("serve", &[], &["--config", &config], "serve.log");
    let address = address.unwrap();
    let client = client();
    wait_healthy(&client, address).await;
    let response = post_json(&client, address, "shop", Some("slow-1"), &json!({})).await;
    assert_eq!(response.status(), 202);
    eventually(Duration::from_secs(10), "the delivery to start", || async {
        (!receiver.received().is_empty()).then_some(())
    })
    .await;

    let stopping = Instant::now();
    serve.signal("TERM");
    assert!(serve.wait_exit(Duration::from_secs(10)).await.success());
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "{:?}",
        stopping.elapsed()
    );
    assert_eq!(
        setup
            .count("SELECT COUNT(*) FROM deliveries WHERE status = 'queued' AND attempts = 0")
            .await,
        1,
        "the interrupted attempt was not handed back"
    );
}

async fn every_log_line_is_json_in_the_seed_shape(backend: Backend) {
    let setup = Setup::new(backend).await;
    let (mut serve, address) = setup.start("serve", &[], &[], "serve.log");
    let address = address.unwrap();
    let client = client();
    wait_healthy(&client, address).await;
    let marker = "PAYLOAD-MARKER-7731";
    let mut ids = Vec::new();
    for (n, body) in [
        json!({"secret": marker}),
        json!({"secret": marker, "simulate_transient": true}),
        json!({"secret": marker, "simulate_failure": true}),
    ]
    .into_iter()
    .enumerate()
    {
        let receipt: Value = post_json(&client, address, "logs", Some(&n.to_string()), &body)
            .await
            .json()
            .await
            .unwrap();
        ids.push(receipt["event_id"].as_str().unwrap().to_owned());
    }
    post_json(&client, address, "logs", None, &json!({"secret": marker})).await;
    for (id, status) in ids.iter().zip(["delivered", "delivered", "dead_lettered"]) {
        wait_for_status(&client, address, id, status, Duration::from_secs(10)).await;
    }
    serve.signal("TERM");
    assert!(serve.wait_exit(Duration::from_secs(10)).await.success());

    let lines = serve.log_lines();
    assert!(lines.len() > 10, "{lines:?}");
    let mut messages = HashSet::new();
    for line in &lines {
        assert!(!line.contains(marker), "payload logged: {line}");
        let entry: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let object = entry.as_object().unwrap();
        let keys: HashSet<&str> = object.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            HashSet::from(["timestamp", "level", "component", "message", "context"]),
            "{line}"
        );
        assert!(line.starts_with("{\"timestamp\":"), "{line}");
        assert!(entry["timestamp"].as_str().unwrap().ends_with('Z'));
        humantime::parse_rfc3339(entry["timestamp"].as_str().unwrap()).unwrap();
        assert!(
            ["trace", "debug", "info", "warn", "error"].contains(&entry["level"].as_str().unwrap())
        );
        assert!(!entry["component"].as_str().unwrap().is_empty());
        assert!(entry["context"].is_object());
        let message = entry["message"].as_str().unwrap();
        messages.insert(message.to_owned());
        if message.contains("Event") || message.contains("Attempt") {
            let context = &entry["context"];
            assert!(
                context["event_id"]
                    .as_str()
                    .is_some_and(|id| id.starts_with("evt_")),
                "{line}"
            );
            assert_eq!(context["source"], "logs", "{line}");
        }
        if message == "Request handled" || message == "Event accepted" {
            assert_eq!(entry["component"], "api");
            for field in ["method", "path", "status", "duration_ms", "request_id"] {
                assert!(
                    !entry["context"][field].is_null(),
                    "{field} missing: {line}"
                );
            }
        }
    }
    for expected in [
        "Event accepted",
        "Event delivered",
        "Attempt failed; retry scheduled",
        "Event dead-lettered",
    ] {
        assert!(
            messages.contains(expected),
            "no {expected:?} line in {messages:?}"
        );
    }
    let delivered = lines
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|e| e["message"] == "Event delivered" && e["context"]["event_id"] == ids[1].as_str())
        .unwrap();
    assert_eq!(delivered["component"], "worker");
    assert_eq!(delivered["context"]["total_attempts"], 3);
}

async fn a_stalled_client_cannot_hold_up_shutdown(backend: Backend) {
    use tokio::io::AsyncWriteExt;

    let setup = Setup::new(backend).await;
    let (mut serve, address) = setup.start(
        "serve",
        &[("HOOKRELAY_SHUTDOWN_GRACE", "1s")],
        &[],
        "serve.log",
    );
    let address = address.unwrap();
    wait_healthy(&client(), address).await;
    // A request whose body never finishes arriving.
    let mut stalled = tokio::net::TcpStream::connect(address).await.unwrap();
    stalled
        .write_all(
            b"POST /webhooks/slow HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Idempotency-Key: k\r\nContent-Length: 100\r\n\r\n{\"partial\":",
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    serve.signal("TERM");
    let status = serve.wait_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "exit status {status:?}");
    let warned = serve
        .log_lines()
        .iter()
        .any(|l| l.contains("shutdown grace period"));
    assert!(warned, "no line says the grace period ran out");
    drop(stalled);
}

/// SIGKILL of `serve` under load, with each event routed to three destinations: every
/// acknowledged event has all three deliveries (committed with it), none twice, and
/// each receiver gets every event.
async fn killing_serve_under_fan_out_loses_no_delivery(backend: Backend) {
    let setup = Setup::new(backend).await;
    let receivers = [
        crate::support::receiver::Receiver::start(vec![]).await,
        crate::support::receiver::Receiver::start(vec![]).await,
        crate::support::receiver::Receiver::start(vec![]).await,
    ];
    let mut config = String::new();
    for (n, receiver) in receivers.iter().enumerate() {
        config.push_str(&format!(
            "[destinations.app{n}]\nurl = \"{}\"\n",
            receiver.url()
        ));
    }
    config.push_str("[sources.load]\n");
    for n in 0..receivers.len() {
        config.push_str(&format!(
            "[[sources.load.routes]]\ndestination = \"app{n}\"\n"
        ));
    }
    let config_path = setup.path().join("fanout.toml");
    std::fs::write(&config_path, config).unwrap();
    let config_arg = config_path.to_str().unwrap().to_owned();
    let acknowledged = kill_serve_under_load(&setup, 2, 300, &["--config", &config_arg]).await;
    let ids: Vec<String> = acknowledged.iter().map(|id| format!("'{id}'")).collect();
    let ids = ids.join(",");
    let deliveries = setup
        .count(&format!(
            "SELECT COUNT(*) FROM deliveries WHERE event_id IN ({ids})"
        ))
        .await;
    assert_eq!(
        deliveries as usize,
        acknowledged.len() * 3,
        "a delivery is missing or doubled"
    );
    let distinct = setup
        .count(&format!(
            "SELECT COUNT(*) FROM (SELECT DISTINCT event_id, destination FROM deliveries
             WHERE event_id IN ({ids})) AS d"
        ))
        .await;
    assert_eq!(distinct, deliveries);

    let (_serve, address) =
        setup.start("serve", &[], &["--config", &config_arg], "serve-final.log");
    let address = address.unwrap();
    wait_healthy(&client(), address).await;
    wait_all_delivered(address, &acknowledged, Duration::from_secs(120)).await;
    for receiver in &receivers {
        let got: HashSet<String> = receiver
            .received()
            .iter()
            .map(|r| {
                r.headers["x-hookrelay-event-id"]
                    .to_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        let missing = acknowledged.iter().filter(|id| !got.contains(*id)).count();
        assert_eq!(missing, 0, "a receiver is missing acknowledged events");
    }
}

crate::on_both_backends!(
    a_worker_alone_serves_its_own_metrics,
    killing_serve_under_fan_out_loses_no_delivery,
    sigterm_hands_back_a_delivery_in_flight,
    a_stalled_client_cannot_hold_up_shutdown,
    a_worker_without_the_destination_does_not_swallow_events,
    a_killed_worker_s_event_is_taken_over_after_the_lease,
    an_event_that_kills_every_worker_is_dead_lettered,
    api_and_worker_processes_share_one_file,
    killing_serve_under_load_loses_no_acknowledged_event,
    sigterm_under_load_drains_and_exits_cleanly,
    every_log_line_is_json_in_the_seed_shape,
);
