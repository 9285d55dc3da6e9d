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

use super::error::{ApiError, ErrorBody};
use super::state::AppState;
use crate::domain::event::{EventId, SourceName};
use crate::domain::time::Timestamp;
use crate::ops::ingest::{self, Accepted, Ingested, Refusal};

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
    let request = ingest::Request {
        source,
        headers,
        body,
    };
    let ingested = state.ingest.accept(request, Timestamp::now()).await;
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
    let Ingested { source, result } = ingested;
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

/// What the request log line says about the event a webhook request stored.
#[derive(Debug, Clone)]
pub struct IngestedEvent {
    pub id: EventId,
    pub source: SourceName,
    pub duplicate: bool,
}
