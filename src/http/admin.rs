//! The operator's API: `GET /events` with filters and cursor pagination, and replays.
//! Every route here sits behind [`super::auth`].

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ErrorBody};
use super::events::EventView;
use super::state::AppState;
use crate::domain::event::EventId;
use crate::error_code::ErrorCode;
use crate::ops::Operators;
use crate::ops::events::{self, ReplayScope};
use crate::ops::views::{DestinationList, DestinationView};
use crate::store::EventFilter;

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
    Filtered,
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
    /// Only events with a delivery to this destination (with `status`: a delivery to
    /// it in that status).
    #[param(pattern = r"^[A-Za-z0-9_.\-]{1,64}$")]
    destination: Option<String>,
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
    /// `true`: each event with its `payload`; the page then ends early (at one event
    /// at least) once its payloads pass 4 MiB.
    #[param(value_type = Option<bool>)]
    include_payload: Option<String>,
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
        (status = 400, description = "invalid_status, invalid_source, invalid_destination, invalid_timestamp, invalid_limit, invalid_cursor or invalid_query", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn list_events(
    State(state): State<AppState>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<EventList>, ApiError> {
    let Query(params) =
        params.map_err(|e| ApiError::invalid(ErrorCode::InvalidQuery, e.body_text()))?;
    let filter = EventFilter::parse(
        params.status.as_deref(),
        params.source,
        params.destination,
        params.since.as_deref(),
        params.until.as_deref(),
    )?;
    let limit = events::page_size(params.limit.as_deref())?;
    let before = events::cursor(params.cursor.as_deref())?;
    let with_payloads = match params.include_payload.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::invalid(
                ErrorCode::InvalidQuery,
                format!("include_payload must be true or false, not {other:?}"),
            ));
        }
    };
    let (page, shown): (_, fn(EventView) -> EventView) = if with_payloads {
        let page = state
            .operators
            .list_with_payloads(&filter, limit, before)
            .await?;
        (page, |view| view)
    } else {
        let page = state.operators.list(&filter, limit, before).await?;
        (page, EventView::without_payload)
    };
    Ok(Json(EventList {
        events: page
            .events
            .into_iter()
            .map(|event| shown(EventView::from(event)))
            .collect(),
        next_cursor: page.next_cursor.map(|seq| seq.to_string()),
    }))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Queued {
    event_id: String,
    status: &'static str,
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReplayParams {
    /// Replay only the delivery to this destination.
    #[param(pattern = r"^[A-Za-z0-9_.\-]{1,64}$")]
    destination: Option<String>,
}

/// Queue an event's delivered or dead-lettered deliveries again (only the one to
/// `destination`, when given), each with a fresh set of attempts. A `filtered` event
/// is routed again with the routes configured now.
#[utoipa::path(
    post,
    path = "/events/{id}/replay",
    tag = "events",
    params(("id" = String, Path, description = "evt_<uuid>"), ReplayParams),
    responses(
        (status = 202, body = Queued),
        (status = 400, description = "invalid_destination or invalid_query", body = ErrorBody),
        (status = 404, description = "not_found: no such event, or no delivery to that destination", body = ErrorBody),
        (status = 409, description = "not_replayable: no delivery is finished, or a filtered event still matches no route", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn replay(
    State(state): State<AppState>,
    Path(id): Path<String>,
    params: Result<Query<ReplayParams>, QueryRejection>,
) -> Result<(StatusCode, Json<Queued>), ApiError> {
    let Query(params) =
        params.map_err(|e| ApiError::invalid(ErrorCode::InvalidQuery, e.body_text()))?;
    if let Some(destination) = &params.destination {
        crate::domain::event::SourceName::parse(destination)
            .map_err(|_| ApiError::from(crate::store::FilterError::Destination))?;
    }
    let id = EventId::from_stored(id);
    state
        .operators
        .replay(&id, params.destination.as_deref())
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Queued {
            event_id: id.to_string(),
            status: "queued",
        }),
    ))
}

/// A bulk replay's filter: at least one field, or `"all": true`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayFilter {
    /// Only events in this status (by default both).
    #[schema(value_type = Option<ReplayableStatus>, nullable = false)]
    #[serde(default, deserialize_with = "present")]
    status: Option<String>,
    /// Only events of this source.
    #[schema(value_type = Option<String>, nullable = false, pattern = r"^[A-Za-z0-9_.\-]{1,64}$")]
    #[serde(default, deserialize_with = "present")]
    source: Option<String>,
    /// Only deliveries to this destination.
    #[schema(value_type = Option<String>, nullable = false, pattern = r"^[A-Za-z0-9_.\-]{1,64}$")]
    #[serde(default, deserialize_with = "present")]
    destination: Option<String>,
    /// Received at or after (RFC 3339).
    #[schema(value_type = Option<String>, nullable = false, format = DateTime)]
    #[serde(default, deserialize_with = "present")]
    since: Option<String>,
    /// Received before (RFC 3339).
    #[schema(value_type = Option<String>, nullable = false, format = DateTime)]
    #[serde(default, deserialize_with = "present")]
    until: Option<String>,
    /// Replay every delivered and dead-lettered event: the only way to ask for a
    /// replay with no filter.
    #[schema(value_type = Option<OnlyTrue>, nullable = false)]
    #[serde(default, deserialize_with = "only_true")]
    all: Option<bool>,
}

/// A member that is given has a value: `null` is refused, as the document says.
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// `all` is `true` or left out.
fn only_true<'de, D>(deserializer: D) -> Result<Option<bool>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    match bool::deserialize(deserializer)? {
        true => Ok(Some(true)),
        false => Err(serde::de::Error::custom(
            "all is true or left out; to replay by filter, leave it out",
        )),
    }
}

/// `true`, the only value `all` takes.
pub struct OnlyTrue;

impl utoipa::PartialSchema for OnlyTrue {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::Boolean))
            .enum_values(Some([true]))
            .into()
    }
}

impl utoipa::ToSchema for OnlyTrue {}

/// At least one member: `{}` is refused (the replay policy), and the document says so.
pub(super) fn require_a_filter(openapi: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{RefOr, schema::Schema};
    let Some(components) = openapi.components.as_mut() else {
        return;
    };
    if let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut("ReplayFilter") {
        object.min_properties = Some(1);
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Replayed {
    replayed: u64,
}

/// Replay every delivered or dead-lettered delivery of the events matching the filter
/// (`replayed` counts deliveries).
#[utoipa::path(
    post,
    path = "/events/replay",
    tag = "events",
    request_body = ReplayFilter,
    responses(
        (status = 200, body = Replayed),
        (status = 400, description = "invalid_status, invalid_source, invalid_destination, invalid_timestamp, invalid_body, or replay_needs_filter for a replay with no filter and no \"all\": true", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn replay_matching(
    State(operators): State<Arc<Operators>>,
    body: Result<Json<ReplayFilter>, JsonRejection>,
) -> Result<Json<Replayed>, ApiError> {
    let Json(body) = body.map_err(|e| ApiError::invalid(ErrorCode::InvalidBody, e.body_text()))?;
    let filter = EventFilter::parse(
        body.status.as_deref(),
        body.source,
        body.destination,
        body.since.as_deref(),
        body.until.as_deref(),
    )?;
    let scope = ReplayScope::new(filter, body.all.unwrap_or(false))?;
    let replayed = operators.replay_matching(&scope).await?;
    Ok(Json(Replayed { replayed }))
}

/// Every destination: its state, backlog, attempts in flight, the age of its oldest
/// due delivery, its last success and failure.
#[utoipa::path(
    get,
    path = "/destinations",
    tag = "destinations",
    responses((status = 200, body = DestinationList)),
    security(("admin_token" = []))
)]
pub async fn destinations(
    State(operators): State<Arc<Operators>>,
) -> Result<Json<DestinationList>, ApiError> {
    let all = operators.destinations().await?;
    Ok(Json(DestinationList {
        destinations: all.into_iter().map(DestinationView::from).collect(),
    }))
}

/// Stop attempting deliveries to a destination, in every worker: events keep being
/// accepted and stored, their deliveries wait and use none of their attempts.
/// Pausing a paused destination changes nothing.
#[utoipa::path(
    post,
    path = "/destinations/{name}/pause",
    tag = "destinations",
    params(("name" = String, Path, description = "A configured destination, or `built-in`")),
    responses(
        (status = 200, body = DestinationView),
        (status = 404, description = "not_found: no destination is configured with that name", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn pause(
    State(operators): State<Arc<Operators>>,
    Path(name): Path<String>,
) -> Result<Json<DestinationView>, ApiError> {
    let (status, _) = operators.set_paused(&name, true).await?;
    Ok(Json(status.into()))
}

/// Attempt a paused destination's deliveries again: its backlog drains at its `rate`.
#[utoipa::path(
    post,
    path = "/destinations/{name}/resume",
    tag = "destinations",
    params(("name" = String, Path, description = "A configured destination, or `built-in`")),
    responses(
        (status = 200, body = DestinationView),
        (status = 404, description = "not_found: no destination is configured with that name", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn resume(
    State(operators): State<Arc<Operators>>,
    Path(name): Path<String>,
) -> Result<Json<DestinationView>, ApiError> {
    let (status, _) = operators.set_paused(&name, false).await?;
    Ok(Json(status.into()))
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
    let gauges = state.operators.gauges().await?;
    let destinations: Vec<(String, &str, i64, f64)> = state
        .operators
        .destinations()
        .await?
        .into_iter()
        .map(|d| {
            let age = d.oldest_due_age.unwrap_or_default().as_secs_f64();
            (d.name, d.state.as_str(), d.stats.backlog, age)
        })
        .collect();
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(&gauges, &destinations),
    ))
}
