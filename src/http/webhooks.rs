//! `POST /webhooks/{source}`: check, verify, then answer 202 only once the event is
//! committed.

use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use tracing::{Instrument, Span};

use super::error::{ApiError, ErrorBody};
use super::state::AppState;
use crate::domain::event::{EventId, SourceName};
use crate::domain::time::Timestamp;
use crate::ops::ingest::{self, Accepted, Ingested, Refusal};
use crate::telemetry::propagation;

/// The answer to a stored or recognised webhook.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Receipt<'a> {
    /// `evt_<uuid>`.
    event_id: &'a str,
    /// `accepted` or `duplicate`.
    status: &'static str,
}

/// Receive a webhook. Answers 202 only once the event is committed durably.
#[utoipa::path(
    post,
    path = "/webhooks/{source}",
    tag = "webhooks",
    params(
        ("source" = String, Path, description = "1-64 characters of A-Z a-z 0-9 _ - .", pattern = r"^[A-Za-z0-9_.\-]{1,64}$"),
        ("Idempotency-Key" = String, Header, description = "The sender's id of this webhook: 1-255 visible ASCII characters. Required unless the source's scheme or `key` setting finds the key elsewhere (a provider header such as X-GitHub-Delivery, or a body field such as Stripe's id).", pattern = r"^[!-~]{1,255}$"),
    ),
    request_body(
        content = serde_json::Value,
        content_type = "application/json",
        description = "The webhook as the sender posts it (other types where the source allows them)"
    ),
    responses(
        (status = 202, description = "Stored durably", body = Receipt),
        (status = 200, description = "A redelivery: the first event's id", body = Receipt),
        (status = 400, description = "invalid_source, missing_idempotency_key, invalid_idempotency_key, invalid_event_type or invalid_json", body = ErrorBody),
        (status = 401, description = "invalid_signature; nothing stored", body = ErrorBody),
        (status = 404, description = "unknown_source", body = ErrorBody),
        (status = 413, description = "payload_too_large", body = ErrorBody),
        (status = 415, description = "unsupported_media_type", body = ErrorBody),
        (status = 503, description = "storage_unavailable, with Retry-After; never a 202", body = ErrorBody),
    )
)]
pub async fn receive(
    State(state): State<AppState>,
    source: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    // A path that does not decode is no source name at all.
    let source = source.map(|Path(s)| s).unwrap_or_else(|_| "/".into());
    let (span, trace_context) = ingest_trace(&state, &source, &headers);
    // Every line of this request carries the trace, the request's own line included.
    if let Some((trace_id, span_id)) = trace_context.as_deref().and_then(propagation::ids_of) {
        let request = Span::current();
        request.record("trace_id", trace_id);
        request.record("span_id", span_id);
    }
    let request = ingest::Request {
        source,
        headers,
        body,
        traced: !span.is_none(),
        trace_context,
    };
    let ingested = state
        .ingest
        .accept(request, Timestamp::now())
        .instrument(span.clone())
        .await;
    record_outcome(&span, &ingested);
    match &ingested.result {
        Ok(Accepted::Stored(_) | Accepted::Duplicate(_)) => state.write_health.committed(),
        Err(Refusal::Storage(_)) => state.write_health.failed(),
        Err(Refusal::InvalidSignature(reason)) => {
            if let Some(source) = &ingested.source {
                tracing::warn!(
                    source = %source.name,
                    reason = %reason,
                    "Webhook refused: invalid signature"
                );
            }
        }
        Ok(Accepted::Challenge(_)) | Err(_) => {}
    }
    state
        .metrics
        .webhook(&ingested, started.elapsed().as_secs_f64());
    let Ingested { source, result, .. } = ingested;
    let accepted = match result {
        Ok(accepted) => accepted,
        Err(refusal) => return ApiError::from(refusal).into_response(),
    };
    let (status, word, id) = match accepted {
        Accepted::Challenge(challenge) => {
            tracing::info!(source = %source.map(|s| s.name.to_string()).unwrap_or_default(), "Answered Slack url_verification");
            return Json(serde_json::json!({ "challenge": challenge })).into_response();
        }
        Accepted::Stored(id) => (StatusCode::ACCEPTED, "accepted", id),
        Accepted::Duplicate(id) => (StatusCode::OK, "duplicate", id),
    };
    let body = Receipt {
        event_id: id.as_str(),
        status: word,
    };
    let mut response = (status, Json(body)).into_response();
    // The request log line names the event, so one line tells the whole story.
    if let Some(source) = source {
        response.extensions_mut().insert(IngestedEvent {
            id,
            source: source.name,
            duplicate: status == StatusCode::OK,
        });
    }
    response
}

/// The webhook's server span and the trace context stored with its event. No span
/// when tracing is off, or when the trace is certainly not sampled: then only the
/// context is made, so that deliveries still say "not sampled".
fn ingest_trace(state: &AppState, source: &str, headers: &HeaderMap) -> (Span, Option<String>) {
    let Some(sampling) = state.tracing else {
        return (Span::none(), None);
    };
    let sender = propagation::sender(headers);
    let trusted = sender.is_some() && state.ingest.trusts_trace_context(source);
    let parent = sender.as_ref().filter(|_| trusted);
    if propagation::certainly_unsampled(sampling, parent.map(propagation::sampled)) {
        return (Span::none(), Some(propagation::unsampled(parent)));
    }
    let span = ingest_span(source);
    propagation::adopt_sender(&span, sender.as_ref(), trusted);
    let stored = propagation::stored(&span);
    (span, stored)
}

/// The server span of one webhook, as OpenTelemetry's HTTP conventions name it; the
/// outcome is recorded by [`record_outcome`]. Never the payload or a secret.
fn ingest_span(source: &str) -> Span {
    tracing::error_span!(
        "POST /webhooks/{source}",
        otel.kind = "server",
        http.request.method = "POST",
        http.route = "/webhooks/{source}",
        http.response.status_code = tracing::field::Empty,
        hookrelay.source = source,
        hookrelay.event_id = tracing::field::Empty,
        hookrelay.deliveries = tracing::field::Empty,
        hookrelay.commit_ms = tracing::field::Empty,
        hookrelay.event_type = tracing::field::Empty,
        hookrelay.verification = tracing::field::Empty,
        hookrelay.outcome = tracing::field::Empty,
        error.type = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    )
}

fn record_outcome(span: &Span, ingested: &ingest::Ingested) {
    if span.is_disabled() {
        return;
    }
    if let Some(event_type) = &ingested.event_type {
        span.record("hookrelay.event_type", event_type.as_str());
    }
    let verifies = ingested.source.as_ref().is_some_and(|s| s.verifies);
    let (outcome, status) = match &ingested.result {
        Ok(Accepted::Stored(id)) => {
            span.record("hookrelay.event_id", id.as_str());
            ("stored", StatusCode::ACCEPTED)
        }
        Ok(Accepted::Duplicate(id)) => {
            span.record("hookrelay.event_id", id.as_str());
            ("duplicate", StatusCode::OK)
        }
        Ok(Accepted::Challenge(_)) => ("challenge", StatusCode::OK),
        Err(refusal) => {
            let code = refusal.code();
            span.record("error.type", code.as_str());
            if code.http_status().is_server_error() {
                span.record("otel.status_code", "error");
            }
            if matches!(refusal, Refusal::InvalidSignature(_)) {
                span.record("hookrelay.verification", "failed");
            }
            ("refused", code.http_status())
        }
    };
    if ingested.result.is_ok() {
        span.record(
            "hookrelay.verification",
            if verifies { "verified" } else { "none" },
        );
    }
    span.record("hookrelay.outcome", outcome);
    span.record("http.response.status_code", i64::from(status.as_u16()));
}

/// What the request log line says about the event a webhook request stored.
#[derive(Debug, Clone)]
pub struct IngestedEvent {
    pub id: EventId,
    pub source: SourceName,
    pub duplicate: bool,
}
