//! Black-box tests over real HTTP against the real app, each with its own SQLite file.

mod helpers;

mod ingest;
mod lifecycle;
mod processes;
mod readiness;
mod receiver;
mod sources;
