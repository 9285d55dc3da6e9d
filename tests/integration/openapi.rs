//! `/openapi.json` against the live routes: everything documented is routed, and the
//! documented set is the whole API.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::support::helpers::*;

#[tokio::test]
async fn the_document_describes_exactly_the_live_routes() {
    let app = TestApp::on(Backend::Sqlite).spawn().await;
    let response = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let document: Value = response.json().await.unwrap();
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));

    let mut documented = BTreeSet::new();
    for (path, operations) in document["paths"].as_object().unwrap() {
        for method in operations.as_object().unwrap().keys() {
            documented.insert((method.to_uppercase(), path.clone()));
        }
    }
    let expected: BTreeSet<(String, String)> = [
        ("POST", "/webhooks/{source}"),
        ("GET", "/events"),
        ("POST", "/events/replay"),
        ("GET", "/events/{id}"),
        ("GET", "/events/{id}/attempts"),
        ("POST", "/events/{id}/replay"),
        ("GET", "/metrics"),
        ("GET", "/destinations"),
        ("POST", "/destinations/{name}/pause"),
        ("POST", "/destinations/{name}/resume"),
        ("GET", "/ui"),
        ("GET", "/health"),
        ("GET", "/ready"),
    ]
    .into_iter()
    .map(|(m, p)| (m.to_owned(), p.to_owned()))
    .collect();
    assert_eq!(documented, expected);

    // Every documented operation reaches a handler: never the router's own 404 or 405.
    for (method, path) in &documented {
        let concrete = path
            .replace("{source}", "probe")
            .replace("{id}", "evt_probe")
            .replace("{name}", "probe");
        let request = match method.as_str() {
            "GET" => app.client.get(app.url(&concrete)),
            _ => app
                .client
                .post(app.url(&concrete))
                .header("content-type", "application/json")
                .body("{}"),
        };
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let body = response.text().await.unwrap();
        assert_ne!(status, 405, "{method} {path} is documented but not routed");
        assert!(
            !body.contains("route not found"),
            "{method} {path} is documented but not routed"
        );
    }

    // The contract's shapes are there.
    let schemas = &document["components"]["schemas"];
    for schema in [
        "EventView",
        "AttemptView",
        "ErrorBody",
        "Receipt",
        "EventList",
    ] {
        assert!(schemas[schema].is_object(), "no schema {schema}");
    }
    let receive = &document["paths"]["/webhooks/{source}"]["post"]["responses"];
    for status in ["200", "202", "400", "401", "404", "413", "415", "503"] {
        assert!(
            receive[status].is_object(),
            "POST /webhooks has no {status}"
        );
    }
    assert_eq!(
        document["components"]["securitySchemes"]["admin_token"]["scheme"],
        "bearer"
    );
}

/// Schema-driven fuzzing (schemathesis, every check) against the live document: the
/// requests it makes from the schema succeed, the invalid ones it makes get answers
/// the document lists, and every response matches its documented schema. Bounded in
/// examples and seeded, so that a run is repeatable; set HOOKRELAY_SCHEMATHESIS_SEED
/// to explore other inputs.
/// A delivery's `status` and `waiting` are documented with exactly the values the
/// API gives.
#[tokio::test]
async fn delivery_states_and_waits_are_documented_as_enums() {
    let app = TestApp::on(Backend::Sqlite).spawn().await;
    let document: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let delivery = &document["components"]["schemas"]["DeliveryView"]["properties"];
    assert_eq!(
        delivery["status"]["enum"],
        serde_json::json!([
            "queued",
            "processing",
            "retrying",
            "delivered",
            "dead_lettered"
        ]),
        "{delivery}"
    );
    assert_eq!(
        delivery["waiting"]["enum"],
        serde_json::json!(["paused", "breaker_open", "throttled", null]),
        "{delivery}"
    );
}

#[tokio::test]
async fn schemathesis_finds_nothing_against_the_document() {
    let app = TestApp::on(Backend::Sqlite)
        .settings(&[("HOOKRELAY_ADMIN_TOKEN", "t0k3n")])
        .spawn()
        .await;
    let schemathesis = sdk_python().with_file_name("schemathesis");
    let seed = std::env::var("HOOKRELAY_SCHEMATHESIS_SEED").unwrap_or_else(|_| "20261201".into());
    let report = app.dir.path().join("schemathesis-report");
    let mut command = std::process::Command::new(schemathesis);
    command
        .arg("run")
        .arg(app.url("/openapi.json"))
        .args(["--checks", "all"])
        .args(["--header", "Authorization: Bearer t0k3n"])
        .args(["--max-examples", "40", "--workers", "1", "--seed", &seed])
        .args(["--generation-database", "none", "--no-color"])
        .arg("--report-dir")
        .arg(&report)
        .current_dir(app.dir.path());
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("schemathesis runs");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found problems:\n{text}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(text.contains("generated"), "{text}");
}
