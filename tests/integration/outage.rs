//! PostgreSQL going away under load: refusals, never a false 202, and recovery
//! without restarting hookrelay. Runs a private PostgreSQL server so that stopping it
//! disturbs no other test.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::helpers::*;
use crate::support::postgres_server::PrivateCluster;

#[tokio::test]
async fn postgres_outage_refuses_then_recovers_without_losing_anything() {
    let cluster = Arc::new(
        tokio::task::spawn_blocking(PrivateCluster::create)
            .await
            .unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let url = cluster.url();
    let address: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let listen = address.to_string();
    let _serve = Process::start(
        &["serve", "--database", &url, "--listen", &listen],
        dir.path(),
        &[],
        "serve.log",
    );
    let client = client();
    wait_healthy(&client, address).await;

    // Clients post all along; every status they see is kept.
    let stop = Arc::new(AtomicBool::new(false));
    let seen: Arc<Mutex<Vec<(u16, Value)>>> = Arc::default();
    let load: Vec<_> = (0..8)
        .map(|c| {
            let (stop, seen, client) = (stop.clone(), seen.clone(), client.clone());
            tokio::spawn(async move {
                for n in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let key = format!("c{c}-n{n}");
                    let Ok(response) = client
                        .post(format!("http://{address}/webhooks/outage"))
                        .header("content-type", "application/json")
                        .header("idempotency-key", key)
                        .body(json!({"n": n}).to_string())
                        .send()
                        .await
                    else {
                        continue;
                    };
                    let status = response.status().as_u16();
                    let retry_after = response.headers().contains_key("retry-after");
                    let body: Value = response.json().await.unwrap_or(Value::Null);
                    if status == 503 {
                        assert!(retry_after, "503 without Retry-After");
                    }
                    seen.lock().unwrap().push((status, body));
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(700)).await;
    let stopping = cluster.clone();
    tokio::task::spawn_blocking(move || stopping.stop())
        .await
        .unwrap();
    let down_from = seen.lock().unwrap().len();

    // While it is down: refusals, and /ready says so.
    eventually(Duration::from_secs(15), "/ready to answer 503", || async {
        let response = client
            .get(format!("http://{address}/ready"))
            .send()
            .await
            .ok()?;
        (response.status() == 503).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let during: Vec<(u16, Value)> = seen.lock().unwrap()[down_from..].to_vec();
    let refused = during.iter().filter(|(status, _)| *status == 503).count();
    assert!(
        refused > 0,
        "no request was refused while PostgreSQL was down"
    );
    for (status, body) in &during {
        if *status == 503 {
            assert_error(body, "storage_unavailable");
        }
    }

    // Back again: hookrelay recovers by itself.
    let starting = cluster.clone();
    tokio::task::spawn_blocking(move || starting.start())
        .await
        .unwrap();
    eventually(
        Duration::from_secs(20),
        "/ready to answer 200 again",
        || async {
            let response = client
                .get(format!("http://{address}/ready"))
                .send()
                .await
                .ok()?;
            (response.status() == 200).then_some(())
        },
    )
    .await;
    let recovered_from = seen.lock().unwrap().len();
    eventually(Duration::from_secs(20), "a 202 after recovery", || async {
        let recent = seen.lock().unwrap()[recovered_from..]
            .iter()
            .any(|(s, _)| *s == 202);
        recent.then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }

    // Every 202, from before, during or after the outage, is stored and delivered.
    let acknowledged: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(status, _)| *status == 202)
        .map(|(_, body)| body["event_id"].as_str().unwrap().to_owned())
        .collect();
    assert!(!acknowledged.is_empty());
    for id in &acknowledged {
        wait_for_status(&client, address, id, "delivered", Duration::from_secs(30)).await;
    }
}

/// PostgreSQL restarts while a destination is answering 200: the outcome is written
/// once the database is back, within the lease, and the delivery is not sent again.
#[tokio::test]
async fn a_database_restart_after_a_2xx_keeps_the_outcome() {
    use crate::support::receiver::{Answer, Receiver};
    let cluster = Arc::new(
        tokio::task::spawn_blocking(PrivateCluster::create)
            .await
            .unwrap(),
    );
    let receiver = Receiver::start(vec![Answer::status(200).delay(Duration::from_secs(2))]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hookrelay.toml");
    std::fs::write(
        &config,
        format!(
            "[destinations.app]\nurl = \"{}\"\n[sources.s]\n[[sources.s.routes]]\ndestination = \"app\"\n",
            receiver.url()
        ),
    )
    .unwrap();
    let url = cluster.url();
    let address: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let listen = address.to_string();
    let config = config.display().to_string();
    let _serve = Process::start(
        &[
            "serve",
            "--database",
            &url,
            "--listen",
            &listen,
            "--config",
            &config,
        ],
        dir.path(),
        &[("HOOKRELAY_LEASE", "20s")],
        "serve.log",
    );
    let client = client();
    wait_healthy(&client, address).await;
    let response = post_json(&client, address, "s", Some("k-1"), &json!({"n": 1})).await;
    assert_eq!(response.status(), 202);
    let id = response.json::<Value>().await.unwrap()["event_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The request is in; PostgreSQL goes away before the 200 comes back...
    eventually(
        Duration::from_secs(10),
        "the delivery to arrive",
        || async { (!receiver.received().is_empty()).then_some(()) },
    )
    .await;
    let stopping = cluster.clone();
    tokio::task::spawn_blocking(move || stopping.stop())
        .await
        .unwrap();
    // ...and stays away for longer than a few quick tries.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let starting = cluster.clone();
    tokio::task::spawn_blocking(move || starting.start())
        .await
        .unwrap();
    let event = wait_for_status(&client, address, &id, "delivered", Duration::from_secs(30)).await;
    assert_eq!(event["attempts"], 1, "the 200 was lost: {event}");
    let attempts = get_json(&client, address, &format!("/events/{id}/attempts")).await;
    let attempts = attempts["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert_eq!(attempts[0]["status_code"], 200);
    assert_eq!(receiver.received().len(), 1);
}
