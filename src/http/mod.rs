//! The HTTP API: routes, shared state and the layers every request passes.

mod admin;
mod auth;
pub mod error;
pub mod events;
mod health;
mod webhooks;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::domain::time::millis;
use crate::metrics::METRICS;
use crate::sources::{Secret, Sources};
use crate::store::Store;
use error::{ApiError, ErrorCode};
use webhooks::IngestedEvent;

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub sources: Arc<Sources>,
    pub max_attempts: u32,
    pub max_body: usize,
    /// Bearer token for the operator's routes; `None` limits them to loopback clients.
    pub admin_token: Option<Secret>,
}

pub fn router(state: AppState) -> Router {
    let max_body = state.max_body;
    let operators = Router::new()
        .route("/events", get(admin::list_events))
        .route("/events/replay", post(admin::replay_matching))
        .route("/events/{id}", get(events::get_event))
        .route("/events/{id}/attempts", get(events::list_attempts))
        .route("/events/{id}/replay", post(admin::replay))
        .route("/metrics", get(admin::metrics))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_admin,
        ));
    Router::new()
        .route("/webhooks/{source}", post(webhooks::receive))
        .merge(operators)
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .fallback(|| async { ApiError::NotFound("route") })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn(log_request))
        .with_state(state)
}

fn record_webhook(response: &Response, source: &str, seconds: f64) {
    let (source, outcome, reason) = match (
        response.extensions().get::<IngestedEvent>(),
        response.extensions().get::<ErrorCode>(),
    ) {
        (Some(event), _) if event.duplicate => (event.source.as_str(), "duplicate", ""),
        (Some(event), _) => (event.source.as_str(), "accepted", ""),
        (None, Some(ErrorCode(code))) => {
            // A refused name is not a source; do not make a series of it.
            let source = if *code == "invalid_source" {
                ""
            } else {
                source
            };
            (source, "refused", *code)
        }
        // Slack's url_verification handshake: answered, not stored.
        (None, None) => (source, "answered", ""),
    };
    METRICS.webhook(source, outcome, reason, seconds);
}

/// One line per request: method, path (never the query), status and duration, and
/// for a stored webhook the event's id and source.
async fn log_request(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await.into_response();
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    let duration_ms = millis(elapsed);
    if let Some(source) = path.strip_prefix("/webhooks/") {
        record_webhook(&response, source, elapsed.as_secs_f64());
    }
    match response.extensions().get::<IngestedEvent>() {
        Some(event) => tracing::info!(
            event_id = %event.id,
            source = %event.source,
            method = %method,
            path = %path,
            status,
            duration_ms,
            "{}",
            if event.duplicate { "Duplicate event dropped" } else { "Event accepted" }
        ),
        None => tracing::info!(
            method = %method,
            path = %path,
            status,
            duration_ms,
            "Request handled"
        ),
    }
    response
}
