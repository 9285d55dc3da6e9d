//! `format = "cloudevents"`: CloudEvents 1.0. The event id is the CloudEvent's `id`,
//! the source name its `source`, the event type its `type`.

use base64::Engine as _;
use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;

use super::facts::Facts;

pub(super) const STRUCTURED_CONTENT_TYPE: &str = "application/cloudevents+json";
/// `type` is required: an event whose source gave none has this one.
const UNTYPED: &str = "hookrelay.untyped";

/// The context attributes in binary mode, by canonical (`ce-`) name.
pub(super) fn attributes(facts: &Facts<'_>) -> Vec<(&'static str, String)> {
    vec![
        ("ce-specversion", "1.0".to_owned()),
        ("ce-id", facts.event_id.to_owned()),
        ("ce-source", facts.source.to_owned()),
        ("ce-type", event_type(facts).to_owned()),
        ("ce-time", facts.received_at.to_rfc3339()),
    ]
}

#[derive(Serialize)]
struct Structured<'a> {
    specversion: &'static str,
    id: &'a str,
    source: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    datacontenttype: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_base64: Option<String>,
}

/// Structured mode: the whole CloudEvent as one JSON document. A JSON body is its
/// `data` as sent; any other body its `data_base64`.
pub(super) fn structured(facts: &Facts<'_>) -> Bytes {
    let json = std::str::from_utf8(facts.body)
        .ok()
        .and_then(|text| serde_json::from_str::<&RawValue>(text).ok());
    let event = Structured {
        specversion: "1.0",
        id: facts.event_id,
        source: facts.source,
        kind: event_type(facts),
        time: facts.received_at.to_rfc3339(),
        datacontenttype: facts
            .content_type
            .or(json.is_some().then_some("application/json")),
        data: json,
        data_base64: json
            .is_none()
            .then(|| base64::engine::general_purpose::STANDARD.encode(facts.body)),
    };
    Bytes::from(serde_json::to_vec(&event).expect("a CloudEvent always serialises"))
}

fn event_type<'a>(facts: &Facts<'a>) -> &'a str {
    facts
        .event_type
        .filter(|t| !t.is_empty())
        .unwrap_or(UNTYPED)
}
