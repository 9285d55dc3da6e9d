//! W3C trace context (`traceparent`, `tracestate`): the sender's, the one stored with
//! an event so that attempts hours later join its trace, and the one each delivery
//! carries to the application. Everything here is a no-op when tracing is off: the
//! spans then have no OpenTelemetry context.

use std::collections::HashMap;

use http::HeaderMap;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_http::HeaderExtractor;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

const TRACEPARENT: &str = "traceparent";
const TRACESTATE: &str = "tracestate";

/// Takes the sender's trace context into `span` (which must not have started): as its
/// parent when the source trusts it, else as a link, so that the sender cannot choose
/// our trace ids or sampling but its trace still leads here.
pub fn adopt_sender(span: &Span, headers: &HeaderMap, trusted: bool) {
    if !headers.contains_key(TRACEPARENT) {
        return;
    }
    let context = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    let sender = context.span().span_context().clone();
    if !sender.is_valid() {
        return;
    }
    if trusted {
        let _ = span.set_parent(context);
    } else {
        span.add_link(sender);
    }
}

/// `span`'s context as it is stored with an event: the `traceparent`, and the
/// `tracestate` on a second line when there is one. `None` without tracing.
pub fn stored(span: &Span) -> Option<String> {
    let headers = headers_of(span)?;
    let mut text = headers.get(TRACEPARENT)?.clone();
    if let Some(state) = headers.get(TRACESTATE).filter(|s| !s.is_empty()) {
        text.push('\n');
        text.push_str(state);
    }
    Some(text)
}

/// Makes `span` (which must not have started) a child of the stored context.
pub fn continue_stored(span: &Span, stored: &str) {
    let mut lines = stored.lines();
    let mut carrier = HashMap::new();
    if let Some(parent) = lines.next() {
        carrier.insert(TRACEPARENT.to_owned(), parent.to_owned());
    }
    if let Some(state) = lines.next() {
        carrier.insert(TRACESTATE.to_owned(), state.to_owned());
    }
    let context = TraceContextPropagator::new().extract(&carrier);
    if context.span().span_context().is_valid() {
        let _ = span.set_parent(context);
    }
}

/// The headers that make `span` the parent of what the application does with a
/// delivery: `traceparent`, and `tracestate` when there is one. Empty without tracing.
pub fn outgoing(span: &Span) -> Vec<(&'static str, String)> {
    let Some(mut headers) = headers_of(span) else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(2);
    if let Some(parent) = headers.remove(TRACEPARENT) {
        out.push((TRACEPARENT, parent));
    }
    if let Some(state) = headers.remove(TRACESTATE).filter(|s| !s.is_empty()) {
        out.push((TRACESTATE, state));
    }
    out
}

/// The trace and span ids of `span`, in hex, for log lines. `None` without tracing.
pub fn ids(span: &Span) -> Option<(String, String)> {
    let context = span.context();
    let span_ref = context.span();
    let ids = span_ref.span_context();
    ids.is_valid()
        .then(|| (ids.trace_id().to_string(), ids.span_id().to_string()))
}

/// The trace id in a stored context (`00-TRACE_ID-SPAN_ID-FLAGS`).
pub fn trace_id_of(stored: &str) -> Option<&str> {
    let id = stored.lines().next()?.split('-').nth(1)?;
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
}

fn headers_of(span: &Span) -> Option<HashMap<String, String>> {
    let context = span.context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    Some(carrier)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trace_id_is_read_from_a_stored_context() {
        let stored = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\nvendor=x";
        assert_eq!(
            trace_id_of(stored),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(trace_id_of("garbage"), None);
        assert_eq!(trace_id_of("00-xyz-00f067aa0ba902b7-01"), None);
    }

    #[test]
    fn without_tracing_nothing_is_stored_or_sent() {
        let span = tracing::error_span!("attempt");
        assert_eq!(stored(&span), None);
        assert!(outgoing(&span).is_empty());
        assert_eq!(ids(&span), None);
    }
}
