//! What a worker is told, and what its attempts share.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::retention::RetentionPolicy;
use crate::config::alerts::AlertSettings;
use crate::config::destinations::Destinations;
use crate::domain::retry::RetryPolicy;
use crate::metrics::Metrics;
use crate::store::DeliveryId;

#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub retry: RetryPolicy,
    pub lease: Duration,
    pub concurrency: usize,
    pub poll_interval: Duration,
    pub destinations: Arc<Destinations>,
    pub retention: RetentionPolicy,
    pub metrics: Arc<Metrics>,
    /// `[alerts]`: this worker sends due alerts and watches for lag.
    pub alerts: Option<Arc<AlertSettings>>,
    /// How traces are sampled (attempts get spans in the event's trace); `None`:
    /// tracing is off.
    pub tracing: Option<crate::config::telemetry::Sampling>,
}

/// Attempts running now, by delivery, with their attempt number (for lease renewal).
pub type InFlight = Arc<Mutex<HashMap<DeliveryId, u32>>>;
