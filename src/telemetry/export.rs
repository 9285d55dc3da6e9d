//! Finished spans on their way to the OTLP endpoint. A span is queued without
//! waiting; when the queue is full it is dropped and counted, so an endpoint that is
//! down or slow never slows ingest or delivery. (The SDK's batch processor drops the
//! same way but keeps no count an operator can read; this one feeds `/metrics`.)

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::exporter::exporter;
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
    settings: TelemetrySettings,
    resource: Resource,
    pub counters: Arc<TraceCounters>,
}

/// The queue's two ends for these settings.
pub fn queue(settings: &TelemetrySettings, resource: Resource) -> (QueuedSpans, TraceExport) {
    let (sender, receiver) = mpsc::channel(settings.queue_size);
    let counters = Arc::new(TraceCounters::default());
    (
        QueuedSpans {
            queue: sender,
            counters: counters.clone(),
        },
        TraceExport {
            queue: receiver,
            settings: settings.clone(),
            resource,
            counters,
        },
    )
}

impl TraceExport {
    /// Exports a batch when it is full or every interval, until `stop`; then exports
    /// what is queued once more.
    pub async fn run(mut self, stop: CancellationToken) {
        // Made here, on the runtime: a gRPC channel needs one.
        let exporter = match exporter(&self.settings, &self.resource) {
            Ok(exporter) => exporter,
            Err(error) => {
                tracing::error!(error = %error, "Traces cannot be exported");
                return;
            }
        };
        let batch_size = self.settings.batch_size;
        let mut batch = Vec::with_capacity(batch_size);
        let mut tick = tokio::time::interval(self.settings.export_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                received = self.queue.recv() => match received {
                    Some(span) => {
                        batch.push(span);
                        if batch.len() >= batch_size {
                            self.export(&exporter, &mut batch, &mut failing).await;
                        }
                    }
                    None => break,
                },
                _ = tick.tick() => {
                    if !batch.is_empty() {
                        self.export(&exporter, &mut batch, &mut failing).await;
                    }
                }
                () = stop.cancelled() => break,
            }
        }
        while let Ok(span) = self.queue.try_recv() {
            batch.push(span);
            if batch.len() >= batch_size {
                self.export(&exporter, &mut batch, &mut failing).await;
            }
        }
        if !batch.is_empty() {
            self.export(&exporter, &mut batch, &mut failing).await;
        }
    }

    async fn export(
        &self,
        exporter: &opentelemetry_otlp::SpanExporter,
        batch: &mut Vec<SpanData>,
        failing: &mut bool,
    ) {
        let spans = std::mem::replace(batch, Vec::with_capacity(self.settings.batch_size));
        let count = spans.len() as u64;
        let timeout = self.settings.export_timeout;
        let error = match tokio::time::timeout(timeout, exporter.export(spans)).await {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(error.to_string()),
            Err(_) => Some(format!(
                "no answer within {}",
                humantime::format_duration(timeout)
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
