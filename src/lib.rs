//! hookrelay: reliable webhook ingestion.
//!
//! A webhook travels one way: HTTP ([`http`]) → checks ([`ingest`]) → durable storage
//! ([`store`]) → the [`worker`] → storage again. [`domain`] holds the plain types and
//! pure rules they share.

pub mod alerts;
pub mod app;
pub mod cli;
pub mod config;
pub mod domain;
pub mod error_code;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod ops;
pub mod shutdown;
pub mod store;
pub mod telemetry;
pub mod worker;
