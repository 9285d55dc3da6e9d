//! W3C trace context (`traceparent`, `tracestate`): the sender's, the one stored with
//! an event so that attempts hours later join its trace, and the one each delivery
//! carries to the application. Everything here is a no-op when tracing is off: the
//! spans then have no OpenTelemetry context.

use std::collections::HashMap;

use http::HeaderMap;
use opentelemetry::Context;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_http::HeaderExtractor;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::config::telemetry::Sampling;

const TRACEPARENT: &str = "traceparent";
const TRACESTATE: &str = "tracestate";

/// The sender's trace context, when it sent a valid `traceparent`.
pub fn sender(headers: &HeaderMap) -> Option<Context> {
    if !headers.contains_key(TRACEPARENT) {
        return None;
    }
    let context = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    context.span().span_context().is_valid().then_some(context)
}

/// Takes the sender's trace context into `span` (which must not have started): as its
/// parent when the source trusts it, else as a link, so that the sender cannot choose
/// our trace ids or sampling but its trace still leads here.
pub fn adopt_sender(span: &Span, sender: Option<&Context>, trusted: bool) {
    let Some(sender) = sender else { return };
    if trusted {
        let _ = span.set_parent(sender.clone());
    } else {
        span.add_link(sender.span().span_context().clone());
    }
}

/// Whether a trace whose parent was (`Some(true)`) or was not sampled, or that has
/// none, is certainly not sampled: then no span is made at all, which is what keeps
/// tracing sampled at 0 nearly free. `false` when only the sampler can tell.
pub fn certainly_unsampled(sampling: Sampling, parent_sampled: Option<bool>) -> bool {
    match parent_sampled {
        Some(sampled) if sampling.parent_based => !sampled,
        _ => sampling.ratio <= 0.0,
    }
}

/// Whether a stored context's trace was sampled (its flags).
pub fn stored_sampled(stored: &str) -> Option<bool> {
    let flags = stored.lines().next()?.rsplit('-').next()?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    Some(flags & 1 == 1)
}

/// The stored context of a trace that is not sampled: the parent's trace (or a new
/// one), a new span id, the "not sampled" flag, so that the application does not
/// start a sampled trace of its own either.
pub fn unsampled(parent: Option<&Context>) -> String {
    let trace_id = parent
        .map(|c| u128::from_be_bytes(c.span().span_context().trace_id().to_bytes()))
        .unwrap_or_else(|| fastrand::u128(1..));
    let mut text = format!("00-{trace_id:032x}-{:016x}-00", fastrand::u64(1..));
    if let Some(state) = parent
        .map(|c| c.span().span_context().trace_state().header())
        .filter(|s| !s.is_empty())
    {
        text.push('\n');
        text.push_str(&state);
    }
    text
}

/// The delivery headers of a stored context, as they are (an unsampled trace's).
pub fn stored_headers(stored: &str) -> Vec<(&'static str, String)> {
    let mut lines = stored.lines();
    let mut out = Vec::with_capacity(2);
    if let Some(parent) = lines.next() {
        out.push((TRACEPARENT, parent.to_owned()));
    }
    if let Some(state) = lines.next().filter(|s| !s.is_empty()) {
        out.push((TRACESTATE, state.to_owned()));
    }
    out
}

/// `span`'s context as it is stored with an event: the `traceparent`, and the
/// `tracestate` on a second line when there is one. `None` without tracing.
pub fn stored(span: &Span) -> Option<String> {
    let (parent, state) = header_values(span)?;
    Some(if state.is_empty() {
        parent
    } else {
        format!("{parent}\n{state}")
    })
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
    let Some((parent, state)) = header_values(span) else {
        return Vec::new();
    };
    let mut out = vec![(TRACEPARENT, parent)];
    if !state.is_empty() {
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

/// `span`'s `traceparent` and `tracestate` values, written directly (W3C Trace
/// Context, version 00).
fn header_values(span: &Span) -> Option<(String, String)> {
    let context = span.context();
    let span_ref = context.span();
    let ids = span_ref.span_context();
    if !ids.is_valid() {
        return None;
    }
    let parent = format!(
        "00-{}-{}-{:02x}",
        ids.trace_id(),
        ids.span_id(),
        ids.trace_flags().to_u8()
    );
    Some((parent, ids.trace_state().header()))
}

/// Whether the sender's trace is sampled.
pub fn sampled(context: &Context) -> bool {
    context.span().span_context().is_sampled()
}

/// The trace and span ids in a stored context, for log lines.
pub fn ids_of(stored: &str) -> Option<(&str, &str)> {
    let mut parts = stored.lines().next()?.split('-');
    let (_, trace_id, span_id) = (parts.next()?, parts.next()?, parts.next()?);
    Some((trace_id, span_id))
}

/// The trace id in a stored context (`00-TRACE_ID-SPAN_ID-FLAGS`).
pub fn trace_id_of(stored: &str) -> Option<&str> {
    let id = stored.lines().next()?.split('-').nth(1)?;
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
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
    fn an_unsampled_trace_keeps_the_parents_trace_and_says_not_sampled() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
                .parse()
                .unwrap(),
        );
        headers.insert("tracestate", "vendor=x".parse().unwrap());
        let sender = sender(&headers).unwrap();
        let stored = unsampled(Some(&sender));
        let (parent, state) = stored.split_once('\n').unwrap();
        assert!(
            parent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{parent}"
        );
        assert!(parent.ends_with("-00"), "{parent}");
        assert!(!parent.contains("00f067aa0ba902b7"), "a span id of its own");
        assert_eq!(state, "vendor=x");
        assert_eq!(stored_sampled(&stored), Some(false));
        assert_eq!(stored_headers(&stored).len(), 2);
        let fresh = unsampled(None);
        assert_eq!(trace_id_of(&fresh).map(str::len), Some(32));
        assert_eq!(stored_sampled(&fresh), Some(false));
    }

    #[test]
    fn only_a_sure_no_skips_the_span() {
        let at = |ratio, parent_based| Sampling {
            ratio,
            parent_based,
        };
        assert!(certainly_unsampled(at(0.0, true), None));
        assert!(certainly_unsampled(at(1.0, true), Some(false)));
        assert!(!certainly_unsampled(at(0.0, true), Some(true)));
        assert!(!certainly_unsampled(at(0.5, false), None));
        assert!(certainly_unsampled(at(0.0, false), Some(true)));
        assert!(!certainly_unsampled(at(1.0, false), Some(false)));
    }

    #[test]
    fn without_tracing_nothing_is_stored_or_sent() {
        let span = tracing::error_span!("attempt");
        assert_eq!(stored(&span), None);
        assert!(outgoing(&span).is_empty());
        assert_eq!(ids(&span), None);
    }
}
