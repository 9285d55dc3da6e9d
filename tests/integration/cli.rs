//! `hookrelay events list|show|replay` against the database a running app uses.

use std::process::Output;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::helpers::*;

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
    let app = TestApp::on(backend)
        .settings(&[("HOOKRELAY_MAX_ATTEMPTS", "1")])
        .spawn()
        .await;
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

fn run(args: &[&str], dir: &std::path::Path) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_hookrelay"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("hookrelay runs")
}

/// Operators' commands find the configuration the server finds (`hookrelay.toml` in
/// the folder they run in), refuse to make a new empty database elsewhere, and say
/// what went wrong once, as text.
async fn operators_commands_find_the_servers_configuration(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let database = TestDatabase::create(backend, dir.path()).await;
    std::fs::write(
        dir.path().join("hookrelay.toml"),
        format!(
            "database = \"{}\"\n[destinations.rl2]\nurl = \"http://127.0.0.1:9/\"\n",
            database.url
        ),
    )
    .unwrap();
    let here = dir.path().to_owned();
    let run_here = move |args: &'static [&'static str]| {
        let here = here.clone();
        tokio::task::spawn_blocking(move || run(args, &here))
    };
    stdout(&run_here(&["migrate"]).await.unwrap());
    let paused = stdout(&run_here(&["destinations", "pause", "rl2"]).await.unwrap());
    assert!(paused.contains("rl2: paused"), "{paused}");
    let listed = stdout(&run_here(&["destinations", "list", "--json"]).await.unwrap());
    let rl2: Value = listed
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .find(|d| d["name"] == "rl2")
        .expect("rl2 listed");
    assert_eq!(rl2["configured"], true, "{rl2}");
    assert_eq!(rl2["state"], "paused", "{rl2}");

    let unknown = run_here(&["destinations", "pause", "nowhere"])
        .await
        .unwrap();
    assert!(!unknown.status.success());
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert_eq!(
        stderr.trim(),
        r#"hookrelay: no destination is named "nowhere""#,
        "{stderr}"
    );
}

/// From a folder with no database, `events list` says so instead of creating one.
#[test]
fn operators_commands_refuse_a_database_that_does_not_exist() {
    let elsewhere = tempfile::tempdir().unwrap();
    let output = run(&["events", "list"], elsewhere.path());
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no database at data/hookrelay.db"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "one line, no log line: {stderr}");
    assert!(!elsewhere.path().join("data").exists());
}

const ROUTES: &str = r#"
[destinations.billing]
url = "http://127.0.0.1:9/billing"
[destinations.analytics]
url = "http://127.0.0.1:9/analytics"

[sources.stripe]
[[sources.stripe.routes]]
destination = "billing"
event_types = ["invoice.*"]
[[sources.stripe.routes]]
destination = "analytics"
filter = { body = { data = { object = { amount = { "$gte" = 10000 } } } } }
"#;

/// `routes test` says which destinations would receive an event and why not the others.
#[test]
fn routes_test_explains_each_route() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hookrelay.toml");
    std::fs::write(&config, ROUTES).unwrap();
    let body = dir.path().join("invoice.json");
    std::fs::write(
        &body,
        r#"{"id":"evt_1","type":"invoice.paid","data":{"object":{"amount":500}}}"#,
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let body = body.to_str().unwrap();
    let output = run(
        &[
            "routes", "test", "--config", config, "--source", "stripe", "--body", body,
        ],
        dir.path(),
    );
    let text = stdout(&output);
    assert!(text.contains("event type: invoice.paid"), "{text}");
    assert!(text.contains("route 0 -> billing: delivers"), "{text}");
    assert!(text.contains("route 1 -> analytics: skips"), "{text}");
    assert!(text.contains("because the filter does not match"), "{text}");
    assert!(text.contains("deliveries: billing"), "{text}");

    std::fs::write(
        dir.path().join("charge.json"),
        r#"{"type":"charge.succeeded"}"#,
    )
    .unwrap();
    let output = run(
        &[
            "routes",
            "test",
            "--config",
            config,
            "--source",
            "stripe",
            "--header",
            "X-Test: 1",
            "--body",
            "charge.json",
        ],
        dir.path(),
    );
    let text = stdout(&output);
    assert!(text.contains("stored as filtered"), "{text}");

    // What ingest refuses, routes test says it refuses: the same decision.
    std::fs::write(
        dir.path().join("broken.json"),
        r#"{"type": "invoice.paid",}"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("escape.json"),
        "{\"type\": \"invoice.\\u001b[31mred\"}",
    )
    .unwrap();
    let routes_test = |extra: &[&str], file: &str| {
        let mut args = vec!["routes", "test", "--config", config, "--source", "stripe"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--body", file]);
        stdout(&run(&args, dir.path()))
    };
    let text = routes_test(&[], "broken.json");
    assert!(
        text.contains("refused at ingest (400 invalid_json)"),
        "{text}"
    );
    let text = routes_test(&["--header", "Content-Type: text/plain"], "invoice.json");
    assert!(
        text.contains("refused at ingest (415 unsupported_media_type)"),
        "{text}"
    );
    // Control characters from a captured body never reach the terminal as they are.
    let text = routes_test(&[], "escape.json");
    assert!(!text.contains('\u{1b}'), "{text:?}");
    assert!(
        text.contains("refused at ingest (400 invalid_event_type)"),
        "{text}"
    );

    // A bad filter stops the command (and every process) at start, naming the route.
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        ROUTES.replace("\"$gte\" = 10000", "\"$between\" = [1, 2]"),
    )
    .unwrap();
    let output = run(
        &[
            "routes",
            "test",
            "--config",
            bad.to_str().unwrap(),
            "--source",
            "stripe",
            "--body",
            body,
        ],
        dir.path(),
    );
    assert!(!output.status.success());
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(
        error.contains("[sources.stripe] routes[1].filter") && error.contains("$between"),
        "{error}"
    );
}

async fn the_destinations_command_shows_backlog_and_outcomes(backend: Backend) {
    let app = TestApp::on(backend).spawn().await;
    let id = app.accept("shop", "k", json!({"ok": true})).await;
    app.wait_for_status(&id, "delivered", Duration::from_secs(10))
        .await;
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_hookrelay"));
    command
        .args(["destinations", "--database", &app.database.url])
        .current_dir(app.dir.path());
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let table = stdout(&output);
    assert!(table.starts_with("DESTINATION"), "{table}");
    let row = table
        .lines()
        .find(|l| l.starts_with("built-in"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains("active") && row.contains("20"), "{row}");
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_hookrelay"));
    command
        .args([
            "destinations",
            "--database",
            &app.database.url,
            "list",
            "--json",
        ])
        .current_dir(app.dir.path());
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let line: Value = serde_json::from_str(stdout(&output).lines().next().unwrap()).unwrap();
    assert_eq!(line["name"], "built-in");
    assert_eq!(line["backlog"], 0);
    assert!(line["last_success_at"].is_string());
}

crate::on_both_backends!(
    operators_commands_find_the_servers_configuration,
    the_events_command_lists_shows_and_replays,
    the_destinations_command_shows_backlog_and_outcomes,
);
