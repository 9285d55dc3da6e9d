//! Events and attempts as operators see them: the JSON the API answers with, the CLI
//! prints and the documentation describes.

use serde::Serialize;
use serde_json::value::RawValue;

use crate::store::{AttemptRecord, EventRecord};

/// Responses carry at most this much of a destination's answer.
const RESPONSE_BODY_LIMIT: usize = 1024;

/// An event as the API shows it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct EventView {
    id: String,
    source: String,
    status: &'static str,
    attempts: u32,
    max_attempts: u32,
    last_error: Option<String>,
    next_retry_at: Option<String>,
    created_at: String,
    updated_at: String,
    /// The body exactly as received when it is JSON (key order, number formatting),
    /// or as a string when it is not.
    #[schema(value_type = serde_json::Value)]
    payload: Box<RawValue>,
    status_description: &'static str,
}

impl From<EventRecord> for EventView {
    fn from(event: EventRecord) -> Self {
        Self {
            id: event.id.to_string(),
            source: event.source,
            status: event.status.as_str(),
            attempts: event.attempts,
            max_attempts: event.max_attempts,
            last_error: event.last_error,
            next_retry_at: event.next_retry_at.map(|t| t.to_rfc3339()),
            created_at: event.created_at.to_rfc3339(),
            updated_at: event.updated_at.to_rfc3339(),
            payload: payload_value(&event.body),
            status_description: event.status.description(),
        }
    }
}

/// The body's own JSON text when it is JSON, else the body as a JSON string. Not
/// re-encoded through a parsed value, which would reorder keys and round numbers.
pub fn payload_value(body: &[u8]) -> Box<RawValue> {
    serde_json::from_slice(body)
        .or_else(|_| serde_json::value::to_raw_value(&String::from_utf8_lossy(body)))
        .unwrap_or_else(|_| RawValue::NULL.to_owned())
}

/// One delivery attempt.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AttemptView {
    attempt: u32,
    started_at: String,
    duration_ms: u64,
    status_code: Option<u16>,
    error: Option<String>,
    response_body: Option<String>,
}

impl From<AttemptRecord> for AttemptView {
    fn from(record: AttemptRecord) -> Self {
        Self {
            attempt: record.attempt,
            started_at: record.started_at.to_rfc3339(),
            duration_ms: record.duration.as_millis() as u64,
            status_code: record.status_code,
            error: record.error,
            response_body: record
                .response_body
                .map(|body| truncate(body, RESPONSE_BODY_LIMIT)),
        }
    }
}

fn truncate(mut text: String, limit: usize) -> String {
    if text.len() > limit {
        let mut end = limit;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AttemptList {
    pub attempts: Vec<AttemptView>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_payloads_are_kept_as_sent() {
        let sent = r#"{"type":"x","amount":10.50,"big":123456789012345678901234567890}"#;
        assert_eq!(payload_value(sent.as_bytes()).get(), sent);
        assert_eq!(payload_value(b" [1, 2]\n").get(), "[1, 2]");
    }

    #[test]
    fn non_json_payloads_become_strings() {
        assert_eq!(payload_value(br#"a=1&b="2""#).get(), r#""a=1&b=\"2\"""#);
        assert_eq!(payload_value(b"\xff{").get(), "\"\u{fffd}{\"");
    }

    #[test]
    fn truncation_respects_characters() {
        assert_eq!(truncate("héllo".into(), 2), "h");
        assert_eq!(truncate("abc".into(), 10), "abc");
    }
}
