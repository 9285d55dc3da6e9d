//! Amazon SQS (or any endpoint that speaks its API): `SendMessage`, counted sent when
//! SQS returns the message id. Credentials and region come from the usual AWS
//! environment and profile chain; the region also from the queue URL or `region`.
//!
//! SQS takes at most 10 message attributes: the first 9 of hookrelay's metadata in
//! the order below are attributes of their own; everything else (the sender's
//! headers included) travels in one more, `hookrelay-headers`, a JSON object.
//! FIFO queues get the message key as the message group (one group, `hookrelay`,
//! for events without a key) and the event id as the deduplication id.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::MessageAttributeValue;
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use base64::Engine as _;

use super::outcome::{Broker, Refusal};
use crate::config::endpoints::SqsTarget;
use crate::domain::message::{Naming, Outbound};
use crate::store::ClaimedDelivery;
use crate::telemetry::error_chain;

/// SQS's own limit on attributes per message.
const MAX_ATTRIBUTES: usize = 10;
/// The group of a FIFO queue's messages that have no key.
const DEFAULT_GROUP: &str = "hookrelay";
/// Which metadata gets an attribute of its own, first first.
const ATTRIBUTE_ORDER: &[&str] = &[
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "hookrelay-event-id",
    "hookrelay-source",
    "hookrelay-event-type",
    "content-type",
    "traceparent",
    "hookrelay-attempt",
    "hookrelay-received-at",
    "hookrelay-destination",
    "ce_id",
    "ce_source",
    "ce_type",
    "ce_specversion",
    "ce_time",
];

pub struct SqsBroker {
    client: aws_sdk_sqs::Client,
    target: SqsTarget,
}

impl SqsBroker {
    pub async fn new(target: &SqsTarget, timeout: Duration) -> Self {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http)
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .operation_timeout(timeout)
                    .build(),
            );
        if let Some(region) = &target.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some((id, secret)) = &target.credentials {
            loader = loader.credentials_provider(aws_sdk_sqs::config::Credentials::new(
                id.clone(),
                secret.clone(),
                None,
                None,
                "hookrelay config",
            ));
        }
        if let Some(endpoint) = &target.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        let config = loader.load().await;
        let mut builder = aws_sdk_sqs::config::Builder::from(&config);
        if config.region().is_none() {
            // A local endpoint without a region anywhere: any region signs for it.
            builder = builder.region(Region::from_static("us-east-1"));
        }
        Self {
            client: aws_sdk_sqs::Client::from_conf(builder.build()),
            target: target.clone(),
        }
    }
}

#[async_trait]
impl Broker for SqsBroker {
    async fn publish(
        &self,
        message: &Outbound,
        _event: &ClaimedDelivery,
    ) -> Result<String, Refusal> {
        let (body, base64) = match std::str::from_utf8(&message.body) {
            Ok(text) if text.chars().all(sqs_allows) => (text.to_owned(), false),
            // SQS bodies are text: anything else goes in base64, and says so.
            _ => (
                base64::engine::general_purpose::STANDARD.encode(&message.body),
                true,
            ),
        };
        let mut request = self
            .client
            .send_message()
            .queue_url(&self.target.queue_url)
            .message_body(body)
            .set_message_attributes(Some(attributes(message, base64)));
        if self.target.fifo {
            request = request
                .message_group_id(message.key.as_deref().unwrap_or(DEFAULT_GROUP))
                .message_deduplication_id(&message.dedup_id);
        }
        let sent = request.send().await.map_err(|e| classify(&e))?;
        Ok(format!(
            "message id {}",
            sent.message_id().unwrap_or("(none given)")
        ))
    }
}

/// The attributes of one message: at most [`MAX_ATTRIBUTES`].
fn attributes(message: &Outbound, base64: bool) -> HashMap<String, MessageAttributeValue> {
    let mut all = message.broker_headers(Naming::Underscored);
    if let Some(key) = &message.key {
        all.push(("hookrelay-key".to_owned(), key.as_bytes().to_vec()));
    }
    let rank = |name: &str| {
        ATTRIBUTE_ORDER
            .iter()
            .position(|n| *n == name)
            .unwrap_or(usize::MAX)
    };
    all.sort_by_key(|(name, _)| rank(name));
    let own = MAX_ATTRIBUTES - 1 - usize::from(base64);
    let mut attributes = HashMap::with_capacity(MAX_ATTRIBUTES);
    let mut rest = serde_json::Map::new();
    for (index, (name, value)) in all.into_iter().enumerate() {
        let value = String::from_utf8_lossy(&value).into_owned();
        if index < own && rank(&name) != usize::MAX && !attributes.contains_key(&name) {
            attributes.insert(name, text_attribute(value));
        } else {
            rest.insert(name, value.into());
        }
    }
    if !rest.is_empty() {
        let json = serde_json::Value::Object(rest).to_string();
        attributes.insert("hookrelay-headers".to_owned(), text_attribute(json));
    }
    if base64 {
        attributes.insert(
            "hookrelay-body-encoding".to_owned(),
            text_attribute("base64".to_owned()),
        );
    }
    attributes
}

fn text_attribute(value: String) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .expect("a data type is set")
}

/// The characters SQS accepts in a message.
fn sqs_allows(c: char) -> bool {
    matches!(c, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

fn classify<E, R>(error: &SdkError<E, R>) -> Refusal
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let text = format!("sqs: {}", error_chain(error));
    let SdkError::ServiceError(service) = error else {
        // Not sent, or no answer: unreachable, timed out, or no credentials to sign.
        return if text.contains("credentials") {
            Refusal::misconfigured(text)
        } else {
            Refusal::unavailable(text)
        };
    };
    let code = service.err().code().unwrap_or_default();
    let message = service.err().message().unwrap_or_default();
    let text = format!("sqs: {code}: {message}");
    match code {
        "AWS.SimpleQueueService.NonExistentQueue"
        | "QueueDoesNotExist"
        | "AccessDenied"
        | "AccessDeniedException"
        | "InvalidClientTokenId"
        | "UnrecognizedClientException"
        | "SignatureDoesNotMatch"
        | "InvalidSecurity"
        | "MissingParameter" => Refusal::misconfigured(text),
        "InvalidMessageContents" | "InvalidParameterValue" | "MessageTooLong" => {
            Refusal::rejected(text)
        }
        _ => Refusal::unavailable(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::message::{Facts, Format, build};
    use crate::domain::time::Timestamp;

    #[test]
    fn never_more_than_ten_attributes() {
        let headers: Vec<(String, Vec<u8>)> = (0..20)
            .map(|i| (format!("x-sender-{i}"), b"v".to_vec()))
            .collect();
        let body = bytes::Bytes::from_static(b"{}");
        let facts = Facts {
            event_id: "evt_1",
            source: "stripe",
            destination: "queue",
            event_type: Some("invoice.paid"),
            received_at: Timestamp(0),
            attempt: 1,
            attempts_at_replay: 0,
            content_type: Some("application/json"),
            body: &body,
            ordering_key: Some("cus_1"),
            trace: None,
        };
        let message = build(
            &facts,
            headers,
            Format::CloudEvents { structured: false },
            None,
        );
        let attributes = attributes(&message, true);
        assert_eq!(attributes.len(), MAX_ATTRIBUTES);
        assert!(attributes.contains_key("hookrelay-event-id"));
        assert!(attributes.contains_key("hookrelay-body-encoding"));
        let rest = attributes["hookrelay-headers"].string_value().unwrap();
        let rest: serde_json::Value = serde_json::from_str(rest).unwrap();
        assert_eq!(rest["x-sender-7"], "v");
        assert_eq!(rest["hookrelay-key"], "cus_1");
    }
}
