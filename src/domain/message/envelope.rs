//! `format = "envelope"`: one JSON document with the metadata, the sender's headers
//! and the payload, for consumers that want everything in the body.

use base64::Engine as _;
use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;

use super::facts::Facts;

#[derive(Serialize)]
struct Envelope<'a> {
    id: &'a str,
    source: &'a str,
    destination: &'a str,
    event_type: Option<&'a str>,
    received_at: String,
    attempt: u32,
    content_type: Option<&'a str>,
    /// Header name to value; repeats joined with ", " as HTTP allows.
    headers: serde_json::Map<String, serde_json::Value>,
    /// The body itself when it is JSON (as sent, not re-serialised)...
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<&'a RawValue>,
    /// ...otherwise its bytes in base64.
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_base64: Option<String>,
}

pub(super) fn document(facts: &Facts<'_>, forwarded: &[(String, Vec<u8>)]) -> Bytes {
    let mut headers = serde_json::Map::new();
    for (name, value) in forwarded {
        let value = String::from_utf8_lossy(value);
        match headers.get_mut(name) {
            Some(serde_json::Value::String(joined)) => {
                joined.push_str(", ");
                joined.push_str(&value);
            }
            _ => {
                headers.insert(name.clone(), value.into_owned().into());
            }
        }
    }
    let json = std::str::from_utf8(facts.body)
        .ok()
        .and_then(|text| serde_json::from_str::<&RawValue>(text).ok());
    let envelope = Envelope {
        id: facts.event_id,
        source: facts.source,
        destination: facts.destination,
        event_type: facts.event_type,
        received_at: facts.received_at.to_rfc3339(),
        attempt: facts.attempt,
        content_type: facts.content_type,
        headers,
        payload: json,
        payload_base64: json
            .is_none()
            .then(|| base64::engine::general_purpose::STANDARD.encode(facts.body)),
    };
    Bytes::from(serde_json::to_vec(&envelope).expect("an envelope always serialises"))
}
