//! What one attempt sends, whatever carries it: the body in the destination's
//! `format`, hookrelay's metadata, the sender's headers that travel on, the message
//! key and the deduplication id. Transports (HTTP, Kafka, SQS, AMQP, NATS, Redis) only
//! name these the way their protocol does.

mod cloudevents;
mod envelope;
mod facts;
mod forwarded;

use std::str::FromStr;

use bytes::Bytes;

use super::signing::sign_standard;

pub use facts::Facts;
use forwarded::forwarded_headers;

/// How the event is put into the message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Format {
    /// The body byte for byte as the sender posted it; metadata as headers.
    #[default]
    Raw,
    /// One JSON document with the metadata, the sender's headers and the payload.
    Envelope,
    /// CloudEvents 1.0: attributes as headers (binary mode) or, `structured`, one
    /// `application/cloudevents+json` document.
    CloudEvents { structured: bool },
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "raw" => Ok(Self::Raw),
            "envelope" => Ok(Self::Envelope),
            "cloudevents" => Ok(Self::CloudEvents { structured: false }),
            "cloudevents-structured" => Ok(Self::CloudEvents { structured: true }),
            other => Err(format!(
                "{other:?} is not a format: use \"raw\", \"envelope\", \"cloudevents\" or \
                 \"cloudevents-structured\""
            )),
        }
    }
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Raw => "raw",
            Self::Envelope => "envelope",
            Self::CloudEvents { structured: false } => "cloudevents",
            Self::CloudEvents { structured: true } => "cloudevents-structured",
        }
    }
}

/// Standard Webhooks signing of what is sent.
#[derive(Debug, Clone, Copy)]
pub struct Signing<'a> {
    pub key: &'a [u8],
    /// Seconds since the epoch.
    pub timestamp: i64,
}

/// One message, ready for a transport.
#[derive(Debug, Clone, PartialEq)]
pub struct Outbound {
    pub event_id: String,
    pub body: Bytes,
    pub content_type: Option<String>,
    /// hookrelay's metadata by canonical name: `hookrelay-*`, `webhook-*` and, in
    /// CloudEvents binary mode, `ce-*`. See [`Outbound::metadata_named`].
    pub metadata: Vec<(&'static str, String)>,
    /// The sender's headers that travel with the message (raw and binary modes).
    pub forwarded: Vec<(String, Vec<u8>)>,
    /// The broker's message key: Kafka record key, SQS FIFO group, AMQP header.
    pub key: Option<String>,
    /// The broker's deduplication id: the event id, and a new one for each replay.
    pub dedup_id: String,
}

/// How a broker spells metadata names (HTTP says `X-Hookrelay-*`: see the HTTP
/// transport).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// `hookrelay-*` and `ce-*`: NATS and AMQP headers (CloudEvents' RabbitMQ
    /// binding).
    Dashed,
    /// `hookrelay-*` and `ce_*`: Kafka headers (CloudEvents' Kafka binding), Redis
    /// fields and SQS attributes.
    Underscored,
}

impl Outbound {
    /// The metadata named for a transport.
    pub fn metadata_named(&self, naming: Naming) -> impl Iterator<Item = (String, &str)> {
        self.metadata.iter().map(move |(name, value)| {
            let named = match naming {
                Naming::Underscored if name.starts_with("ce-") => format!("ce_{}", &name[3..]),
                _ => (*name).to_owned(),
            };
            (named, value.as_str())
        })
    }
}

impl Outbound {
    /// Every header or attribute a broker message carries, in order: the metadata
    /// named for the transport; `webhook-id` = the event id unless the message already
    /// has one from hookrelay's signature, or carries the sender's own `webhook-*`
    /// headers (which must reach the consumer unchanged for its signature to verify);
    /// `content-type`; then the sender's headers.
    pub fn broker_headers(&self, naming: Naming) -> Vec<(String, Vec<u8>)> {
        let mut headers: Vec<(String, Vec<u8>)> = self
            .metadata_named(naming)
            .map(|(name, value)| (name, value.as_bytes().to_vec()))
            .collect();
        // A sender's Standard Webhooks headers, kept, must stay as they are.
        let has_id = self.metadata.iter().any(|(n, _)| *n == "webhook-id")
            || self
                .forwarded
                .iter()
                .any(|(n, _)| n.starts_with("webhook-"));
        if !has_id {
            headers.push(("webhook-id".to_owned(), self.event_id.as_bytes().to_vec()));
        }
        if let Some(content_type) = &self.content_type {
            headers.push(("content-type".to_owned(), content_type.as_bytes().to_vec()));
        }
        headers.extend(
            self.forwarded
                .iter()
                .filter(|(name, _)| name != "content-type")
                .cloned(),
        );
        headers
    }
}

/// Builds the message an attempt sends; `headers` are the sender's, as stored.
pub fn build(
    facts: &Facts<'_>,
    headers: Vec<(String, Vec<u8>)>,
    format: Format,
    signing: Option<Signing<'_>>,
) -> Outbound {
    let mut metadata: Vec<(&'static str, String)> = Vec::with_capacity(12);
    metadata.push(("hookrelay-event-id", facts.event_id.to_owned()));
    metadata.push(("hookrelay-source", facts.source.to_owned()));
    metadata.push(("hookrelay-destination", facts.destination.to_owned()));
    if let Some(event_type) = facts.event_type {
        metadata.push(("hookrelay-event-type", event_type.to_owned()));
    }
    metadata.push(("hookrelay-received-at", facts.received_at.to_rfc3339()));
    metadata.push(("hookrelay-attempt", facts.attempt.to_string()));
    let mut forwarded = forwarded_headers(headers, signing.is_some());
    if let Some(trace) = facts.trace {
        forwarded.retain(|(name, _)| name != "traceparent" && name != "tracestate");
        metadata.extend(trace.iter().cloned());
    }
    let (body, content_type, forwarded) = match format {
        Format::Raw => (
            facts.body.clone(),
            facts.content_type.map(str::to_owned),
            forwarded,
        ),
        Format::Envelope => (
            envelope::document(facts, &forwarded),
            Some("application/json".to_owned()),
            Vec::new(),
        ),
        Format::CloudEvents { structured: false } => {
            metadata.extend(cloudevents::attributes(facts));
            (
                facts.body.clone(),
                facts.content_type.map(str::to_owned),
                forwarded,
            )
        }
        Format::CloudEvents { structured: true } => (
            cloudevents::structured(facts),
            Some(cloudevents::STRUCTURED_CONTENT_TYPE.to_owned()),
            Vec::new(),
        ),
    };
    if let Some(signing) = signing {
        metadata.push(("webhook-id", facts.event_id.to_owned()));
        metadata.push(("webhook-timestamp", signing.timestamp.to_string()));
        metadata.push((
            "webhook-signature",
            sign_standard(signing.key, facts.event_id, signing.timestamp, &body),
        ));
    }
    let dedup_id = if facts.attempts_at_replay == 0 {
        facts.event_id.to_owned()
    } else {
        format!("{}.r{}", facts.event_id, facts.attempts_at_replay)
    };
    Outbound {
        event_id: facts.event_id.to_owned(),
        body,
        content_type,
        metadata,
        forwarded,
        key: facts.ordering_key.map(str::to_owned),
        dedup_id,
    }
}

#[cfg(test)]
mod tests;
