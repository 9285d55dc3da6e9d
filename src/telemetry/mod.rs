//! What hookrelay tells its operators about itself: JSON log lines, and traces over
//! OTLP when an endpoint is configured.

mod export;
mod exporter;
mod install;
mod logs;
pub mod propagation;

pub use export::{TraceCounters, TraceExport};
pub use install::{LogFormat, LogTarget, Telemetry, init};
pub use logs::{annotate, error_chain};
