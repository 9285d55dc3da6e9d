//! Ingest's decisions, by example: sources, challenges, and reading only what the
//! routes read.

use super::*;
use crate::config::values::Secret;
use crate::ingest::test_headers;

fn request(source: &str, headers: &[(&str, &str)], body: &str) -> Request {
    Request {
        source: source.into(),
        headers: test_headers(headers),
        body: Bytes::from(body.to_owned()),
        traced: false,
        trace_context: None,
    }
}

const JSON: (&str, &str) = ("content-type", "application/json");

fn decided(settings: &SourceSettings, request: Request) -> Result<Decision, Refusal> {
    let name = SourceName::parse(&request.source).unwrap();
    decide(
        settings,
        &Destinations::default(),
        &name,
        request,
        Timestamp(1_700_000_000_000_000),
        5,
    )
}

#[test]
fn a_keyed_json_webhook_is_stored() {
    let settings = SourceSettings::unconfigured("s");
    let decision = decided(
        &settings,
        request("s", &[JSON, ("idempotency-key", "k-1")], r#"{"a":1}"#),
    )
    .unwrap();
    let Decision::Store(event) = decision else {
        panic!("not stored")
    };
    assert_eq!(event.key.as_str(), "k-1");
    assert_eq!(&event.body[..], br#"{"a":1}"#);
    assert_eq!(event.deliveries.len(), 1);
    assert_eq!(
        event.deliveries[0].destination,
        crate::config::destinations::BUILT_IN
    );
    assert_eq!(event.deliveries[0].max_attempts, 5);
}

#[test]
fn refusals_are_typed() {
    let settings = SourceSettings::unconfigured("s");
    type Expected = fn(&Refusal) -> bool;
    let cases: [(Request, Expected); 5] = [
        (request("s", &[("content-type", "text/plain")], "{}"), |r| {
            matches!(r, Refusal::UnsupportedMediaType { .. })
        }),
        (request("s", &[JSON], "{}"), |r| {
            matches!(r, Refusal::MissingKey)
        }),
        (
            request("s", &[JSON, ("idempotency-key", "a b")], "{}"),
            |r| matches!(r, Refusal::InvalidKey(_)),
        ),
        (
            request("s", &[JSON, ("idempotency-key", "k")], "{nope"),
            |r| matches!(r, Refusal::InvalidJson(_)),
        ),
        (
            Request {
                body: Bytes::from_static(b"{\"a\":\"\xff\"}"),
                ..request("s", &[JSON, ("idempotency-key", "k")], "")
            },
            |r| matches!(r, Refusal::InvalidJson(_)),
        ),
    ];
    for (request, expected) in cases {
        let refusal = decided(&settings, request).unwrap_err();
        assert!(expected(&refusal), "{refusal:?}");
    }
}

#[test]
fn a_bad_signature_is_refused_before_the_body_is_read() {
    let settings = SourceSettings {
        verify: Scheme::Github,
        secrets: vec![Secret::new(b"s".to_vec())],
        ..SourceSettings::unconfigured("gh")
    };
    let refusal = decided(
        &settings,
        request("gh", &[JSON, ("x-hub-signature-256", "sha256=00")], "{nope"),
    )
    .unwrap_err();
    assert!(
        matches!(refusal, Refusal::InvalidSignature(_)),
        "{refusal:?}"
    );
}

#[test]
fn slack_handshakes_are_answered_and_keys_read_from_the_one_parsed_body() {
    let mut settings = SourceSettings::unconfigured("slack");
    settings.verify = Scheme::Slack;
    settings.secrets = vec![Secret::new(b"x".to_vec())];
    settings.keys = vec![KeyLocation::Json("/event_id".into())];
    // Slack signs "v0:ts:body"; computed here for the one timestamp used.
    let body = r#"{"type":"url_verification","challenge":"c-1"}"#;
    let signed = sign_slack(b"x", 1_700_000_000, body);
    let decision = decided(
        &settings,
        request(
            "slack",
            &[
                JSON,
                ("x-slack-request-timestamp", "1700000000"),
                ("x-slack-signature", &signed),
            ],
            body,
        ),
    )
    .unwrap();
    assert!(matches!(decision, Decision::Challenge(c) if c == "c-1"));
}

fn sign_slack(secret: &[u8], ts: i64, body: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    mac.update(format!("v0:{ts}:{body}").as_bytes());
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

#[test]
fn unknown_and_invalid_sources() {
    let closed = Sources::new(false, vec![SourceSettings::unconfigured("known")]);
    assert!(matches!(
        known_source(&closed, "bad/name"),
        Err(Refusal::InvalidSource)
    ));
    assert!(matches!(
        known_source(&closed, "other"),
        Err(Refusal::UnknownSource(_))
    ));
    let (known, _) = known_source(&closed, "known").unwrap();
    assert!(known.configured);
    let open = Sources::default();
    let (known, _) = known_source(&open, "anything").unwrap();
    assert!(!known.configured);
}

/// Sources and destinations as a config file writes them.
fn configured(text: &str) -> (Sources, Destinations) {
    let mut table: toml::Table = text.parse().unwrap();
    let destinations = match table.remove("destinations") {
        Some(toml::Value::Table(t)) => {
            crate::config::destinations::parse_table(t, &|_| None).unwrap()
        }
        _ => Vec::new(),
    };
    let Some(toml::Value::Table(sources)) = table.remove("sources") else {
        panic!("no [sources]");
    };
    let parsed = crate::config::sources::parse_table(sources, &|_| None).unwrap();
    Sources::build(false, parsed, destinations).unwrap()
}

/// What ingest decides, as comparable text (the event's id aside).
fn outcome(destinations: &Destinations, settings: &SourceSettings, request: Request) -> String {
    let name = SourceName::parse(&request.source).unwrap();
    let now = Timestamp(1_700_000_000_000_000);
    match decide(settings, destinations, &name, request, now, 5) {
        Ok(Decision::Store(event)) => format!(
            "key {:?} type {:?} deliveries {:?}",
            event.key.as_str(),
            event.event_type,
            event.deliveries
        ),
        Ok(Decision::Challenge(challenge)) => format!("challenge {challenge}"),
        Err(refusal) => format!("refused {refusal:?}"),
    }
}

#[test]
fn reading_only_the_declared_parts_of_the_body_decides_as_reading_all_of_it() {
    let (sources, destinations) = configured(
        r#"
[destinations.a]
url = "http://127.0.0.1:1/a"
[destinations.b]
url = "http://127.0.0.1:1/b"
[destinations.c]
url = "http://127.0.0.1:1/c"
[destinations.ordered]
url = "http://127.0.0.1:1/o"
ordering = "key"
ordering_key = "json:/data/object/customer"
[destinations.by_item]
url = "http://127.0.0.1:1/i"
ordering = "key"
ordering_key = "json:/items/0/id"

[sources.shop]
key = "json:/meta/id"
[[sources.shop.routes]]
destination = "a"
event_types = ["order.*"]
filter = { body = { data = { object = { amount = { "$gte" = 1000 }, currency = { "$in" = ["eur", "usd"] } } } } }
[[sources.shop.routes]]
destination = "b"
filter = { body = { "$or" = [{ items = { sku = "x" } }, { tags = "vip" }, { "$not" = { data = { object = { status = { "$exist" = true } } } } }] } }
[[sources.shop.routes]]
destination = "c"
filter = { "$or" = [{ body = { nested = { deep = [1, 2] } } }, { headers = { x-env = "prod" } }] }
[[sources.shop.routes]]
destination = "ordered"
filter = { body = {} }
[[sources.shop.routes]]
destination = "by_item"

[sources.slack]
verify = "slack"
secret = "x"
key = "json:/event_id"
[[sources.slack.routes]]
destination = "a"
event_types = ["message"]
"#,
    );
    let bodies = [
        r#"{"type":"order.created","meta":{"id":"m-1"},"data":{"object":{"amount":1200,"currency":"eur","customer":"cus_1","status":"paid","other":[1,{"x":2}]}},"items":[{"sku":"x","id":"i-1"}],"tags":["vip","new"],"nested":{"deep":[1,2]}}"#,
        r#"{"type":"order.created","meta":{"id":"m-2"},"data":{"object":{"amount":999,"currency":"eur","customer":{"id":7}}},"items":[{"sku":"y"},{"sku":"x"}],"tags":"vip"}"#,
        r#"{"type":"refund","meta":{"id":"m-3"},"data":{"object":{"amount":"1200","currency":["usd"]}},"nested":{"deep":[1,2,3]}}"#,
        r#"{"type":7,"meta":{"id":"m-4"},"items":[{"id":"i-4","sku":["x"]}],"data":[{"object":{"amount":5000,"currency":"usd"}}]}"#,
        r#"{"type":"order.paid","meta":{"id":"m-5"},"data":null,"data":{"object":{"amount":1e3,"currency":"usd","status":null}}}"#,
        r#"[{"meta":{"id":"m-6"}}]"#,
        r#""just a string""#,
        r#"{"meta":{"id":"m-7"},"nested":{"deep":[[1,2]]}}"#,
    ];
    assert_ne!(sources.get("shop").unwrap().body_reads, BodyReads::Whole);
    for body in bodies {
        for env in ["prod", "dev"] {
            let request = || Request {
                source: "shop".into(),
                headers: test_headers(&[JSON, ("x-env", env)]),
                body: Bytes::from(body.to_owned()),
                traced: false,
                trace_context: None,
            };
            let projected = sources.get("shop").unwrap();
            let whole = SourceSettings {
                body_reads: BodyReads::Whole,
                ..(*projected).clone()
            };
            assert_eq!(
                outcome(&destinations, &projected, request()),
                outcome(&destinations, &whole, request()),
                "{body} with x-env {env}"
            );
        }
    }
    let slack = sources.get("slack").unwrap();
    assert_ne!(slack.body_reads, BodyReads::Whole);
    let whole = SourceSettings {
        body_reads: BodyReads::Whole,
        ..(*slack).clone()
    };
    for body in [
        r#"{"type":"url_verification","challenge":"c-1","token":"t"}"#,
        r#"{"type":"event_callback","event_id":"Ev1","event":{"type":"message","text":"hi"}}"#,
        r#"{"type":"event_callback","event_id":"Ev2","event":{"type":"reaction_added"}}"#,
    ] {
        let request = || {
            let ts = "1700000000";
            Request {
                source: "slack".into(),
                headers: test_headers(&[
                    JSON,
                    ("x-slack-request-timestamp", ts),
                    ("x-slack-signature", &sign_slack(b"x", 1_700_000_000, body)),
                ]),
                body: Bytes::from(body.to_owned()),
                traced: false,
                trace_context: None,
            }
        };
        let decided = outcome(&destinations, &slack, request());
        assert!(!decided.starts_with("refused"), "{decided}");
        assert_eq!(decided, outcome(&destinations, &whole, request()), "{body}");
    }
}
