//! Accepting a webhook: which source, which media type, the signature, the body, the
//! idempotency key, Slack's handshake; then the durable insert. No HTTP types beyond
//! the header map: the HTTP adapter only turns the outcome into a response.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, header};
use serde_json::Value;

use crate::config::destinations::Destinations;
use crate::config::sources::{SourceSettings, Sources};
use crate::domain::body_reads::BodyReads;
use crate::domain::event::{EventId, InvalidEventType, SourceName};
use crate::domain::json_text;
use crate::domain::scheme::{KeyLocation, Scheme};
use crate::domain::time::Timestamp;
use crate::error_code::ErrorCode;
use crate::ingest::headers_to_json;
use crate::ingest::key::{self, KeyError};
use crate::ingest::media::{self, MediaType};
use crate::ingest::signature::{self, SignatureError};
use crate::ops::routing::{self, Routable};
use crate::store::{EventLog, InsertOutcome, NewEvent, StoreError};

/// What became of a webhook that hookrelay took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// Stored durably: a new event.
    Stored(EventId),
    /// The source sent this key before; the id is the first event's.
    Duplicate(EventId),
    /// Slack's `url_verification`: answered with its challenge, not stored.
    Challenge(String),
}

/// Why a webhook was not taken. Each maps to one documented error code.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("source must be 1-64 characters of A-Z a-z 0-9 _ - .")]
    InvalidSource,
    #[error("source {0:?} is not configured")]
    UnknownSource(String),
    #[error("source {source_name} accepts {accepted}")]
    UnsupportedMediaType {
        source_name: String,
        accepted: String,
    },
    #[error("signature missing or invalid")]
    InvalidSignature(#[source] SignatureError),
    #[error("request body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error(
        "send an Idempotency-Key header (or configure the source's key) so that redeliveries \
         can be recognised"
    )]
    MissingKey,
    #[error("{0}")]
    InvalidKey(String),
    #[error("{0}")]
    InvalidEventType(#[from] InvalidEventType),
    #[error("storage is unavailable")]
    Storage(#[source] StoreError),
}

impl Refusal {
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidSource => ErrorCode::InvalidSource,
            Self::UnknownSource(_) => ErrorCode::UnknownSource,
            Self::UnsupportedMediaType { .. } => ErrorCode::UnsupportedMediaType,
            Self::InvalidSignature(_) => ErrorCode::InvalidSignature,
            Self::InvalidJson(_) => ErrorCode::InvalidJson,
            Self::MissingKey => ErrorCode::MissingIdempotencyKey,
            Self::InvalidKey(_) => ErrorCode::InvalidIdempotencyKey,
            Self::InvalidEventType(_) => ErrorCode::InvalidEventType,
            Self::Storage(error) if error.is_unavailable() => ErrorCode::StorageUnavailable,
            Self::Storage(_) => ErrorCode::InternalError,
        }
    }
}

/// The source a webhook was for, once it is one hookrelay accepts.
#[derive(Debug, Clone)]
pub struct KnownSource {
    pub name: SourceName,
    /// Named in the config file (not merely accepted as an unknown source).
    pub configured: bool,
}

/// What one call of [`accept`] did, for the adapter's answer, its log line and the
/// metrics.
#[derive(Debug)]
pub struct Ingested {
    pub source: Option<KnownSource>,
    pub result: Result<Accepted, Refusal>,
}

/// What the checks decided, before anything is stored.
#[derive(Debug)]
pub enum Decision {
    Store(Box<NewEvent>),
    Challenge(String),
}

/// The webhook's way in, as every adapter calls it: the sources and routes, and the
/// event log that makes each accepted webhook durable.
#[derive(Clone)]
pub struct Ingest {
    events: Arc<dyn EventLog>,
    sources: Arc<Sources>,
    destinations: Arc<Destinations>,
    /// Attempts a delivery gets where its destination does not say.
    max_attempts: u32,
}

impl Ingest {
    pub fn new(
        events: Arc<dyn EventLog>,
        sources: Arc<Sources>,
        destinations: Arc<Destinations>,
        max_attempts: u32,
    ) -> Self {
        Self {
            events,
            sources,
            destinations,
            max_attempts,
        }
    }

    /// Checks a webhook and stores it. `now` is when it arrived.
    pub async fn accept(&self, request: Request, now: Timestamp) -> Ingested {
        accept(
            self.events.as_ref(),
            &self.sources,
            &self.destinations,
            self.max_attempts,
            request,
            now,
        )
        .await
    }

    /// Proves the event log can be written (readiness).
    pub async fn check_writable(&self) -> Result<(), StoreError> {
        self.events.check_writable().await
    }
}

async fn accept(
    store: &dyn EventLog,
    sources: &Sources,
    destinations: &Destinations,
    max_attempts: u32,
    request: Request,
    now: Timestamp,
) -> Ingested {
    let source = match known_source(sources, &request.source) {
        Ok(source) => source,
        Err(refusal) => {
            return Ingested {
                source: None,
                result: Err(refusal),
            };
        }
    };
    let (known, settings) = source;
    let result = match decide(
        &settings,
        destinations,
        &known.name,
        request,
        now,
        max_attempts,
    ) {
        Ok(Decision::Challenge(challenge)) => Ok(Accepted::Challenge(challenge)),
        Ok(Decision::Store(event)) => match store.insert_event(*event).await {
            Ok(InsertOutcome::Accepted(id)) => Ok(Accepted::Stored(id)),
            Ok(InsertOutcome::Duplicate(id)) => Ok(Accepted::Duplicate(id)),
            Err(error) => Err(Refusal::Storage(error)),
        },
        Err(refusal) => Err(refusal),
    };
    Ingested {
        source: Some(known),
        result,
    }
}

/// A webhook as it arrived.
#[derive(Debug, Clone)]
pub struct Request {
    /// The `{source}` path segment, unchecked.
    pub source: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

fn known_source(
    sources: &Sources,
    name: &str,
) -> Result<(KnownSource, std::sync::Arc<SourceSettings>), Refusal> {
    let name = SourceName::parse(name).map_err(|_| Refusal::InvalidSource)?;
    let (settings, configured) = sources
        .resolve(name.as_str())
        .ok_or_else(|| Refusal::UnknownSource(name.to_string()))?;
    Ok((KnownSource { name, configured }, settings))
}

/// The checks, in order, with no I/O: media type, signature on the raw bytes, JSON,
/// Slack's handshake, the key; then the routes. The body is parsed at most once.
pub fn decide(
    settings: &SourceSettings,
    destinations: &Destinations,
    source: &SourceName,
    request: Request,
    now: Timestamp,
    max_attempts: u32,
) -> Result<Decision, Refusal> {
    let Request { headers, body, .. } = request;
    let media = media::classify(&headers, &settings.content_types).ok_or_else(|| {
        Refusal::UnsupportedMediaType {
            source_name: source.to_string(),
            accepted: settings.content_types.join(", "),
        }
    })?;
    // On the raw bytes, before anything is parsed or stored.
    signature::verify(settings, &headers, &body, now.0 / 1_000_000)
        .map_err(Refusal::InvalidSignature)?;

    let tree = if media == MediaType::Json {
        parse_json(&body, needs_tree(settings).then_some(&settings.body_reads))?
    } else {
        None
    };
    if settings.verify == Scheme::Slack
        && let Some(challenge) = tree.as_ref().and_then(slack_challenge)
    {
        return Ok(Decision::Challenge(challenge));
    }
    let key =
        key::extract(&headers, &settings.keys, tree.as_ref(), &body).map_err(
            |error| match error {
                KeyError::Missing => Refusal::MissingKey,
                KeyError::Invalid(reason) => Refusal::InvalidKey(reason),
            },
        )?;
    let (event_type, deliveries) = routing::route(
        settings,
        destinations,
        max_attempts,
        &Routable {
            headers: &headers,
            body: tree.as_ref(),
            raw_body: &body,
        },
    )?;
    Ok(Decision::Store(Box::new(NewEvent {
        id: EventId::generate(),
        event_type,
        content_type: headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        headers: headers_to_json(&headers),
        source: source.clone(),
        key,
        body,
        received_at: now,
        deliveries,
    })))
}

/// The body as routing reads it, by ingest's rule: a tree when the content type is
/// one of the source's JSON types, `None` for another accepted type (filters read its
/// text), refused as ingest refuses it. For `routes test` and for routing a stored
/// event again, which read the whole body.
pub fn body_as_routed(
    settings: &SourceSettings,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Option<Value>, Refusal> {
    let media = media::classify(headers, &settings.content_types).ok_or_else(|| {
        Refusal::UnsupportedMediaType {
            source_name: settings.name.clone(),
            accepted: settings.content_types.join(", "),
        }
    })?;
    match media {
        MediaType::Json => parse_json(body, Some(&BodyReads::Whole)),
        MediaType::Other => Ok(None),
    }
}

/// Whether anything will read inside the body: Slack's handshake, a key or the event
/// type in it, or a route.
fn needs_tree(settings: &SourceSettings) -> bool {
    settings.verify == Scheme::Slack
        || settings
            .keys
            .iter()
            .chain(&settings.event_type)
            .any(|location| matches!(location, KeyLocation::Json(_)))
        || settings.routes_read_the_event()
}

/// Validates the body as JSON (UTF-8 throughout, RFC 8259), building a tree only
/// when something will read it, and of the parts it reads.
fn parse_json(body: &[u8], reads: Option<&BodyReads>) -> Result<Option<Value>, Refusal> {
    // Checked on the whole body first: skipping a string without building a tree
    // does not look inside it.
    let text = std::str::from_utf8(body).map_err(|e| {
        Refusal::InvalidJson(format!(
            "the body is not UTF-8 (invalid byte at offset {})",
            e.valid_up_to()
        ))
    })?;
    if let Some(reads) = reads {
        reads
            .parse(text)
            .map(Some)
            .map_err(|e| Refusal::InvalidJson(e.to_string()))
    } else {
        // Any JSON value is fine, arrays included; no tree is built, and the same
        // rule holds as where one is.
        json_text::check(text)
            .map(|_| None)
            .map_err(|e| Refusal::InvalidJson(e.to_string()))
    }
}

/// Slack's handshake when an events URL is registered: answered, never stored.
fn slack_challenge(body: &Value) -> Option<String> {
    if body.get("type")?.as_str()? != "url_verification" {
        return None;
    }
    body.get("challenge")?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::values::Secret;
    use crate::ingest::test_headers;

    fn request(source: &str, headers: &[(&str, &str)], body: &str) -> Request {
        Request {
            source: source.into(),
            headers: test_headers(headers),
            body: Bytes::from(body.to_owned()),
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
                }
            };
            let decided = outcome(&destinations, &slack, request());
            assert!(!decided.starts_with("refused"), "{decided}");
            assert_eq!(decided, outcome(&destinations, &whole, request()), "{body}");
        }
    }
}
