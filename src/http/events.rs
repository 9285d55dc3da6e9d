//! `GET /events/{id}` and `GET /events/{id}/attempts`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};

use super::error::{ApiError, ErrorBody};
use crate::domain::event::EventId;
use crate::ops::Operators;
pub use crate::ops::views::{AttemptList, AttemptView, EventView};

/// One event.
#[utoipa::path(
    get,
    path = "/events/{id}",
    tag = "events",
    params(("id" = String, Path, description = "evt_<uuid>")),
    responses(
        (status = 200, body = EventView),
        (status = 404, description = "not_found", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn get_event(
    State(operators): State<Arc<Operators>>,
    Path(id): Path<String>,
) -> Result<Json<EventView>, ApiError> {
    let event = operators.show(&EventId::from_stored(id)).await?;
    Ok(Json(EventView::from(event)))
}

/// Every attempt of an event, oldest first.
#[utoipa::path(
    get,
    path = "/events/{id}/attempts",
    tag = "events",
    params(("id" = String, Path, description = "evt_<uuid>")),
    responses(
        (status = 200, body = AttemptList),
        (status = 404, description = "not_found", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn list_attempts(
    State(operators): State<Arc<Operators>>,
    Path(id): Path<String>,
) -> Result<Json<AttemptList>, ApiError> {
    let attempts = operators.attempts(&EventId::from_stored(id)).await?;
    Ok(Json(AttemptList {
        attempts: attempts.into_iter().map(AttemptView::from).collect(),
    }))
}
