//! Sending one attempt to its destination, whatever its kind: the message is built
//! once ([`crate::domain::message`]); HTTP posts it, a broker publishes it and counts
//! it sent only on the broker's acknowledgement.

#[cfg(feature = "amqp")]
mod amqp;
pub mod http;
#[cfg(feature = "kafka")]
mod kafka;
#[cfg(feature = "nats")]
mod nats;
mod outcome;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "sqs")]
mod sqs;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::destinations::DestinationSettings;
use crate::config::endpoints::Endpoint;
use crate::domain::message::{self, Facts, Outbound, Signing};
use crate::domain::protection::Fault;
use crate::domain::stored_headers::headers_from_json;
use crate::domain::time::Timestamp;
use crate::store::ClaimedDelivery;

pub use outcome::{Broker, Delivery, Refusal};

/// Every destination's way out: the shared HTTP client, and one publisher per broker
/// destination, made on its first attempt.
pub struct Publishers {
    http: reqwest::Client,
    brokers: Mutex<HashMap<String, Arc<dyn Broker>>>,
}

impl Publishers {
    pub fn new(http: reqwest::Client) -> Self {
        Self {
            http,
            brokers: Mutex::default(),
        }
    }

    pub async fn send(
        &self,
        destination: &DestinationSettings,
        event: &ClaimedDelivery,
        trace: Option<&[(&'static str, String)]>,
    ) -> Delivery {
        let message = outbound(destination, event, trace);
        let broker = match &destination.endpoint {
            Endpoint::Http(url) => {
                return http::send(&self.http, url, destination, message).await;
            }
            _ => match self.broker(destination).await {
                Ok(broker) => broker,
                Err(refusal) => return refusal.into_delivery(),
            },
        };
        let published = tokio::time::timeout(destination.timeout, broker.publish(&message, event));
        match published.await {
            Ok(Ok(ack)) => Delivery::acknowledged(ack),
            Ok(Err(refusal)) => refusal.into_delivery(),
            Err(_) => Delivery::failed(
                format!(
                    "no acknowledgement within {}",
                    humantime::format_duration(destination.timeout)
                ),
                Fault::Destination,
            ),
        }
    }

    /// The destination's publisher, made on first use.
    async fn broker(&self, destination: &DestinationSettings) -> Result<Arc<dyn Broker>, Refusal> {
        if let Some(broker) = self.lock().get(&destination.name) {
            return Ok(broker.clone());
        }
        let made = make_broker(&destination.endpoint, destination.timeout).await?;
        // Two attempts may both have made one: the first kept is the one used.
        Ok(self
            .lock()
            .entry(destination.name.clone())
            .or_insert(made)
            .clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<dyn Broker>>> {
        self.brokers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

async fn make_broker(endpoint: &Endpoint, timeout: Duration) -> Result<Arc<dyn Broker>, Refusal> {
    let _ = timeout;
    match endpoint {
        #[cfg(feature = "kafka")]
        Endpoint::Kafka(target) => Ok(Arc::new(kafka::KafkaBroker::new(target, timeout)?)),
        #[cfg(feature = "sqs")]
        Endpoint::Sqs(target) => Ok(Arc::new(sqs::SqsBroker::new(target, timeout).await)),
        #[cfg(feature = "amqp")]
        Endpoint::Amqp(target) => Ok(Arc::new(amqp::AmqpBroker::new(target))),
        #[cfg(feature = "nats")]
        Endpoint::Nats(target) => Ok(Arc::new(nats::NatsBroker::new(target, timeout))),
        #[cfg(feature = "redis")]
        Endpoint::Redis(target) => Ok(Arc::new(redis::RedisBroker::new(target)?)),
        other => Err(Refusal::misconfigured(format!(
            "this build of hookrelay has no {} destinations (cargo feature `{}`)",
            other.kind().as_str(),
            other.kind().as_str()
        ))),
    }
}

/// The message for this attempt, in the destination's format.
fn outbound(
    destination: &DestinationSettings,
    event: &ClaimedDelivery,
    trace: Option<&[(&'static str, String)]>,
) -> Outbound {
    let headers = headers_from_json(&event.headers);
    let facts = Facts {
        event_id: event.event_id.as_str(),
        source: &event.source,
        destination: &event.destination,
        event_type: event.event_type.as_deref(),
        received_at: event.received_at,
        attempt: event.attempt,
        attempts_at_replay: event.attempts_at_replay,
        content_type: event.content_type.as_deref(),
        body: &event.body,
        ordering_key: event.ordering_key.as_deref().filter(|k| !k.is_empty()),
        trace,
    };
    let signing = destination.signing_secret.as_ref().map(|secret| Signing {
        key: secret.bytes(),
        timestamp: Timestamp::now().0 / 1_000_000,
    });
    message::build(&facts, headers, destination.format, signing)
}
