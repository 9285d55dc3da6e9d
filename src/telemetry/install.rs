//! The process's one subscriber: log lines, and spans exported over OTLP when
//! tracing is configured.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::{EnvFilter, Layer as _, prelude::*};

use super::export::{TraceExport, queue};
use super::logs::{JsonLine, NoFields, SpanFields};
use crate::config::telemetry::{Sampling, TelemetrySettings};

/// Where log lines go: stdout for the service, stderr for commands whose stdout is
/// their answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogTarget {
    Stdout,
    Stderr,
}

/// How log lines are written (`HOOKRELAY_LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One JSON object per line: for log collectors (the default).
    #[default]
    Json,
    /// Text for a person at a terminal.
    Pretty,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim() {
            "" | "json" => Ok(Self::Json),
            "pretty" => Ok(Self::Pretty),
            other => Err(format!(
                "invalid HOOKRELAY_LOG_FORMAT {other:?}: write json (the default) or pretty"
            )),
        }
    }
}

/// What [`init`] installed: keep it until exit so that buffered lines are written.
pub struct Telemetry {
    _log_guard: WorkerGuard,
    /// The export of finished spans, to be run on the runtime; `None`: tracing is off.
    pub traces: Option<TraceExport>,
    /// Ends the provider; spans still queued are exported by the task.
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = provider.shutdown();
        }
    }
}

/// Installs the global subscriber: log lines filtered by `filter`, and when
/// `tracing` is set, the spans that name an OpenTelemetry kind (`otel.kind`).
pub fn init(
    filter: &str,
    target: LogTarget,
    format: LogFormat,
    tracing: Option<&TelemetrySettings>,
) -> Result<Telemetry, String> {
    let filter = EnvFilter::try_new(filter)
        .map_err(|e| format!("invalid HOOKRELAY_LOG filter {filter:?}: {e}"))?;
    // Blocking rather than lossy: a log line about an event is never dropped.
    let builder = tracing_appender::non_blocking::NonBlockingBuilder::default().lossy(false);
    let (writer, guard) = match target {
        LogTarget::Stdout => builder.finish(std::io::stdout()),
        LogTarget::Stderr => builder.finish(std::io::stderr()),
    };
    let (provider, traces) = match tracing {
        Some(settings) => {
            let (provider, traces) = tracer_provider(settings);
            (Some(provider), Some(traces))
        }
        None => (None, None),
    };
    let spans = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("hookrelay"))
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_tracked_inactivity(false)
            // Nothing reads OpenTelemetry's current context: entering a span (every
            // poll of an instrumented future) need not set it.
            .with_context_activation(false)
            // Spans that name a kind, and the warnings and errors logged inside them
            // (as span events): an attempt's success is its span's status already.
            .with_filter(filter_fn(|metadata| {
                if metadata.is_event() {
                    *metadata.level() <= tracing::Level::WARN
                } else {
                    metadata.fields().field("otel.kind").is_some()
                }
            }))
    });
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(SpanFields)
        .with(spans);
    let installed = match format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .event_format(JsonLine)
                    .fmt_fields(NoFields)
                    .with_writer(writer),
            )
            .try_init(),
        LogFormat::Pretty => registry
            .with(tracing_subscriber::fmt::layer().with_writer(writer))
            .try_init(),
    };
    installed.map_err(|e| e.to_string())?;
    Ok(Telemetry {
        _log_guard: guard,
        traces,
        provider,
    })
}

fn tracer_provider(settings: &TelemetrySettings) -> (SdkTracerProvider, TraceExport) {
    let resource = Resource::builder()
        .with_service_name(settings.service_name.clone())
        .build();
    let (processor, traces) = queue(settings, resource.clone());
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(sampler(settings.sampling))
        .with_resource(resource)
        .build();
    (provider, traces)
}

fn sampler(sampling: Sampling) -> Sampler {
    let root = if sampling.ratio >= 1.0 {
        Sampler::AlwaysOn
    } else if sampling.ratio <= 0.0 {
        Sampler::AlwaysOff
    } else {
        Sampler::TraceIdRatioBased(sampling.ratio)
    };
    if sampling.parent_based {
        Sampler::ParentBased(Box::new(root))
    } else {
        root
    }
}
