//! `[[sources.NAME.routes]]`: which destination, which event types, which filter.

use serde::Deserialize;

use crate::domain::routing::{Filter, Route, TypeGlob};

/// One `[[sources.NAME.routes]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteTable {
    destination: String,
    event_types: Option<Vec<String>>,
    filter: Option<toml::Value>,
}

/// A route as written, or the field at fault and why.
pub fn build_route(raw: RouteTable) -> Result<Route, (&'static str, String)> {
    let event_types = match raw.event_types {
        Some(types) if types.is_empty() => {
            return Err((
                "event_types",
                "is empty, so it would match nothing; leave it out to match every type".into(),
            ));
        }
        Some(types) => types.iter().map(|t| TypeGlob::new(t)).collect(),
        None => Vec::new(),
    };
    let filter = match raw.filter {
        Some(value) => {
            let json = serde_json::to_value(value).map_err(|e| ("filter", e.to_string()))?;
            if !json.is_object() {
                return Err((
                    "filter",
                    "must be a table such as { body = { type = \"invoice.paid\" } }".into(),
                ));
            }
            Some(Filter::parse(&json).map_err(|e| ("filter", e.to_string()))?)
        }
        None => None,
    };
    Ok(Route {
        destination: raw.destination,
        event_types,
        filter,
    })
}
