//! Finished spans on their way to the OTLP endpoint. A span is queued without
//! waiting; when the queue is full it is dropped and counted, so an endpoint that is
//! down or slow never slows ingest or delivery. (The SDK's batch processor drops the
//! same way but keeps no count an operator can read; this one feeds `/metrics`.)

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use opentelemetry::Context;
use opentelemetry_http::{HttpClient, HttpError};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::telemetry::TelemetrySettings;

/// What became of finished spans, for `/metrics`.
#[derive(Debug, Default)]
pub struct TraceCounters {
    pub exported: AtomicU64,
    /// Dropped because the queue was full (the endpoint slow or down).
    pub dropped: AtomicU64,
    /// Sent, but the endpoint refused them or did not answer in time.
    pub failed: AtomicU64,
}

/// The span processor: queues each sampled span for [`TraceExport::run`].
#[derive(Debug)]
pub struct QueuedSpans {
    queue: mpsc::Sender<SpanData>,
    counters: Arc<TraceCounters>,
}

impl SpanProcessor for QueuedSpans {
    fn on_start(&self, _span: &mut Span, _context: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        if self.queue.try_send(span).is_err() {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// The other end of the queue: batches spans and exports them, on the runtime.
pub struct TraceExport {
    queue: mpsc::Receiver<SpanData>,
    exporter: opentelemetry_otlp::SpanExporter,
    batch_size: usize,
    interval: Duration,
    timeout: Duration,
    pub counters: Arc<TraceCounters>,
}

/// The queue's two ends for these settings.
pub fn queue(
    settings: &TelemetrySettings,
    exporter: opentelemetry_otlp::SpanExporter,
) -> (QueuedSpans, TraceExport) {
    let (sender, receiver) = mpsc::channel(settings.queue_size);
    let counters = Arc::new(TraceCounters::default());
    (
        QueuedSpans {
            queue: sender,
            counters: counters.clone(),
        },
        TraceExport {
            queue: receiver,
            exporter,
            batch_size: settings.batch_size,
            interval: settings.export_interval,
            timeout: settings.export_timeout,
            counters,
        },
    )
}

impl TraceExport {
    /// Exports a batch when it is full or every interval, until `stop`; then exports
    /// what is queued once more.
    pub async fn run(mut self, stop: CancellationToken) {
        let mut batch = Vec::with_capacity(self.batch_size);
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                received = self.queue.recv() => match received {
                    Some(span) => {
                        batch.push(span);
                        if batch.len() >= self.batch_size {
                            self.export(&mut batch, &mut failing).await;
                        }
                    }
                    None => break,
                },
                _ = tick.tick() => {
                    if !batch.is_empty() {
                        self.export(&mut batch, &mut failing).await;
                    }
                }
                () = stop.cancelled() => break,
            }
        }
        while let Ok(span) = self.queue.try_recv() {
            batch.push(span);
            if batch.len() >= self.batch_size {
                self.export(&mut batch, &mut failing).await;
            }
        }
        if !batch.is_empty() {
            self.export(&mut batch, &mut failing).await;
        }
    }

    async fn export(&self, batch: &mut Vec<SpanData>, failing: &mut bool) {
        let spans = std::mem::replace(batch, Vec::with_capacity(self.batch_size));
        let count = spans.len() as u64;
        let error = match tokio::time::timeout(self.timeout, self.exporter.export(spans)).await {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(error.to_string()),
            Err(_) => Some(format!(
                "no answer within {}",
                humantime::format_duration(self.timeout)
            )),
        };
        match error {
            None => {
                self.counters.exported.fetch_add(count, Ordering::Relaxed);
                if std::mem::take(failing) {
                    tracing::info!("Trace export recovered");
                }
            }
            Some(error) => {
                self.counters.failed.fetch_add(count, Ordering::Relaxed);
                // Once per outage, not once per batch.
                if !std::mem::replace(failing, true) {
                    tracing::warn!(error = %error, spans = count, "Trace export failed");
                }
            }
        }
    }
}

/// The OTLP exporter's HTTP client: hookrelay's own reqwest, on its runtime.
#[derive(Debug)]
pub struct ExportClient(pub reqwest::Client);

#[async_trait::async_trait]
impl HttpClient for ExportClient {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let response = self
            .0
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(body)
            .send()
            .await?;
        let status = response.status();
        let headers = response.headers().clone();
        let mut answer = http::Response::new(response.bytes().await?);
        *answer.status_mut() = status;
        *answer.headers_mut() = headers;
        Ok(answer)
    }
}
