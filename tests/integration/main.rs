//! Black-box tests over real HTTP against the real app, each with its own database:
//! the contract suite runs on SQLite and on PostgreSQL.

mod database;
mod helpers;

mod ingest;
mod lifecycle;
mod processes;
mod readiness;
mod scale_out;
mod receiver;
mod sources;
