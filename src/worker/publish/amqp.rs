//! AMQP 0-9-1 (RabbitMQ): persistent messages, published `mandatory` on a channel in
//! confirm mode. Sent means the broker confirmed it and did not return it; a message
//! no queue is bound for comes back and is a failure, never a silent drop. Headers
//! follow CloudEvents' RabbitMQ binding (`ce-*` in binary mode).

use async_trait::async_trait;
use lapin::Confirmation;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use tokio::sync::Mutex;

use super::outcome::{Broker, Refusal};
use crate::config::endpoints::AmqpTarget;
use crate::domain::message::{Naming, Outbound};
use crate::store::ClaimedDelivery;
use crate::telemetry::error_chain;

pub struct AmqpBroker {
    target: AmqpTarget,
    /// The connection and its confirm-mode channel; made again when either closed.
    open: Mutex<Option<(Connection, Channel)>>,
}

impl AmqpBroker {
    pub fn new(target: &AmqpTarget) -> Self {
        Self {
            target: target.clone(),
            open: Mutex::new(None),
        }
    }

    async fn channel(&self) -> Result<Channel, Refusal> {
        let mut open = self.open.lock().await;
        if let Some((connection, channel)) = open.as_ref()
            && connection.status().connected()
            && channel.status().connected()
        {
            return Ok(channel.clone());
        }
        *open = None;
        let connection = Connection::connect(&self.target.uri, ConnectionProperties::default())
            .await
            .map_err(|e| classify(&e))?;
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| classify(&e))?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| classify(&e))?;
        *open = Some((connection, channel.clone()));
        Ok(channel)
    }
}

#[async_trait]
impl Broker for AmqpBroker {
    async fn publish(
        &self,
        message: &Outbound,
        event: &ClaimedDelivery,
    ) -> Result<String, Refusal> {
        let routing_key = self
            .target
            .routing_key
            .render(&event.source, event.event_type.as_deref());
        let mut headers = FieldTable::default();
        for (name, value) in message.broker_headers(Naming::Dashed) {
            headers.insert(
                ShortString::from(name),
                AMQPValue::LongString(LongString::from(value)),
            );
        }
        if let Some(key) = &message.key {
            headers.insert(
                ShortString::from("hookrelay-key"),
                AMQPValue::LongString(LongString::from(key.as_bytes().to_vec())),
            );
        }
        let mut properties = BasicProperties::default()
            // Persistent: written to disk by durable queues.
            .with_delivery_mode(2)
            .with_message_id(ShortString::from(message.dedup_id.clone()))
            .with_headers(headers);
        if let Some(content_type) = &message.content_type {
            properties = properties.with_content_type(ShortString::from(content_type.clone()));
        }
        let channel = self.channel().await?;
        let confirm = channel
            .basic_publish(
                ShortString::from(self.target.exchange.clone()),
                ShortString::from(routing_key.clone()),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                &message.body,
                properties,
            )
            .await
            .map_err(|e| classify(&e))?;
        match confirm.await.map_err(|e| classify(&e))? {
            Confirmation::Ack(None) => Ok(format!(
                "confirmed by the broker (exchange {:?}, routing key {routing_key:?})",
                self.target.exchange
            )),
            Confirmation::Ack(Some(returned)) => Err(Refusal::misconfigured(format!(
                "amqp: unroutable: no queue is bound to exchange {:?} for routing key \
                 {routing_key:?} ({} {})",
                self.target.exchange, returned.reply_code, returned.reply_text
            ))),
            Confirmation::Nack(_) => Err(Refusal::unavailable(
                "amqp: the broker refused to take the message (nack)",
            )),
            Confirmation::NotRequested => Err(Refusal::unavailable(
                "amqp: the channel is not in confirm mode",
            )),
        }
    }
}

fn classify(error: &lapin::Error) -> Refusal {
    let text = error_chain(error);
    // The broker's own refusals: an exchange that does not exist, no permission.
    if text.contains("NOT_FOUND") || text.contains("ACCESS_REFUSED") || text.contains("NOT_ALLOWED")
    {
        Refusal::misconfigured(format!("amqp: {text}"))
    } else {
        Refusal::unavailable(format!("amqp: {text}"))
    }
}
