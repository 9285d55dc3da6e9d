//! NATS JetStream: published to the subject, counted sent on JetStream's publish ack
//! (the message is stored in a stream). `Nats-Msg-Id` is the event id, so a retry
//! after a lost ack is dropped by the stream's duplicate window, not stored twice.

use async_nats::jetstream::context::PublishErrorKind;
use async_trait::async_trait;
use tokio::sync::OnceCell;

use super::{Broker, Refusal};
use crate::config::endpoints::NatsTarget;
use crate::domain::message::{Naming, Outbound};
use crate::store::ClaimedDelivery;
use crate::telemetry::error_chain;

pub struct NatsBroker {
    target: NatsTarget,
    /// Connected on first use; the client reconnects by itself afterwards.
    jetstream: OnceCell<async_nats::jetstream::Context>,
}

impl NatsBroker {
    pub fn new(target: &NatsTarget) -> Self {
        Self {
            target: target.clone(),
            jetstream: OnceCell::new(),
        }
    }

    async fn jetstream(&self) -> Result<&async_nats::jetstream::Context, Refusal> {
        self.jetstream
            .get_or_try_init(|| async {
                let client = async_nats::ConnectOptions::new()
                    .name(concat!("hookrelay/", env!("CARGO_PKG_VERSION")))
                    .connect(self.target.server.as_str())
                    .await
                    .map_err(|e| Refusal::unavailable(format!("nats: {}", error_chain(&e))))?;
                Ok(async_nats::jetstream::new(client))
            })
            .await
    }
}

#[async_trait]
impl Broker for NatsBroker {
    async fn publish(
        &self,
        message: &Outbound,
        event: &ClaimedDelivery,
    ) -> Result<String, Refusal> {
        let subject = self
            .target
            .subject
            .render(&event.source, event.event_type.as_deref());
        let mut headers = async_nats::HeaderMap::new();
        for (name, value) in message.broker_headers(Naming::Dashed) {
            headers.append(name.as_str(), String::from_utf8_lossy(&value).as_ref());
        }
        if let Some(key) = &message.key {
            headers.insert("hookrelay-key", key.as_str());
        }
        headers.insert(
            async_nats::header::NATS_MESSAGE_ID,
            message.dedup_id.as_str(),
        );
        let jetstream = self.jetstream().await?;
        let ack = jetstream
            .publish_with_headers(subject.clone(), headers, message.body.clone())
            .await
            .map_err(|e| classify(&subject, e.kind(), &e))?
            .await
            .map_err(|e| classify(&subject, e.kind(), &e))?;
        let duplicate = if ack.duplicate { " (duplicate)" } else { "" };
        Ok(format!(
            "stream {} sequence {}{duplicate}",
            ack.stream, ack.sequence
        ))
    }
}

fn classify(subject: &str, kind: PublishErrorKind, error: &dyn std::error::Error) -> Refusal {
    let text = error_chain(error);
    match kind {
        PublishErrorKind::StreamNotFound => Refusal::misconfigured(format!(
            "nats: no JetStream stream takes subject {subject:?}"
        )),
        // JetStream's own answers (error codes 10054 and 10003): the stream will never
        // take this message.
        _ if text.contains("message size exceeds") || text.contains("maximum payload") => {
            Refusal::rejected(format!("nats: the message was refused: {text}"))
        }
        _ if text.contains("authorization") || text.contains("permissions violation") => {
            Refusal::misconfigured(format!("nats: {text}"))
        }
        _ => Refusal::unavailable(format!("nats: {text}")),
    }
}
