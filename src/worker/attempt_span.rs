//! An attempt's span: the fields its log lines carry and, when tracing is on, the
//! OpenTelemetry client span (HTTP) or producer span (broker) it exports, a child of
//! the span that took the event in, whichever process and however long ago.

use tracing::Span;
use tracing::field::Empty;

use super::publish::Delivery;
use crate::config::destinations::DestinationSettings;
use crate::config::endpoints::Endpoint;
use crate::config::telemetry::Sampling;
use crate::domain::lifecycle::AttemptOutcome;
use crate::domain::protection::Fault;
use crate::store::ClaimedDelivery;
use crate::telemetry::{annotate, propagation};

/// The span of one attempt (an error-level span: rendered whatever the log filter).
/// With tracing off, or in a trace that is certainly not sampled, it carries only the
/// log fields (and then OpenTelemetry never sees it).
pub fn start(
    event: &ClaimedDelivery,
    destination: Option<&DestinationSettings>,
    tracing: Option<Sampling>,
) -> Span {
    if tracing.is_none_or(|sampling| unsampled(event, sampling)) {
        let span = tracing::error_span!(
            "attempt",
            event_id = %event.event_id,
            source = %event.source,
            destination = %event.destination,
        );
        if let Some((trace_id, _)) = event.trace_context.as_deref().and_then(propagation::ids_of) {
            annotate(&span, &[("trace_id", trace_id)]);
        }
        return span;
    }
    let kind = match destination.map(|d| &d.endpoint) {
        Some(Endpoint::Http(_)) => "client",
        Some(_) => "producer",
        None => "internal",
    };
    let span = tracing::error_span!(
        "attempt",
        event_id = %event.event_id,
        source = %event.source,
        destination = %event.destination,
        otel.name = Empty,
        otel.kind = kind,
        otel.status_description = Empty,
        error.type = Empty,
        hookrelay.attempt = Empty,
        hookrelay.probe = Empty,
        http.request.method = Empty,
        http.request.resend_count = Empty,
        http.response.status_code = Empty,
        url.full = Empty,
        messaging.system = Empty,
        messaging.destination.name = Empty,
        messaging.operation.type = Empty,
        messaging.message.id = Empty,
    );
    // Named and parented before the span starts (it starts when its context is read).
    // Integers as i64: the layer exports other integer types as text.
    span.record("hookrelay.attempt", i64::from(event.attempt));
    span.record("hookrelay.probe", event.probe);
    match destination.map(|d| {
        (
            d,
            d.endpoint
                .messaging(&event.source, event.event_type.as_deref()),
        )
    }) {
        Some((destination, None)) => {
            span.record("otel.name", "POST");
            span.record("http.request.method", "POST");
            span.record("url.full", destination.shown_url());
            if event.attempt > 1 {
                span.record("http.request.resend_count", i64::from(event.attempt - 1));
            }
        }
        Some((destination, Some((system, target)))) => {
            span.record("otel.name", format!("send {}", destination.name));
            span.record("messaging.system", system);
            span.record("messaging.destination.name", target);
            span.record("messaging.operation.type", "send");
            span.record("messaging.message.id", event.event_id.as_str());
        }
        None => {
            span.record("otel.name", "process");
        }
    }
    if let Some(stored) = &event.trace_context {
        propagation::continue_stored(&span, stored);
    }
    if let Some((trace_id, span_id)) = propagation::ids(&span) {
        annotate(&span, &[("trace_id", &trace_id), ("span_id", &span_id)]);
    }
    span
}

/// The trace context the delivery carries: `Some` when hookrelay traces (the
/// attempt's context, or nothing for a destination outside the trace), `None`
/// when it does not.
pub fn carried(
    span: &Span,
    event: &ClaimedDelivery,
    destination: &DestinationSettings,
    tracing: Option<Sampling>,
) -> Option<Vec<(&'static str, String)>> {
    let sampling = tracing?;
    if !destination.propagate_trace {
        return Some(Vec::new());
    }
    if !unsampled(event, sampling) {
        return Some(propagation::outgoing(span));
    }
    // No span of its own: the stored context as it is, still "not sampled".
    Some(match &event.trace_context {
        Some(stored) => propagation::stored_headers(stored),
        None => propagation::stored_headers(&propagation::unsampled(None)),
    })
}

/// The event's trace is certainly not sampled: the attempt gets no span.
fn unsampled(event: &ClaimedDelivery, sampling: Sampling) -> bool {
    let parent = event
        .trace_context
        .as_deref()
        .and_then(propagation::stored_sampled);
    propagation::certainly_unsampled(sampling, parent)
}

/// What the attempt got back, as the span's status and attributes.
pub fn finish(span: &Span, delivery: &Delivery) {
    if span.is_disabled() {
        return;
    }
    if let Some(code) = delivery.status_code {
        span.record("http.response.status_code", i64::from(code));
    }
    if delivery.outcome == AttemptOutcome::Delivered {
        return;
    }
    if let AttemptOutcome::Failed { error, .. } | AttemptOutcome::FailedPermanently { error } =
        &delivery.outcome
    {
        span.record("otel.status_description", error.as_str());
    }
    match (delivery.status_code, delivery.fault) {
        (Some(code), _) => span.record("error.type", code.to_string()),
        (None, Fault::Destination) => span.record("error.type", "unavailable"),
        (None, _) => span.record("error.type", "refused"),
    };
}
