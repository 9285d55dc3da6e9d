//! `POST /webhooks/{source}`: validate, then answer 202 only once the event is committed.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::IgnoredAny;

use super::AppState;
use super::error::ApiError;
use crate::domain::event::{EventId, SourceName};
use crate::domain::time::Timestamp;
use crate::ingest::key::{self, KeyError};
use crate::ingest::{headers_to_json, media};
use crate::store::{InsertOutcome, NewEvent};

#[derive(Serialize)]
struct Receipt<'a> {
    event_id: &'a str,
    status: &'static str,
}

pub async fn receive(
    State(state): State<AppState>,
    source: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let received_at = Timestamp::now();
    let Path(source) = source.map_err(|_| ApiError::InvalidSource)?;
    let source = SourceName::parse(&source).map_err(|_| ApiError::InvalidSource)?;

    let Some(media::MediaType::Json) = media::classify(&headers) else {
        return Err(ApiError::UnsupportedMediaType(
            "this source accepts application/json bodies only".into(),
        ));
    };
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge {
                limit: state.max_body,
            }
        } else {
            ApiError::BadBody
        }
    })?;
    // Validates without building a tree; any JSON value is fine, arrays included.
    serde_json::from_slice::<IgnoredAny>(&body)
        .map_err(|e| ApiError::InvalidJson(e.to_string()))?;

    let key = key::from_headers(&headers).map_err(|e| match e {
        KeyError::Missing => ApiError::MissingIdempotencyKey(
            "send an Idempotency-Key header so that redeliveries can be recognised".into(),
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
    };
    let outcome = state.store.insert_event(event).await?;
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

/// What the request log line says about the event a webhook request stored.
#[derive(Debug, Clone)]
pub struct IngestedEvent {
    pub id: EventId,
    pub source: SourceName,
    pub duplicate: bool,
}
