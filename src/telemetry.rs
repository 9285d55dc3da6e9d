//! Logs: one JSON object per line on stdout, in the shape
//! `{"timestamp","level","component","message","context":{..}}`.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, prelude::*};

use crate::domain::time::Timestamp;

/// Installs the global subscriber. Keep the guard alive until exit so buffered lines
/// are flushed.
pub fn init(filter: &str) -> Result<WorkerGuard, String> {
    let filter = EnvFilter::try_new(filter)
        .map_err(|e| format!("invalid HOOKRELAY_LOG filter {filter:?}: {e}"))?;
    // Blocking rather than lossy: a log line about an event is never dropped.
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::stdout());
    let layer = tracing_subscriber::fmt::layer()
        .event_format(JsonLine)
        .with_writer(writer);
    tracing_subscriber::registry()
        .with(filter)
        .with(layer)
        .try_init()
        .map_err(|e| e.to_string())?;
    Ok(guard)
}

/// The seed's log shape.
pub struct JsonLine;

impl<S, N> FormatEvent<S, N> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let metadata = event.metadata();
        let mut fields = FieldCollector::default();
        event.record(&mut fields);

        let component = fields
            .component
            .unwrap_or_else(|| component_of(metadata.target()).to_owned());
        let line = Line {
            timestamp: Timestamp::now().to_rfc3339(),
            level: metadata.level().as_str().to_ascii_lowercase(),
            component,
            message: fields.message,
            context: fields.context,
        };
        let text = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

/// Field order as users read it: when, how bad, who, what, details.
#[derive(serde::Serialize)]
struct Line {
    timestamp: String,
    level: String,
    component: String,
    message: String,
    context: Map<String, Value>,
}

/// `api` for the HTTP layer, `worker` for the worker, the module name for the rest.
fn component_of(target: &str) -> &str {
    let mut parts = target.split("::");
    match (parts.next(), parts.next()) {
        (Some("hookrelay"), Some("http")) => "api",
        (Some("hookrelay"), Some("worker")) => "worker",
        (Some("hookrelay"), Some(module)) => module,
        (Some(other), _) => other,
        (None, _) => "hookrelay",
    }
}

#[derive(Default)]
struct FieldCollector {
    message: String,
    component: Option<String>,
    context: Map<String, Value>,
}

impl FieldCollector {
    fn put(&mut self, field: &Field, value: Value) {
        match field.name() {
            "message" => {
                self.message = match value {
                    Value::String(s) => s,
                    other => other.to_string(),
                }
            }
            "component" => self.component = value.as_str().map(str::to_owned),
            name => {
                self.context.insert(name.to_owned(), value);
            }
        }
    }
}

impl Visit for FieldCollector {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::String(value.to_owned()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        // Keep the whole cause chain in one string.
        let mut text = value.to_string();
        let mut source = value.source();
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        self.put(field, Value::String(text));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_follow_modules() {
        assert_eq!(component_of("hookrelay::http::webhooks"), "api");
        assert_eq!(component_of("hookrelay::worker"), "worker");
        assert_eq!(component_of("hookrelay::store::sqlite"), "store");
        assert_eq!(component_of("hyper::proto"), "hyper");
    }
}
