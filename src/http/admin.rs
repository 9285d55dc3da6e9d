//! The operator's API: `GET /events` with filters and cursor pagination, and replays.
//! Every route here sits behind [`super::auth`].

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::events::EventView;
use crate::domain::event::EventId;
use crate::metrics::METRICS;
use crate::store::{EventFilter, FilterError, ReplayOutcome};

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 500;

/// An event's status, as the documentation names the values a filter takes.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum StatusName {
    Queued,
    Processing,
    Retrying,
    Delivered,
    DeadLettered,
}

/// The statuses a replay starts from.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum ReplayableStatus {
    Delivered,
    DeadLettered,
}

// Fields are read as text so that a bad value gets this API's own error code; the
// documentation states the types they must have.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only events in this status.
    #[param(value_type = Option<StatusName>)]
    status: Option<String>,
    /// Only events of this source.
    #[param(pattern = r"^[A-Za-z0-9_.\-]{1,64}$")]
    source: Option<String>,
    /// Received at or after (RFC 3339).
    #[param(format = DateTime)]
    since: Option<String>,
    /// Received before (RFC 3339).
    #[param(format = DateTime)]
    until: Option<String>,
    /// Events per page, 1-500; default 50.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 500)]
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(pattern = r"^[0-9]{1,18}$")]
    cursor: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct EventList {
    events: Vec<EventView>,
    next_cursor: Option<String>,
}

/// Events, newest first, with filters and cursor pagination.
#[utoipa::path(
    get,
    path = "/events",
    tag = "events",
    params(ListParams),
    responses(
        (status = 200, body = EventList),
        (status = 400, description = "invalid_status, invalid_source, invalid_timestamp, invalid_limit, invalid_cursor or invalid_query", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn list_events(
    State(state): State<AppState>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<EventList>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::invalid("invalid_query", e.body_text()))?;
    let filter = filter_from(
        params.status.as_deref(),
        params.source,
        params.since.as_deref(),
        params.until.as_deref(),
    )?;
    let limit = match params.limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                ApiError::invalid("invalid_limit", format!("limit must be 1 to {MAX_LIMIT}"))
            })?,
    };
    let before = params
        .cursor
        .as_deref()
        .map(|c| {
            c.parse::<i64>().map_err(|_| {
                ApiError::invalid(
                    "invalid_cursor",
                    "cursor is not one this API gave out".into(),
                )
            })
        })
        .transpose()?;
    let page = state.store.list_events(&filter, limit, before).await?;
    Ok(Json(EventList {
        events: page.events.into_iter().map(EventView::from).collect(),
        next_cursor: page.next_cursor.map(|seq| seq.to_string()),
    }))
}

fn filter_from(
    status: Option<&str>,
    source: Option<String>,
    since: Option<&str>,
    until: Option<&str>,
) -> Result<EventFilter, ApiError> {
    EventFilter::parse(status, source, since, until).map_err(|e| {
        let code = match e {
            FilterError::Status => "invalid_status",
            FilterError::Source => "invalid_source",
            FilterError::Timestamp(_) => "invalid_timestamp",
        };
        ApiError::invalid(code, e.to_string())
    })
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Queued {
    event_id: String,
    status: &'static str,
}

/// Queue a delivered or dead-lettered event again, with a fresh set of attempts.
#[utoipa::path(
    post,
    path = "/events/{id}/replay",
    tag = "events",
    params(("id" = String, Path, description = "evt_<uuid>")),
    responses(
        (status = 202, body = Queued),
        (status = 404, description = "not_found", body = ErrorBody),
        (status = 409, description = "not_replayable", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn replay(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Queued>), ApiError> {
    let id = EventId::from_stored(id);
    match state.store.replay(&id, state.max_attempts).await? {
        ReplayOutcome::Queued => {
            tracing::info!(event_id = %id, "Event replayed");
            Ok((
                StatusCode::ACCEPTED,
                Json(Queued {
                    event_id: id.to_string(),
                    status: "queued",
                }),
            ))
        }
        ReplayOutcome::NotReplayable(status) => Err(ApiError::NotReplayable(status)),
        ReplayOutcome::NotFound => Err(ApiError::NotFound("event")),
    }
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayFilter {
    /// Only events in this status (by default both).
    #[schema(value_type = Option<ReplayableStatus>)]
    status: Option<String>,
    /// Only events of this source.
    #[schema(pattern = r"^[A-Za-z0-9_.\-]{1,64}$")]
    source: Option<String>,
    /// Received at or after (RFC 3339).
    #[schema(format = DateTime)]
    since: Option<String>,
    /// Received before (RFC 3339).
    #[schema(format = DateTime)]
    until: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Replayed {
    replayed: u64,
}

/// Replay every delivered or dead-lettered event matching the filter.
#[utoipa::path(
    post,
    path = "/events/replay",
    tag = "events",
    request_body = ReplayFilter,
    responses(
        (status = 200, body = Replayed),
        (status = 400, description = "invalid_status, invalid_source, invalid_timestamp or invalid_body", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn replay_matching(
    State(state): State<AppState>,
    body: Result<Json<ReplayFilter>, JsonRejection>,
) -> Result<Json<Replayed>, ApiError> {
    let Json(body) = body.map_err(|e| ApiError::invalid("invalid_body", e.body_text()))?;
    let filter = filter_from(
        body.status.as_deref(),
        body.source,
        body.since.as_deref(),
        body.until.as_deref(),
    )?;
    if filter.status.is_some_and(|s| !s.is_replayable()) {
        return Err(ApiError::invalid(
            "invalid_status",
            "only delivered or dead_lettered events can be replayed".into(),
        ));
    }
    let replayed = state
        .store
        .replay_matching(&filter, state.max_attempts)
        .await?;
    tracing::info!(replayed, "Events replayed by filter");
    Ok(Json(Replayed { replayed }))
}

/// Prometheus text format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, content_type = "text/plain", body = String)),
    security(("admin_token" = []))
)]
pub async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let gauges = state.store.gauges().await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        METRICS.render(&gauges),
    ))
}
