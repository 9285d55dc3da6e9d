//! Events and attempts as operators see them: the JSON the API answers with, the CLI
//! prints and the documentation describes.

use serde::Serialize;
use serde_json::value::RawValue;

use crate::domain::alert::AlertKind;
use crate::domain::json_text::replace_lone_surrogates;
use crate::domain::lifecycle::{DeliveryState, EventStatus};
use crate::domain::protection::{Limits, OnDeadLetter};
use crate::domain::time::Timestamp;
use crate::domain::waiting::HeldBack;
use crate::ops::destinations::DestinationStatus;
use crate::ops::events::EventDetail;
use crate::store::{AlertRecord, AttemptRecord, DeliveryRecord, EventRecord};
use crate::telemetry::propagation::trace_id_of;

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
    /// or as a string when it is not. In `GET /events` only with
    /// `include_payload=true`.
    #[schema(value_type = Option<serde_json::Value>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<Box<RawValue>>,
    status_description: &'static str,
    /// The event's type, where its source or scheme names one.
    event_type: Option<String>,
    /// The trace the event was taken in under (32 hex digits); null when tracing
    /// was off.
    trace_id: Option<String>,
    /// One per destination the event was routed to; none when it is `filtered`.
    deliveries: Vec<DeliveryView>,
}

/// One delivery of an event.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DeliveryView {
    destination: String,
    #[schema(schema_with = delivery_status_schema)]
    status: &'static str,
    attempts: u32,
    max_attempts: u32,
    last_error: Option<String>,
    next_retry_at: Option<String>,
    updated_at: String,
    /// Why this due delivery is not being attempted: `paused`, `breaker_open` (see
    /// `next_probe_at`) or `throttled`; null when it is not held back (a retry
    /// whose time has not come is scheduled, not waiting).
    #[schema(schema_with = waiting_schema)]
    waiting: Option<&'static str>,
    /// The destination's next probe while its breaker is open.
    next_probe_at: Option<String>,
}

/// A string that is one of `names`, or null when `nullable`: the names come from the
/// domain's enums, so the document cannot drift from them.
fn one_of(names: &[&'static str], nullable: bool) -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
    let kind = if nullable {
        SchemaType::from_iter([Type::String, Type::Null])
    } else {
        SchemaType::Type(Type::String)
    };
    let mut values: Vec<Option<&str>> = names.iter().copied().map(Some).collect();
    if nullable {
        values.push(None);
    }
    ObjectBuilder::new()
        .schema_type(kind)
        .enum_values(Some(values))
        .build()
}

fn delivery_status_schema() -> utoipa::openapi::schema::Object {
    one_of(&EventStatus::DELIVERY.map(EventStatus::as_str), false)
}

fn waiting_schema() -> utoipa::openapi::schema::Object {
    one_of(&HeldBack::ALL.map(HeldBack::as_str), true)
}

/// Only a retrying delivery has a next retry; a queued one is due now.
fn next_retry_at(state: &DeliveryState) -> Option<String> {
    state
        .next_attempt_at
        .filter(|_| state.status == EventStatus::Retrying)
        .map(Timestamp::to_rfc3339)
}

impl From<&DeliveryRecord> for DeliveryView {
    fn from(delivery: &DeliveryRecord) -> Self {
        let state = &delivery.state;
        Self {
            destination: delivery.destination.clone(),
            status: state.status.as_str(),
            attempts: state.attempts,
            max_attempts: state.max_attempts,
            last_error: state.last_error.clone(),
            next_retry_at: next_retry_at(state),
            updated_at: state.updated_at.to_rfc3339(),
            waiting: None,
            next_probe_at: None,
        }
    }
}

impl EventView {
    /// The view as a list shows it: without the payload.
    pub fn without_payload(mut self) -> Self {
        self.payload = None;
        self
    }
}

impl From<EventRecord> for EventView {
    fn from(event: EventRecord) -> Self {
        let status = event.status();
        let summary = event.summary();
        // The event last changed when its latest delivery did (or when it arrived).
        let updated_at = event
            .deliveries
            .iter()
            .map(|d| d.state.updated_at)
            .max()
            .unwrap_or(event.created_at);
        Self {
            id: event.id.to_string(),
            source: event.source.clone(),
            status: status.as_str(),
            attempts: summary.map_or(0, |s| s.attempts),
            max_attempts: summary.map_or(0, |s| s.max_attempts),
            last_error: summary.and_then(|s| s.last_error.clone()),
            next_retry_at: summary.and_then(next_retry_at),
            created_at: event.created_at.to_rfc3339(),
            updated_at: updated_at.to_rfc3339(),
            payload: Some(payload_value(&event.body)),
            status_description: status.description(),
            event_type: event.event_type.clone(),
            trace_id: event
                .trace_context
                .as_deref()
                .and_then(trace_id_of)
                .map(str::to_owned),
            deliveries: event.deliveries.iter().map(DeliveryView::from).collect(),
        }
    }
}

impl From<EventDetail> for EventView {
    fn from(detail: EventDetail) -> Self {
        let mut view = EventView::from(detail.event);
        for (delivery, wait) in view.deliveries.iter_mut().zip(detail.deliveries) {
            delivery.waiting = wait.waiting.map(HeldBack::as_str);
            delivery.next_probe_at = wait.next_probe_at.map(Timestamp::to_rfc3339);
        }
        view
    }
}

/// A destination as `GET /destinations` shows it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DestinationView {
    name: String,
    /// Without credentials or query string; null for the built-in processor.
    url: Option<String>,
    /// `http`, `kafka`, `sqs`, `amqp`, `nats` or `redis`; null when not configured.
    kind: Option<&'static str>,
    /// `raw`, `envelope`, `cloudevents` or `cloudevents-structured`.
    format: Option<&'static str>,
    /// False for a destination the config no longer names (its deliveries wait).
    configured: bool,
    /// `active`, `paused`, or `failing` while its breaker is open.
    state: &'static str,
    /// Why its due deliveries wait right now: `paused`, `breaker_open` or
    /// `throttled` (held back for `rate` or `max_in_flight`); null when they do not.
    waiting: Option<&'static str>,
    /// Deliveries due now.
    backlog: i64,
    /// Deliveries waiting for a later retry.
    scheduled: i64,
    in_flight: i64,
    /// How long the oldest due delivery has waited, in seconds.
    oldest_due_age_seconds: Option<f64>,
    last_success_at: Option<String>,
    last_failure_at: Option<String>,
    /// Failures of the destination's making since its last success.
    consecutive_failures: u32,
    /// Since when the breaker has been open (null while closed).
    failing_since: Option<String>,
    /// When the open breaker sends its next probe.
    next_probe_at: Option<String>,
    paused_at: Option<String>,
    /// Since when its oldest due delivery has waited longer than `[alerts] lag` (null
    /// when it does not, or no alerts are configured).
    lagging_since: Option<String>,
    /// The last alert raised about it; null when none was.
    last_alert: Option<AlertView>,
    /// The configured limits; null for a destination the config no longer names.
    limits: Option<LimitsView>,
}

/// An alert about a destination.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AlertView {
    /// `destination.failing`, `destination.recovered`, `destination.dead_lettered`,
    /// `destination.lagging` or `destination.caught_up`.
    #[serde(rename = "type")]
    kind: &'static str,
    /// When it was raised.
    at: String,
    /// `pending` until the alert receiver took it, then `sent`.
    status: &'static str,
    sent_at: Option<String>,
    /// Tries so far.
    attempts: u32,
    /// Why the last try failed, while it is pending.
    last_error: Option<String>,
    /// Dead letters counted, for `destination.dead_lettered`.
    count: Option<i64>,
}

impl From<AlertRecord> for AlertView {
    fn from(alert: AlertRecord) -> Self {
        Self {
            kind: alert.kind.as_str(),
            at: alert.created_at.to_rfc3339(),
            status: if alert.sent_at.is_some() {
                "sent"
            } else {
                "pending"
            },
            sent_at: alert.sent_at.map(Timestamp::to_rfc3339),
            attempts: alert.attempts,
            last_error: alert.last_error,
            count: (alert.kind == AlertKind::DeadLettered).then_some(alert.count),
        }
    }
}

/// A destination's configured protection.
#[derive(Serialize, utoipa::ToSchema)]
pub struct LimitsView {
    /// `N/s`, `N/m` or `N/h`; null: unlimited.
    rate: Option<String>,
    max_in_flight: Option<u32>,
    /// `none` or `key`.
    ordering: &'static str,
    /// `skip` or `block`, for an ordered destination.
    on_dead_letter: Option<&'static str>,
    /// Failures in a row that open the breaker; null when the breaker is off.
    breaker_failures: Option<u32>,
}

impl From<Limits> for LimitsView {
    fn from(limits: Limits) -> Self {
        Self {
            rate: limits.rate.map(|rate| rate.to_string()),
            max_in_flight: limits.max_in_flight,
            ordering: if limits.ordered.is_some() {
                "key"
            } else {
                "none"
            },
            on_dead_letter: limits.ordered.map(|then| match then {
                OnDeadLetter::Skip => "skip",
                OnDeadLetter::Block => "block",
            }),
            breaker_failures: limits.breaker.map(|policy| policy.failures),
        }
    }
}

impl From<DestinationStatus> for DestinationView {
    fn from(status: DestinationStatus) -> Self {
        Self {
            waiting: status.waiting().map(HeldBack::as_str),
            name: status.name,
            url: status.url,
            kind: status.kind.map(|(kind, _)| kind.as_str()),
            format: status.kind.map(|(_, format)| format.as_str()),
            configured: status.configured,
            state: status.state.as_str(),
            backlog: status.stats.backlog,
            scheduled: status.stats.scheduled,
            in_flight: status.stats.in_flight,
            oldest_due_age_seconds: status.oldest_due_age.map(|age| age.as_secs_f64()),
            last_success_at: status.stats.last_success_at.map(Timestamp::to_rfc3339),
            last_failure_at: status.stats.last_failure_at.map(Timestamp::to_rfc3339),
            consecutive_failures: status.stats.flow.failures,
            failing_since: status.failing_since.map(Timestamp::to_rfc3339),
            next_probe_at: status.next_probe_at.map(Timestamp::to_rfc3339),
            paused_at: status.stats.paused_at.map(Timestamp::to_rfc3339),
            lagging_since: status.stats.lagging_since.map(Timestamp::to_rfc3339),
            last_alert: status.stats.last_alert.map(AlertView::from),
            limits: status.limits.map(LimitsView::from),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct DestinationList {
    pub destinations: Vec<DestinationView>,
}

/// The body's own JSON text when it is JSON, else the body as a JSON string. Not
/// re-encoded through a parsed value, which would reorder keys and round numbers.
/// A lone surrogate escape is written as `\ufffd`, which every client's parser takes.
pub fn payload_value(body: &[u8]) -> Box<RawValue> {
    std::str::from_utf8(body)
        .map_err(serde::de::Error::custom)
        .and_then(|text| serde_json::from_str::<Box<RawValue>>(&replace_lone_surrogates(text)))
        .or_else(|_| serde_json::value::to_raw_value(&String::from_utf8_lossy(body)))
        .unwrap_or_else(|_| RawValue::NULL.to_owned())
}

/// One delivery attempt.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AttemptView {
    /// The destination it went to (`built-in` for the built-in processor).
    destination: String,
    attempt: u32,
    started_at: String,
    duration_ms: u64,
    status_code: Option<u16>,
    error: Option<String>,
    response_body: Option<String>,
    /// Sent as the probe of an open breaker: it used none of the delivery's attempts
    /// unless it was the event's own failure.
    probe: bool,
}

impl From<AttemptRecord> for AttemptView {
    fn from(record: AttemptRecord) -> Self {
        Self {
            destination: record.destination,
            attempt: record.attempt,
            started_at: record.started_at.to_rfc3339(),
            duration_ms: record.duration.as_millis() as u64,
            status_code: record.status_code,
            error: record.error,
            response_body: record
                .response_body
                .map(|body| truncate(body, RESPONSE_BODY_LIMIT)),
            probe: record.probe,
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
        assert_eq!(payload_value(br#"["\ud83d"]"#).get(), r#"["\ufffd"]"#);
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
