//! Log lines: one JSON object per line, in the shape
//! `{"timestamp","level","component","message","context":{..}}`.

use std::fmt;

use std::io::Write as _;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::domain::time::Timestamp;

/// The seed's log shape, written straight into one buffer per line.
pub struct JsonLine;

impl<S, N> FormatEvent<S, N> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let metadata = event.metadata();
        let mut fields = FieldWriter::default();
        // The fields of the spans the event happened in (a request's id, an
        // attempt's event and source), outermost first; the event's own fields
        // after them, less any name a span already gave.
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                if let Some(recorded) = span.extensions().get::<SpanContext>() {
                    fields.absorb(recorded);
                }
            }
        }
        event.record(&mut fields);

        let mut line = Vec::with_capacity(256 + fields.context.len());
        line.extend_from_slice(b"{\"timestamp\":\"");
        line.extend_from_slice(Timestamp::now().to_rfc3339().as_bytes());
        line.extend_from_slice(b"\",\"level\":\"");
        line.extend_from_slice(level_name(metadata.level()).as_bytes());
        line.extend_from_slice(b"\",\"component\":");
        match &fields.component {
            Some(component) => push_json_str(&mut line, component),
            None => push_json_str(&mut line, component_of(metadata.target())),
        }
        line.extend_from_slice(b",\"message\":");
        push_json_str(&mut line, &fields.message);
        line.extend_from_slice(b",\"context\":{");
        line.extend_from_slice(&fields.context);
        line.extend_from_slice(b"}}");
        // Every piece above is UTF-8 already: no lossy copy of the line.
        match std::str::from_utf8(&line) {
            Ok(text) => writeln!(writer, "{text}"),
            Err(_) => writeln!(writer, "{}", String::from_utf8_lossy(&line)),
        }
    }
}

/// An error and all its causes in one line: `outer: cause: root cause`.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn level_name(level: &tracing::Level) -> &'static str {
    match *level {
        tracing::Level::TRACE => "trace",
        tracing::Level::DEBUG => "debug",
        tracing::Level::INFO => "info",
        tracing::Level::WARN => "warn",
        tracing::Level::ERROR => "error",
    }
}

fn push_json_str(buffer: &mut Vec<u8>, text: &str) {
    // Writing a str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *buffer, text);
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

/// The fmt layer's own record of span fields, left empty: [`SpanFields`] keeps them,
/// already as JSON, and formatting them twice would cost every request.
pub struct NoFields;

impl<'writer> FormatFields<'writer> for NoFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        _writer: Writer<'writer>,
        _fields: R,
    ) -> fmt::Result {
        Ok(())
    }
}

/// Keeps each span's fields, already written as JSON members, in the span's
/// extensions, so that every line logged inside the span carries them.
pub struct SpanFields;

/// A span's fields as `"name":value` members, and their names.
#[derive(Default)]
struct SpanContext {
    names: Vec<&'static str>,
    json: Vec<u8>,
}

impl<S> tracing_subscriber::Layer<S> for SpanFields
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = FieldWriter::default();
        attrs.record(&mut fields);
        span.extensions_mut().insert(SpanContext {
            names: fields.names,
            json: fields.context,
        });
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        let Some(recorded) = extensions.get_mut::<SpanContext>() else {
            return;
        };
        let mut fields = FieldWriter {
            context: std::mem::take(&mut recorded.json),
            names: std::mem::take(&mut recorded.names),
            ..FieldWriter::default()
        };
        values.record(&mut fields);
        recorded.json = fields.context;
        recorded.names = fields.names;
    }
}

/// Adds `fields` to the log context of `span`: every line logged inside it carries
/// them. Unlike `Span::record`, they do not become span attributes for traces (a
/// trace id in its own span's attributes would only cost).
pub fn annotate(span: &tracing::Span, fields: &[(&'static str, &str)]) {
    span.with_subscriber(|(id, dispatch)| {
        let Some(registry) = dispatch.downcast_ref::<tracing_subscriber::Registry>() else {
            return;
        };
        let Some(data) = registry.span(id) else {
            return;
        };
        let mut extensions = data.extensions_mut();
        let Some(recorded) = extensions.get_mut::<SpanContext>() else {
            return;
        };
        for (name, value) in fields {
            if recorded.names.contains(name) {
                continue;
            }
            if !recorded.json.is_empty() {
                recorded.json.push(b',');
            }
            push_json_str(&mut recorded.json, name);
            recorded.json.push(b':');
            push_json_str(&mut recorded.json, value);
            recorded.names.push(name);
        }
    });
}

/// Collects the message and component, and writes every other field as JSON into
/// the context object.
#[derive(Default)]
struct FieldWriter {
    message: String,
    component: Option<String>,
    context: Vec<u8>,
    /// Names already written (a span's), not to be written twice.
    names: Vec<&'static str>,
}

impl FieldWriter {
    fn absorb(&mut self, span: &SpanContext) {
        if span.json.is_empty() {
            return;
        }
        if !self.context.is_empty() {
            self.context.push(b',');
        }
        self.context.extend_from_slice(&span.json);
        self.names.extend_from_slice(&span.names);
    }

    /// Starts a member; false when a span already gave this name, or for a dotted
    /// name (`http.route`, `otel.kind`): those are span attributes for traces.
    fn key(&mut self, field: &Field) -> bool {
        if self.names.contains(&field.name()) || field.name().contains('.') {
            return false;
        }
        self.names.push(field.name());
        if !self.context.is_empty() {
            self.context.push(b',');
        }
        push_json_str(&mut self.context, field.name());
        self.context.push(b':');
        true
    }

    fn text(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => value.clone_into(&mut self.message),
            "component" => self.component = Some(value.to_owned()),
            _ => {
                if self.key(field) {
                    push_json_str(&mut self.context, value);
                }
            }
        }
    }

    fn raw(&mut self, field: &Field, value: impl fmt::Display) {
        if self.key(field) {
            let _ = write!(self.context, "{value}");
        }
    }
}

impl Visit for FieldWriter {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.text(field, &format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.text(field, value);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.raw(field, value);
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.raw(field, value);
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        if value.is_finite() {
            self.raw(field, value);
        } else {
            self.text(field, &value.to_string());
        }
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.raw(field, value);
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.text(field, &error_chain(value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::prelude::*;

    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_are_json_in_the_seed_shape() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .event_format(JsonLine)
                .with_writer(move || writer.clone()),
        );
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(
                target: "hookrelay::worker::attempt",
                event_id = "evt_\"quoted\"\n",
                total_attempts = 3u32,
                ok = true,
                duration_ms = 0.5,
                "Event delivered"
            );
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert!(text.starts_with("{\"timestamp\":"), "{text}");
        let line: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(line["level"], "info");
        assert_eq!(line["component"], "worker");
        assert_eq!(line["message"], "Event delivered");
        assert_eq!(line["context"]["event_id"], "evt_\"quoted\"\n");
        assert_eq!(line["context"]["total_attempts"], 3);
        assert_eq!(line["context"]["ok"], true);
        assert_eq!(line["context"]["duration_ms"], 0.5);
        assert!(line["timestamp"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn span_fields_are_on_every_line_inside_the_span() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::registry().with(SpanFields).with(
            tracing_subscriber::fmt::layer()
                .event_format(JsonLine)
                .fmt_fields(NoFields)
                .with_writer(move || writer.clone()),
        );
        tracing::subscriber::with_default(subscriber, || {
            let request = tracing::error_span!(
                "request",
                request_id = "r-1",
                event_id = tracing::field::Empty
            );
            let _entered = request.enter();
            request.record("event_id", "evt_1");
            let attempt = tracing::error_span!("attempt", source = "stripe");
            let _inner = attempt.enter();
            tracing::info!(target: "hookrelay::worker", attempt = 2u32, source = "ignored", "Inside");
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let line: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(line["message"], "Inside");
        assert_eq!(line["context"]["request_id"], "r-1");
        assert_eq!(line["context"]["event_id"], "evt_1");
        assert_eq!(line["context"]["source"], "stripe");
        assert_eq!(line["context"]["attempt"], 2);
        // One member per name: the span's value, not a second "source".
        assert_eq!(text.matches("\"source\"").count(), 1, "{text}");
    }

    #[test]
    fn annotations_join_a_spans_log_context() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::registry().with(SpanFields).with(
            tracing_subscriber::fmt::layer()
                .event_format(JsonLine)
                .fmt_fields(NoFields)
                .with_writer(move || writer.clone()),
        );
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::error_span!("attempt", event_id = "evt_1", http.route = "/x");
            annotate(&span, &[("trace_id", "4bf9"), ("event_id", "ignored")]);
            span.in_scope(|| tracing::info!("Inside"));
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let line: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(line["context"]["trace_id"], "4bf9");
        assert_eq!(line["context"]["event_id"], "evt_1");
        assert_eq!(line["context"].get("http.route"), None, "{text}");
    }

    #[test]
    fn components_follow_modules() {
        assert_eq!(component_of("hookrelay::http::webhooks"), "api");
        assert_eq!(component_of("hookrelay::worker"), "worker");
        assert_eq!(component_of("hookrelay::store::sqlite"), "store");
        assert_eq!(component_of("hyper::proto"), "hyper");
    }
}
