//! What a message is built from: the stored event and its delivery.

use bytes::Bytes;

use crate::domain::time::Timestamp;

/// The stored event and delivery an attempt is made for.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub event_id: &'a str,
    pub source: &'a str,
    pub destination: &'a str,
    pub event_type: Option<&'a str>,
    pub received_at: Timestamp,
    pub attempt: u32,
    /// Attempts made before the last replay: a replay is a new message to brokers
    /// that deduplicate.
    pub attempts_at_replay: u32,
    pub content_type: Option<&'a str>,
    pub body: &'a Bytes,
    /// The delivery's ordering key (the destination's `ordering_key`).
    pub ordering_key: Option<&'a str>,
    /// When hookrelay traces: the trace context this delivery carries instead of the
    /// sender's (`traceparent`, `tracestate`; none when the destination is outside
    /// the trace). `None`: hookrelay does not trace, the sender's travel on.
    pub trace: Option<&'a [(&'static str, String)]>,
}
