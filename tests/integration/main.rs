//! Black-box tests over real HTTP against the real app, each with its own database:
//! the contract suite runs on SQLite and on PostgreSQL.

mod admin;
mod adversarial;
mod alerts;
mod brokers;
mod browser;
mod cli;
mod dashboard;
mod database_file;
mod deployment;
mod fanout;
mod formats;
mod hostile_values;
mod ingest;
mod lifecycle;
mod migration;
mod observability;
mod openapi;
mod outage;
mod processes;
mod protection;
mod readiness;
mod readme;
mod retention;
mod scale_out;
mod soak;
mod sources;
mod store_contract;
mod support;
mod traces;
mod waiting;
