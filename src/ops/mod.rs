//! The operations every adapter (the HTTP API, the dashboard, the CLI) calls. An
//! adapter parses its input, calls one operation and renders the outcome; the rules
//! live here, once.

pub mod destinations;
pub mod events;
pub mod ingest;
pub mod routing;
pub mod views;
