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
use crate::domain::stored_headers::headers_to_json;
use crate::domain::time::Timestamp;
use crate::error_code::ErrorCode;
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
    /// Checks its senders' signatures.
    pub verifies: bool,
}

/// What one call of [`accept`] did, for the adapter's answer, its log line and the
/// metrics.
#[derive(Debug)]
pub struct Ingested {
    pub source: Option<KnownSource>,
    /// The event's type, when it got as far as routing and has one.
    pub event_type: Option<String>,
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
        let traced = request.traced;
        let (known, settings) = match known_source(&self.sources, &request.source) {
            Ok(source) => source,
            Err(refusal) => {
                return Ingested {
                    source: None,
                    event_type: None,
                    result: Err(refusal),
                };
            }
        };
        let decision = decide(
            &settings,
            &self.destinations,
            &known.name,
            request,
            now,
            self.max_attempts,
        );
        let mut event_type = None;
        if let Ok(Decision::Store(event)) = &decision {
            event_type.clone_from(&event.event_type);
        }
        let result = match decision {
            Ok(Decision::Challenge(challenge)) => Ok(Accepted::Challenge(challenge)),
            Ok(Decision::Store(event)) => {
                let deliveries = event.deliveries.len();
                let started = std::time::Instant::now();
                let inserted = self.events.insert_event(*event).await;
                if traced {
                    // Routing and the commit as attributes of the ingest span: spans of
                    // their own cost more than the routing they would time (measured).
                    let span = tracing::Span::current();
                    span.record("hookrelay.deliveries", deliveries as i64);
                    span.record("hookrelay.commit_ms", started.elapsed().as_secs_f64() * 1e3);
                }
                match inserted {
                    Ok(InsertOutcome::Accepted(id)) => Ok(Accepted::Stored(id)),
                    Ok(InsertOutcome::Duplicate(id)) => Ok(Accepted::Duplicate(id)),
                    Err(error) => Err(Refusal::Storage(error)),
                }
            }
            Err(refusal) => Err(refusal),
        };
        Ingested {
            source: Some(known),
            event_type,
            result,
        }
    }

    /// Whether `source` continues its senders' traces (`trust_trace_context`).
    pub fn trusts_trace_context(&self, source: &str) -> bool {
        self.sources
            .resolve(source)
            .is_some_and(|(settings, _)| settings.trust_trace_context)
    }

    /// Proves the event log can be written (readiness).
    pub async fn check_writable(&self) -> Result<(), StoreError> {
        self.events.check_writable().await
    }
}

/// A webhook as it arrived.
#[derive(Debug, Clone)]
pub struct Request {
    /// The `{source}` path segment, unchecked.
    pub source: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Its trace may be sampled: routing and the commit are recorded on its span.
    pub traced: bool,
    /// The trace context of the span that takes it in, stored with the event.
    pub trace_context: Option<String>,
}

fn known_source(
    sources: &Sources,
    name: &str,
) -> Result<(KnownSource, std::sync::Arc<SourceSettings>), Refusal> {
    let name = SourceName::parse(name).map_err(|_| Refusal::InvalidSource)?;
    let (settings, configured) = sources
        .resolve(name.as_str())
        .ok_or_else(|| Refusal::UnknownSource(name.to_string()))?;
    let verifies = settings.verify != Scheme::None;
    Ok((
        KnownSource {
            name,
            configured,
            verifies,
        },
        settings,
    ))
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
    let Request {
        headers,
        body,
        trace_context,
        ..
    } = request;
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
        trace_context,
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
mod tests;
