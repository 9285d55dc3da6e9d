//! hookrelay: reliable webhook ingestion.
//!
//! A webhook travels one way: HTTP (`http`) → checks (`ingest`, through `ops`) →
//! durable storage ([`store`]) → the `worker` → storage again. [`domain`] holds the
//! plain types and pure rules they share, [`config`] the settings.

mod alerts;
pub mod app;
pub mod cli;
pub mod config;
pub mod domain;
mod error_code;
mod http;
mod ingest;
mod metrics;
mod ops;
pub mod shutdown;
pub mod store;
pub mod telemetry;
mod worker;
