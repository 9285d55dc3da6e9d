//! What every handler shares.

use std::sync::Arc;

use super::write_health::WriteHealth;
use crate::config::values::Secret;
use crate::metrics::Metrics;
use crate::ops::Operators;
use crate::ops::ingest::Ingest;

/// What every handler shares, behind one `Arc`: cloned for each request and layer,
/// so a clone must cost one reference count, not one per field.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

pub struct Shared {
    /// The webhook's way in.
    pub ingest: Ingest,
    /// How traces are sampled; `None`: tracing is off.
    pub tracing: Option<crate::config::telemetry::Sampling>,
    pub max_body: usize,
    /// How long a client may take to send a request's body.
    pub body_read_timeout: std::time::Duration,
    /// Bearer token for the operator's routes; `None` limits them to loopback clients.
    pub admin_token: Option<Secret>,
    /// Whether webhooks are being committed: part of readiness.
    pub write_health: Arc<WriteHealth>,
    /// The operators' operations (list, replay, counts), shared by API and dashboard.
    pub operators: Arc<Operators>,
    pub metrics: Arc<Metrics>,
    /// No request may take longer.
    pub request_timeout: std::time::Duration,
}

/// Handlers that need only the operators' operations take them alone.
impl axum::extract::FromRef<AppState> for Arc<Operators> {
    fn from_ref(state: &AppState) -> Self {
        state.operators.clone()
    }
}
