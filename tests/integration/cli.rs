//! `hookrelay events list|show|replay` against the database a running app uses.

use std::process::Output;
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::*;

async fn hookrelay(app: &TestApp, args: &[&str]) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_hookrelay"));
    command
        .args(["events", "--database", &app.database.url])
        .args(args)
        .env("HOOKRELAY_MAX_ATTEMPTS", "1")
        .current_dir(app.dir.path());
    tokio::task::spawn_blocking(move || command.output().expect("hookrelay runs"))
        .await
        .unwrap()
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

async fn the_events_command_lists_shows_and_replays(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("HOOKRELAY_MAX_ATTEMPTS", "1")]).await;
    let good = app.accept("shop", "good", json!({"ok": true})).await;
    let bad = app
        .accept("shop", "bad", json!({"simulate_failure": true}))
        .await;
    app.wait_for_status(&good, "delivered", Duration::from_secs(10))
        .await;
    app.wait_for_status(&bad, "dead_lettered", Duration::from_secs(10))
        .await;

    let table = stdout(&hookrelay(&app, &["list"]).await);
    assert!(table.starts_with("ID"), "{table}");
    assert!(table.contains(&good) && table.contains(&bad), "{table}");
    // The columns line up: each row's received time starts under CREATED.
    let created = table.find("CREATED").unwrap();
    for row in table.lines().skip(1) {
        assert!(row[created..].starts_with("20"), "{table}");
    }

    let lines = stdout(&hookrelay(&app, &["list", "--status", "dead_lettered", "--json"]).await);
    let listed: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], bad.as_str());
    assert_eq!(listed[0]["last_error"], "Simulated failure");

    let shown: Value =
        serde_json::from_str(&stdout(&hookrelay(&app, &["show", &bad]).await)).unwrap();
    assert_eq!(shown["event"]["status"], "dead_lettered");
    assert_eq!(shown["attempts"].as_array().unwrap().len(), 1);

    assert_eq!(
        stdout(&hookrelay(&app, &["replay", &bad]).await).trim(),
        format!("queued {bad} (1 delivery)")
    );
    // The running worker picks the replayed event up: one more attempt, dead again.
    let mut attempts = 0;
    for _ in 0..250 {
        let event = app.event(&bad).await;
        attempts = event["attempts"].as_u64().unwrap();
        if attempts == 2 && event["status"] == "dead_lettered" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(attempts, 2);

    let bulk = stdout(
        &hookrelay(
            &app,
            &["replay", "--source", "shop", "--status", "delivered"],
        )
        .await,
    );
    assert_eq!(bulk.trim(), "replayed 1");

    let missing = hookrelay(&app, &["show", "evt_missing"]).await;
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no event evt_missing"));
    let unfiltered = hookrelay(&app, &["replay"]).await;
    assert!(
        !unfiltered.status.success(),
        "a bare replay must not replay everything"
    );
    assert!(
        String::from_utf8_lossy(&unfiltered.stderr).contains("say so with all"),
        "{}",
        String::from_utf8_lossy(&unfiltered.stderr)
    );
    let all = hookrelay(&app, &["replay", "--all"]).await;
    assert!(all.status.success());
    assert!(String::from_utf8_lossy(&all.stdout).starts_with("replayed "));
    let bad_status = hookrelay(&app, &["list", "--status", "done"]).await;
    assert!(!bad_status.status.success());
}

crate::on_both_backends!(the_events_command_lists_shows_and_replays);
