//! The operations every adapter (the HTTP API, the dashboard, the CLI) calls. An
//! adapter parses its input, calls one operation and renders the outcome; the rules
//! live here, once.

pub mod destinations;
pub mod events;
pub mod ingest;
pub mod routing;
pub mod views;

use std::sync::Arc;

use crate::config::destinations::Destinations;
use crate::config::sources::Sources;
use crate::config::telemetry::TraceLink;
use crate::domain::lifecycle::EventStatus;
use crate::store::{AttemptBudget, FilterError, OperatorView, StoreError};

/// Events per page when none is asked for, and the most one page holds.
pub const DEFAULT_PAGE: usize = 50;
pub const MAX_PAGE: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error("no such event")]
    NotFound,
    #[error("a {0} event cannot be replayed; only delivered or dead_lettered ones")]
    NotReplayable(EventStatus),
    #[error("the event has no delivery to destination {0:?}")]
    NoDelivery(String),
    #[error("no destination is named {0:?}")]
    UnknownDestination(String),
    #[error("the event still matches no route of its source; it stays filtered")]
    StillFiltered,
    #[error(transparent)]
    Filter(#[from] FilterError),
    #[error("limit must be 1 to {MAX_PAGE}")]
    Limit,
    #[error("cursor is not one this API gave out")]
    Cursor,
    #[error("only delivered or dead_lettered events can be replayed")]
    StatusNotReplayable,
    #[error(
        "a replay by filter needs at least one of status, source, since or until; \
         to replay every delivered and dead-lettered event, say so with all"
    )]
    UnboundedReplay,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The operators' operations on one store.
#[derive(Clone)]
pub struct Operators {
    store: Arc<dyn OperatorView>,
    /// The routes, for replays of filtered events.
    sources: Arc<Sources>,
    /// For replays and the destinations' list.
    destinations: Arc<Destinations>,
    /// Attempts a replay grants, by destination.
    budget: AttemptBudget,
    /// Where a trace id links to (`[telemetry] trace_url`).
    trace_link: Option<TraceLink>,
}

impl Operators {
    /// `max_attempts`: the attempts a replay grants where a destination does not say.
    pub fn new(
        store: Arc<dyn OperatorView>,
        sources: Arc<Sources>,
        destinations: Arc<Destinations>,
        max_attempts: u32,
    ) -> Self {
        let budget = AttemptBudget {
            default: max_attempts,
            by_destination: destinations
                .iter()
                .filter_map(|d| Some((d.name.clone(), d.max_attempts?)))
                .collect(),
        };
        Self {
            store,
            sources,
            destinations,
            budget,
            trace_link: None,
        }
    }

    /// Links trace ids to `link` (`[telemetry] trace_url`).
    pub fn with_trace_link(mut self, link: Option<TraceLink>) -> Self {
        self.trace_link = link;
        self
    }

    /// Where the trace `trace_id` is shown, when a `trace_url` is set.
    pub fn trace_url(&self, trace_id: &str) -> Option<String> {
        self.trace_link.as_ref().map(|link| link.to(trace_id))
    }

    pub fn store(&self) -> &Arc<dyn OperatorView> {
        &self.store
    }

    pub fn destination_settings(&self) -> &Arc<Destinations> {
        &self.destinations
    }
}
