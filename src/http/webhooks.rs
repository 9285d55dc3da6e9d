//! `POST /webhooks/{source}`: check, verify, then answer 202 only once the event is
//! committed.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::IgnoredAny;
use serde_json::Value;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use crate::domain::event::{EventId, SourceName};
use crate::domain::time::Timestamp;
use crate::ingest::key::{self, KeyError};
use crate::ingest::media::{self, MediaType};
use crate::ingest::{headers_to_json, signature};
use crate::sources::Scheme;
use crate::store::{InsertOutcome, NewEvent};

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
        (status = 400, description = "invalid_source, missing_idempotency_key, invalid_idempotency_key or invalid_json", body = ErrorBody),
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
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let resolved = source
        .ok()
        .and_then(|Path(name)| SourceName::parse(&name).ok())
        .map(|name| (state.sources.resolve(name.as_str()), name));
    let (settings, source) = match resolved {
        None => return ApiError::InvalidSource.into_response(),
        Some((None, name)) => return ApiError::UnknownSource(name.to_string()).into_response(),
        Some((Some(settings), name)) => (settings, name),
    };
    // From here on the source is one hookrelay accepts: the metrics may name it.
    let label = MetricsSource {
        name: source.clone(),
        configured: state.sources.get(source.as_str()).is_some(),
    };
    let mut response = ingest(&state, settings, source, headers, body)
        .await
        .unwrap_or_else(IntoResponse::into_response);
    response.extensions_mut().insert(label);
    response
}

async fn ingest(
    state: &AppState,
    settings: std::sync::Arc<crate::sources::SourceSettings>,
    source: SourceName,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let received_at = Timestamp::now();

    let media = media::classify(&headers, &settings.content_types).ok_or_else(|| {
        ApiError::UnsupportedMediaType(format!(
            "source {source} accepts {}",
            settings.content_types.join(", ")
        ))
    })?;
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge {
                limit: state.max_body,
            }
        } else {
            ApiError::BadBody
        }
    })?;

    // On the raw bytes, before anything is parsed or stored.
    if let Err(reason) = signature::verify(&settings, &headers, &body, received_at.0 / 1_000_000) {
        tracing::warn!(
            source = %source,
            scheme = settings.verify.name(),
            reason = %reason,
            "Webhook refused: invalid signature"
        );
        return Err(ApiError::InvalidSignature);
    }

    if media == MediaType::Json {
        // JSON is UTF-8 (RFC 8259). Checked on the whole body first, because skipping a
        // string without building a tree does not look inside it.
        let text = std::str::from_utf8(&body).map_err(|e| {
            ApiError::InvalidJson(format!(
                "the body is not UTF-8 (invalid byte at offset {})",
                e.valid_up_to()
            ))
        })?;
        // Validates without building a tree; any JSON value is fine, arrays included.
        serde_json::from_str::<IgnoredAny>(text)
            .map_err(|e| ApiError::InvalidJson(e.to_string()))?;
    }
    let parse_json = || {
        (media == MediaType::Json)
            .then(|| serde_json::from_slice::<Value>(&body).ok())
            .flatten()
    };

    if settings.verify == Scheme::Slack
        && let Some(challenge) = slack_challenge(parse_json())
    {
        tracing::info!(source = %source, "Answered Slack url_verification");
        return Ok(Json(serde_json::json!({ "challenge": challenge })).into_response());
    }

    let key = key::extract(&headers, &settings.keys, &mut { parse_json }).map_err(|e| match e {
        KeyError::Missing => ApiError::MissingIdempotencyKey(
            "send an Idempotency-Key header (or configure the source's key) so that \
             redeliveries can be recognised"
                .into(),
        ),
        KeyError::Invalid(reason) => ApiError::InvalidIdempotencyKey(reason),
    })?;

    let event = NewEvent {
        id: EventId::generate(),
        content_type: headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        headers: headers_to_json(&headers),
        source: source.clone(),
        key,
        body,
        received_at,
        max_attempts: state.max_attempts,
        forward: settings.destination.is_some(),
    };
    let outcome = state.store.insert_event(event).await;
    match &outcome {
        Ok(_) => state.write_health.committed(),
        Err(_) => state.write_health.failed(),
    }
    let outcome = outcome?;
    let (status, word, id) = match outcome {
        InsertOutcome::Accepted(id) => (StatusCode::ACCEPTED, "accepted", id),
        InsertOutcome::Duplicate(id) => (StatusCode::OK, "duplicate", id),
    };
    let body = Receipt {
        event_id: id.as_str(),
        status: word,
    };
    let mut response = (status, Json(body)).into_response();
    // The request log line names the event, so one line tells the whole story.
    response.extensions_mut().insert(IngestedEvent {
        id,
        source,
        duplicate: status == StatusCode::OK,
    });
    Ok(response)
}

/// Slack's handshake when an events URL is registered: answered, never stored.
fn slack_challenge(body: Option<Value>) -> Option<String> {
    let body = body?;
    if body.get("type")?.as_str()? != "url_verification" {
        return None;
    }
    body.get("challenge")?.as_str().map(str::to_owned)
}

/// The source a webhook request was for, once hookrelay knows it is one it accepts:
/// refusals before that point are counted under one fixed label, so made-up names
/// cannot crowd real sources out of the metrics.
#[derive(Debug, Clone)]
pub struct MetricsSource {
    pub name: SourceName,
    /// Named in the config file: always labelled, outside the bound on other names.
    pub configured: bool,
}

/// What the request log line says about the event a webhook request stored.
#[derive(Debug, Clone)]
pub struct IngestedEvent {
    pub id: EventId,
    pub source: SourceName,
    pub duplicate: bool,
}
