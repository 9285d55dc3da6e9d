//! Redis Streams: `XADD` (with `MAXLEN ~` when set); the entry id Redis returns is the
//! acknowledgement. The body is the entry's `body` field, each header a field of its
//! own, the message key the `key` field.

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;

use super::outcome::{Broker, Refusal};
use crate::config::endpoints::RedisTarget;
use crate::domain::message::{Naming, Outbound};
use crate::store::ClaimedDelivery;

pub struct RedisBroker {
    client: redis::Client,
    target: RedisTarget,
    /// Reconnects by itself after the server went away.
    connection: OnceCell<ConnectionManager>,
}

impl RedisBroker {
    pub fn new(target: &RedisTarget) -> Result<Self, Refusal> {
        let client = redis::Client::open(target.server.as_str())
            .map_err(|e| Refusal::misconfigured(format!("redis url: {e}")))?;
        Ok(Self {
            client,
            target: target.clone(),
            connection: OnceCell::new(),
        })
    }

    async fn connection(&self) -> Result<ConnectionManager, Refusal> {
        self.connection
            .get_or_try_init(|| async {
                let config = ConnectionManagerConfig::new().set_number_of_retries(1);
                ConnectionManager::new_with_config(self.client.clone(), config)
                    .await
                    .map_err(|e| unavailable(&e))
            })
            .await
            .cloned()
    }
}

#[async_trait]
impl Broker for RedisBroker {
    async fn publish(
        &self,
        message: &Outbound,
        event: &ClaimedDelivery,
    ) -> Result<String, Refusal> {
        let stream = self
            .target
            .stream
            .render(&event.source, event.event_type.as_deref());
        let mut command = redis::cmd("XADD");
        command.arg(&stream);
        if let Some(max_len) = self.target.max_len {
            command.arg("MAXLEN").arg("~").arg(max_len);
        }
        command.arg("*").arg("body").arg(message.body.as_ref());
        if let Some(key) = &message.key {
            command.arg("key").arg(key);
        }
        for (name, value) in message.broker_headers(Naming::Underscored) {
            command.arg(name).arg(value);
        }
        let mut connection = self.connection().await?;
        let id: String = command
            .query_async(&mut connection)
            .await
            .map_err(|e| classify(&e))?;
        Ok(format!("stream {stream} entry {id}"))
    }
}

fn unavailable(error: &redis::RedisError) -> Refusal {
    Refusal::unavailable(format!("redis: {error}"))
}

fn classify(error: &redis::RedisError) -> Refusal {
    if error.is_io_error() || error.is_timeout() || error.is_connection_dropped() {
        return unavailable(error);
    }
    // The key holds another type, or this user may not write it: this stream is
    // wrongly configured, the server itself is fine.
    let text = error.to_string();
    if ["WRONGTYPE", "NOPERM", "NOAUTH", "WRONGPASS"]
        .iter()
        .any(|code| text.contains(code))
    {
        Refusal::misconfigured(format!("redis: {text}"))
    } else {
        unavailable(error)
    }
}
