//! `GET /health` (the process runs) and `GET /ready` (the database can be written).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::AppState;
use crate::domain::time::Timestamp;

/// A probe that takes longer than this counts as a failure.
const READY_TIMEOUT: Duration = Duration::from_secs(3);
/// A webhook that could not be committed this recently, with none committed since,
/// makes the process not ready, whatever a probe says: the probe's small write can
/// pass while the events' own writes fail (a full disk, a lock on the table).
const RECENT_FAILURE: Duration = Duration::from_secs(5);

/// The outcome of the most recent webhook commit: when it failed, or `None` when it
/// was committed. Every webhook records into it, so a success only locks when it has
/// a failure to clear.
#[derive(Debug, Default)]
pub struct WriteHealth {
    last_failure: Mutex<Option<Instant>>,
    any_failure: AtomicBool,
}

impl WriteHealth {
    pub fn committed(&self) {
        // A read on the hot path; a write only when there is something to clear.
        if self.any_failure.load(Ordering::Relaxed)
            && self.any_failure.swap(false, Ordering::Relaxed)
            && let Ok(mut last) = self.last_failure.lock()
        {
            *last = None;
        }
    }

    pub fn failed(&self) {
        if let Ok(mut last) = self.last_failure.lock() {
            *last = Some(Instant::now());
        }
        self.any_failure.store(true, Ordering::Relaxed);
    }

    /// True while commits fail: the last one failed, and recently.
    fn failing(&self) -> bool {
        self.last_failure
            .lock()
            .is_ok_and(|last| last.is_some_and(|at| at.elapsed() < RECENT_FAILURE))
    }
}

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
    let probe = tokio::time::timeout(READY_TIMEOUT, state.store.check_writable()).await;
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
