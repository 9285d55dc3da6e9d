//! Which events a route takes: event-type globs and the filter language of
//! `[[sources.NAME.routes]]`, parsed once at start and matched against a JSON document
//! `{"event_type", "headers": {lower-case name: value}, "body"}` (the language is
//! described in `filter.rs`).

mod document;
mod filter;
mod glob;
mod route;
#[cfg(test)]
mod tests;

pub use document::Document;
pub use filter::Filter;
pub use glob::TypeGlob;
pub use route::{Route, Verdict, destinations, judge};
