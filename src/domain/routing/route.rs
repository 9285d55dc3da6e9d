//! A route, and the verdict on one event: which destinations take it.

use super::document::Document;
use super::filter::Filter;
use super::glob::TypeGlob;

/// One `[[sources.NAME.routes]]`: a destination and what it takes.
#[derive(Debug, Clone)]
pub struct Route {
    pub destination: String,
    /// Empty: every type (and events without one).
    pub event_types: Vec<TypeGlob>,
    pub filter: Option<Filter>,
}

impl Route {
    /// A route that takes everything (a source's own `destination = "URL"`).
    pub fn catch_all(destination: &str) -> Self {
        Self {
            destination: destination.to_owned(),
            event_types: Vec::new(),
            filter: None,
        }
    }

    /// Whether the event document is needed to decide (a filter reads it).
    pub fn reads_document(&self) -> bool {
        self.filter.is_some()
    }
}

/// Why a route took an event or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Matched,
    /// The route names event types and the event has none.
    NoEventType,
    EventTypeDiffers,
    FilterDiffers,
}

impl Verdict {
    pub fn describe(self) -> &'static str {
        match self {
            Self::Matched => "matches",
            Self::NoEventType => "the event has no type and the route names event_types",
            Self::EventTypeDiffers => "the event type is not one of the route's event_types",
            Self::FilterDiffers => "the filter does not match",
        }
    }
}

/// The verdict of `route` on an event of `event_type` whose document is `document`
/// (`None`: nothing for a filter to read).
pub fn judge(route: &Route, event_type: Option<&str>, document: Option<&Document<'_>>) -> Verdict {
    if !route.event_types.is_empty() {
        let Some(event_type) = event_type else {
            return Verdict::NoEventType;
        };
        if !route
            .event_types
            .iter()
            .any(|glob| glob.matches(event_type))
        {
            return Verdict::EventTypeDiffers;
        }
    }
    let matches = |filter: &Filter| match document {
        Some(document) => filter.matches_document(document),
        None => filter.matches(None),
    };
    match &route.filter {
        Some(filter) if !matches(filter) => Verdict::FilterDiffers,
        _ => Verdict::Matched,
    }
}

/// The destinations an event goes to: each matched route's, once each, in the order
/// the routes are written.
pub fn destinations<'r>(
    routes: &'r [Route],
    event_type: Option<&str>,
    document: Option<&Document<'_>>,
) -> Vec<&'r str> {
    let mut chosen: Vec<&str> = Vec::with_capacity(routes.len());
    for route in routes {
        if !chosen.contains(&route.destination.as_str())
            && judge(route, event_type, document) == Verdict::Matched
        {
            chosen.push(&route.destination);
        }
    }
    chosen
}
