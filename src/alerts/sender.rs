//! Sends due alerts to `[alerts] url`, one at a time in the order they were raised.
//!
//! Alerts are claimed under a lease like deliveries, so that with several workers each
//! is sent once; one that cannot be sent now is tried again with backoff. The sender
//! is a task of its own with its own client: a receiver that never answers holds up
//! alerts, never webhooks or deliveries. Its failures feed no destination's breaker
//! and raise no alert, so an alert receiver that is down cannot cause a loop.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::CONTENT_TYPE;
use tokio_util::sync::CancellationToken;

use super::message;
use crate::config::alerts::{AlertFormat, AlertSettings};
use crate::domain::alert::alert_retry_delay;
use crate::domain::retry::RetryPolicy;
use crate::domain::signing::sign_standard;
use crate::domain::time::Timestamp;
use crate::store::{AlertOutbox, AlertOutcome, AlertRecord};
use crate::telemetry::error_chain;
use tracing::Instrument;

/// Alerts claimed at once.
const BATCH: usize = 10;

pub struct Sender {
    pub store: Arc<dyn AlertOutbox>,
    pub settings: Arc<AlertSettings>,
    pub retry: RetryPolicy,
    /// How often to look for due alerts.
    pub poll_interval: Duration,
    pub client: reqwest::Client,
}

impl Sender {
    pub async fn run(self, shutdown: CancellationToken) {
        // Long enough for a whole batch to time out one by one.
        let lease = self.settings.timeout * BATCH as u32 + Duration::from_secs(30);
        loop {
            let claimed = match self.store.claim_alerts(BATCH, lease).await {
                Ok(claimed) => claimed,
                Err(error) => {
                    tracing::error!(
                        error = &error as &dyn std::error::Error,
                        "Claiming alerts failed"
                    );
                    Vec::new()
                }
            };
            let busy = claimed.len() == BATCH;
            for alert in claimed {
                let outcome = tokio::select! {
                    biased;
                    () = shutdown.cancelled() => return,
                    outcome = self.send(&alert).instrument(alert_span(&alert)) => outcome,
                };
                self.log(&alert, &outcome);
                if let Err(error) = self
                    .store
                    .finish_alert(alert.id, alert.attempts, outcome)
                    .await
                {
                    tracing::error!(
                        error = &error as &dyn std::error::Error,
                        alert_id = alert.id,
                        "Recording an alert's outcome failed; it will be sent again"
                    );
                }
            }
            if busy {
                continue;
            }
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.poll_interval) => {}
            }
        }
    }

    async fn send(&self, alert: &AlertRecord) -> AlertOutcome {
        let settings = &self.settings;
        let dashboard = settings.dashboard_url.as_deref();
        let body = match settings.format {
            AlertFormat::Slack => {
                message::slack_body(alert, settings.digest, settings.lag, dashboard)
            }
            AlertFormat::Json => message::json_body(alert, settings.digest, dashboard),
        };
        let mut request = self
            .client
            .post(settings.url.clone())
            .timeout(settings.timeout)
            .header(CONTENT_TYPE, "application/json");
        if settings.format == AlertFormat::Json {
            // The same id on every try, so that a receiver can drop a repeat.
            let id = format!("alert_{}", alert.id);
            let timestamp = Timestamp::now().0 / 1_000_000;
            if let Some(secret) = &settings.signing_secret {
                request = request.header(
                    "webhook-signature",
                    sign_standard(secret.bytes(), &id, timestamp, body.as_bytes()),
                );
            }
            request = request
                .header("webhook-id", id)
                .header("webhook-timestamp", timestamp.to_string());
        }
        let sent = request.body(body).send().await;
        let span = tracing::Span::current();
        if let Ok(response) = &sent {
            span.record(
                "http.response.status_code",
                i64::from(response.status().as_u16()),
            );
        }
        let error = match sent {
            Ok(response) if response.status().is_success() => return AlertOutcome::Sent,
            Ok(response) => format!("the alert receiver answered {}", response.status()),
            Err(error) => format!(
                "the alert receiver could not be reached: {}",
                error_chain(&error.without_url())
            ),
        };
        span.record("otel.status_description", error.as_str());
        AlertOutcome::Retry {
            at: Timestamp::now().plus(alert_retry_delay(&self.retry, alert.attempts)),
            error,
        }
    }

    fn log(&self, alert: &AlertRecord, outcome: &AlertOutcome) {
        match outcome {
            AlertOutcome::Sent => tracing::info!(
                alert_id = alert.id,
                kind = alert.kind.as_str(),
                destination = %alert.destination,
                attempt = alert.attempts,
                "Alert sent"
            ),
            AlertOutcome::Retry { at, error } => tracing::warn!(
                alert_id = alert.id,
                kind = alert.kind.as_str(),
                destination = %alert.destination,
                attempt = alert.attempts,
                next_attempt_at = %at.to_rfc3339(),
                error = %error,
                "Alert not sent; it will be tried again"
            ),
        }
    }
}

/// A send's client span, when tracing is on: a trace of its own (an alert is about a
/// destination, not one webhook). Its fields are attributes, not log context.
fn alert_span(alert: &AlertRecord) -> tracing::Span {
    tracing::error_span!(
        "send alert",
        otel.kind = "client",
        otel.status_description = tracing::field::Empty,
        http.request.method = "POST",
        http.response.status_code = tracing::field::Empty,
        hookrelay.alert = alert.kind.as_str(),
        hookrelay.destination = alert.destination.as_str(),
        hookrelay.attempt = i64::from(alert.attempts),
    )
}
