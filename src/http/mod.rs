//! The HTTP API: routes, shared state and the layers every request passes.

mod admin;
mod auth;
mod body;
pub mod error;
pub mod events;
mod health;
mod serve;

pub use serve::{ConnectionLimits, serve};
pub use state::{AppState, Shared};
mod state;
mod ui;
mod webhooks;
mod write_health;

use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tracing::Instrument as _;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::domain::time::millis;
use error::ApiError;
use webhooks::IngestedEvent;

/// The OpenAPI document's frame; every path in it comes from the routes themselves.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "hookrelay",
        description = "Reliable webhook ingestion: durable before 202, idempotent, verified, \
                       delivered with retries and dead-lettering."
    ),
    modifiers(&AdminTokenScheme),
    tags(
        (name = "webhooks", description = "What senders call"),
        (name = "events", description = "Operators: inspect and replay (admin token)"),
        (name = "destinations", description = "Operators: the applications events are delivered to (admin token)"),
        (name = "operations", description = "Operators: metrics and the dashboard (admin token)"),
        (name = "probes", description = "Liveness and readiness; always open"),
    )
)]
struct ApiDoc;

struct AdminTokenScheme;

impl Modify for AdminTokenScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// Every operators' route answers the same refusals (see [`auth`]): documented once
/// here for all of them rather than on each route.
fn document_operator_refusals(openapi: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{HttpMethod, Ref, RefOr, ResponseBuilder, content::ContentBuilder};
    let error = |description: &str| {
        RefOr::T(
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build(),
        )
    };
    for item in openapi.paths.paths.values_mut() {
        for (method, operation) in [
            (HttpMethod::Get, item.get.as_mut()),
            (HttpMethod::Post, item.post.as_mut()),
        ] {
            let Some(operation) = operation else { continue };
            if operation.security.as_ref().is_none_or(|s| s.is_empty()) {
                continue;
            }
            let responses = &mut operation.responses.responses;
            responses
                .entry("401".into())
                .or_insert_with(|| error("unauthorized: the bearer token is missing or wrong"));
            responses.entry("403".into()).or_insert_with(|| {
                error(
                    "forbidden: no token is set and the client is not on this machine; \
                     csrf_rejected: a browser marked the request as from another site",
                )
            });
            if method == HttpMethod::Post {
                responses.entry("415".into()).or_insert_with(|| {
                    error("unsupported_media_type: a body that is not application/json")
                });
            }
        }
    }
}

pub fn router(state: AppState) -> Router {
    let request_timeout = state.request_timeout;
    let body_limits = body::BodyLimits {
        max_body: state.max_body,
        read_timeout: state.body_read_timeout,
    };
    // Routes are registered together with their documentation, so the two cannot
    // drift apart.
    let operators = OpenApiRouter::<AppState>::new()
        .routes(routes!(admin::list_events))
        .routes(routes!(admin::replay_matching))
        .routes(routes!(events::get_event))
        .routes(routes!(events::list_attempts))
        .routes(routes!(admin::replay))
        .routes(routes!(admin::metrics))
        .routes(routes!(admin::destinations))
        .routes(routes!(admin::pause))
        .routes(routes!(admin::resume))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_admin,
        ));
    let dashboard = OpenApiRouter::<AppState>::new()
        .routes(routes!(ui::overview))
        .route("/ui/find", get(ui::find))
        .route("/ui/events/{id}", get(ui::event))
        .route("/ui/events/{id}/replay", post(ui::replay))
        .route("/ui/replay", post(ui::replay_matching))
        .route("/ui/destinations", get(ui::destinations))
        .route("/ui/destinations/{name}", get(ui::destination))
        .route("/ui/destinations/{name}/pause", post(ui::pause))
        .route("/ui/destinations/{name}/resume", post(ui::resume))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            ui::require_dashboard,
        ))
        .layer(middleware::map_response(ui::page_headers));
    let (router, document) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(webhooks::receive))
        .merge(operators)
        .merge(dashboard)
        .route("/ui/sign-out", get(ui::sign_out))
        // A person who opens the bare address finds the dashboard.
        .route("/", get(|| async { axum::response::Redirect::to("/ui") }))
        .routes(routes!(health::health))
        .routes(routes!(health::ready))
        .split_for_parts();
    let mut document = document;
    // After the routes are in: they bring their operations with them.
    document_operator_refusals(&mut document);
    admin::require_a_filter(&mut document);
    let document = document.to_json().unwrap_or_else(|_| "{}".into());
    router
        .route(
            "/openapi.json",
            get(move || async move { ([(header::CONTENT_TYPE, "application/json")], document) }),
        )
        .fallback(no_route)
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(body_limits, body::read_body))
        .layer(middleware::from_fn_with_state(
            request_timeout,
            request_scope,
        ))
        .with_state(state)
}

/// A worker's own listener: its `/metrics` (guarded like the API's), `/health` and
/// `/ready`; nothing else.
pub fn worker_router(state: AppState) -> Router {
    let request_timeout = state.request_timeout;
    Router::new()
        .route(
            "/metrics",
            get(admin::metrics).route_layer(middleware::from_fn_with_state(
                state.clone(),
                auth::require_admin,
            )),
        )
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .fallback(no_route)
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(middleware::from_fn_with_state(
            request_timeout,
            request_scope,
        ))
        .with_state(state)
}

/// The header that names one request across the client, every log line of it and
/// the answer.
const REQUEST_ID: &str = "x-request-id";

/// The client's request id when it is a sane one (1-128 visible ASCII), else a new one.
fn request_id(request: &Request) -> HeaderValue {
    request
        .headers()
        .get(REQUEST_ID)
        .filter(|v| (1..=128).contains(&v.len()) && v.as_bytes().iter().all(u8::is_ascii_graphic))
        .cloned()
        .unwrap_or_else(|| {
            // Random enough to tell requests apart; no system call per request.
            let mut id = [0u8; 32];
            let random = fastrand::u128(..);
            for (i, digit) in id.iter_mut().enumerate() {
                *digit = b"0123456789abcdef"[((random >> (i * 4)) & 0xf) as usize];
            }
            HeaderValue::from_bytes(&id).expect("hex is a valid header value")
        })
}

/// One line per request: method, path (never the query), status and duration, and
/// for a stored webhook the event's id and source. Every line logged while the
/// request runs carries its `request_id` (an error-level span, so that it is
/// rendered whatever the log filter), and so does the answer. No request runs longer
/// than `limit`: a slow store answers 503 rather than hold the client for ever.
async fn request_scope(
    axum::extract::State(limit): axum::extract::State<std::time::Duration>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let id = request_id(&request);
    let span = tracing::error_span!(
        "request",
        request_id = id.to_str().unwrap_or_default(),
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    let mut response = match tokio::time::timeout(limit, next.run(request))
        .instrument(span.clone())
        .await
    {
        Ok(response) => response,
        Err(_) => ApiError::Timeout { limit }.into_response(),
    };
    response.headers_mut().insert(REQUEST_ID, id);
    let status = response.status().as_u16();
    let duration_ms = millis(started.elapsed());
    let _entered = span.enter();
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
    drop(_entered);
    response
}

/// A path that is no route. Under `/webhooks/` it still counts as a refused webhook.
async fn no_route(
    axum::extract::State(state): axum::extract::State<AppState>,
    uri: axum::http::Uri,
) -> ApiError {
    if uri.path().starts_with("/webhooks/") {
        state
            .metrics
            .webhook_unrouted(crate::error_code::ErrorCode::NotFound.as_str(), 0.0);
    }
    ApiError::NotFound("route")
}
