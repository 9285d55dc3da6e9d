//! The README as a newcomer pastes it: every TOML block is a configuration hookrelay
//! starts with, and the `routes test` session prints what the README shows.

use std::path::Path;

use hookrelay::config::{Config, Overrides};

const README: &str = include_str!("../../README.md");

/// The fenced blocks of `language`, with the line each starts on.
fn blocks(language: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (number, line) in README.lines().enumerate() {
        match &mut current {
            None if line.trim_start() == format!("```{language}") => {
                current = Some((number + 1, String::new()));
            }
            Some(_) if line.trim_start() == "```" => found.extend(current.take()),
            Some((_, text)) => {
                text.push_str(line);
                text.push('\n');
            }
            None => {}
        }
    }
    found
}

#[test]
fn every_toml_block_is_a_configuration_that_starts() {
    let toml = blocks("toml");
    assert!(toml.len() >= 5, "found only {} TOML blocks", toml.len());
    let dir = tempfile::tempdir().unwrap();
    for (line, text) in toml {
        let path = dir.path().join(format!("readme-{line}.toml"));
        std::fs::write(&path, &text).unwrap();
        let overrides = Overrides {
            config_file: Some(path),
            ..Overrides::default()
        };
        // `${VAR}` in a block reads a variable the reader would have set; hookrelay's
        // own and OpenTelemetry's settings are left unset.
        let loaded = Config::load_from(&overrides, |name| {
            (!name.starts_with("HOOKRELAY_") && !name.starts_with("OTEL_"))
                .then(|| format!("example-{name}"))
        });
        if let Err(error) = loaded {
            panic!("README.md line {line}: the TOML block does not start: {error}\n{text}");
        }
    }
}

#[test]
fn the_routes_test_session_prints_what_the_readme_shows() {
    let sessions = blocks("console");
    let (line, session) = sessions
        .iter()
        .find(|(_, text)| text.contains("hookrelay routes test"))
        .expect("a routes test session in the README");
    let mut lines = session.lines();
    let command = lines.next().unwrap().trim_start_matches("$ ");
    let shown: Vec<&str> = lines.collect();
    let args: Vec<&str> = command.split_whitespace().skip(1).collect();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_hookrelay"))
        .args(&args)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
        .output()
        .expect("hookrelay runs");
    assert!(output.status.success(), "README.md line {line}: {output:?}");
    let printed = String::from_utf8(output.stdout).unwrap();
    assert_eq!(
        printed.lines().collect::<Vec<_>>(),
        shown,
        "README.md line {line}: `{command}` prints something else"
    );
}

/// The README's broker examples, each published to a real broker: the block's options
/// as written, only its address (and for RabbitMQ its exchange, for SQS its keys)
/// swapped for the test's own broker.
async fn the_broker_examples_deliver(backend: crate::support::database::Backend) {
    use crate::support::brokers::{Kind, TestBroker};
    use crate::support::helpers::TestApp;
    let examples: Vec<(usize, String, Kind)> = blocks("toml")
        .into_iter()
        .filter_map(|(line, text)| {
            let url = text.lines().find(|l| l.starts_with("url = "))?.to_owned();
            let kind = [
                ("kafka://", Kind::Kafka),
                ("sqs+", Kind::Sqs),
                ("amqp://", Kind::Amqp),
                ("nats://", Kind::Nats),
                ("redis://", Kind::Redis),
            ]
            .into_iter()
            .find(|(scheme, _)| url.contains(scheme))?
            .1;
            Some((line, text, kind))
        })
        .collect();
    assert_eq!(examples.len(), 5, "one example per kind");
    for (line, text, kind) in examples {
        let broker = TestBroker::start(kind).await;
        let swapped = broker.destination("readme").await;
        let replaced = ["url = ", "exchange = ", "routing_key = ", "aws_"];
        let mut config = String::new();
        for block_line in text.lines() {
            if block_line.starts_with("url = ") {
                config.push_str(&swapped);
            } else if !replaced.iter().any(|p| block_line.starts_with(p)) {
                config.push_str(block_line);
                config.push('\n');
            }
        }
        let app = TestApp::on(backend).config(&config).spawn().await;
        let body =
            serde_json::json!({"type": "invoice.paid", "data": {"object": {"customer": "cus_1"}}});
        let id = app.accept("stripe", "first", body).await;
        let event = app
            .wait_for_status(&id, "delivered", std::time::Duration::from_secs(30))
            .await;
        assert_eq!(event["status"], "delivered", "README.md line {line}");
        let consumed = broker
            .consume("readme", 1, std::time::Duration::from_secs(30))
            .await;
        assert_eq!(consumed[0].event_id(), id, "README.md line {line}");
    }
}

crate::on_both_backends!(the_broker_examples_deliver);
