//! `GET /health` (the process runs) and `GET /ready` (the database can be written).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::state::AppState;
use crate::domain::time::Timestamp;

/// A probe that takes longer than this counts as a failure.
const READY_TIMEOUT: Duration = Duration::from_secs(3);
/// The process runs.
#[utoipa::path(get, path = "/health", tag = "probes", responses((status = 200, body = Object)))]
pub async fn health() -> Json<Value> {
    Json(json!({"status": "healthy", "timestamp": Timestamp::now().to_rfc3339()}))
}

/// The database can be reached and written.
#[utoipa::path(
    get,
    path = "/ready",
    tag = "probes",
    responses((status = 200, body = Object), (status = 503, description = "not_ready", body = Object))
)]
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    if state.write_health.failing() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(
                json!({"status": "not_ready", "timestamp": Timestamp::now().to_rfc3339(),
                        "checks": {"database": "writes_failing"}}),
            ),
        );
    }
    let probe = tokio::time::timeout(READY_TIMEOUT, state.ingest.check_writable()).await;
    let timestamp = Timestamp::now().to_rfc3339();
    match probe {
        Ok(Ok(())) => (
            StatusCode::OK,
            Json(json!({"status": "ready", "timestamp": timestamp,
                        "checks": {"database": "connected"}})),
        ),
        outcome => {
            let reason = match outcome {
                Ok(Err(error)) => {
                    tracing::warn!(
                        error = &error as &dyn std::error::Error,
                        "Readiness check failed"
                    );
                    "unavailable"
                }
                _ => {
                    tracing::warn!("Readiness check timed out");
                    "timeout"
                }
            };
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "not_ready", "timestamp": timestamp,
                            "checks": {"database": reason}})),
            )
        }
    }
}
