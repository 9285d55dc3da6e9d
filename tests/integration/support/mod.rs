//! The black-box tests' harness: the app in-process (`TestApp`) or as child processes
//! (`Setup`, `Process`), a fresh database per test on either backend, a real HTTP
//! receiver, and servers or disks of a test's own to break on purpose.

pub mod brokers;
pub mod database;
pub mod helpers;
pub mod otlp;
pub mod postgres_server;
pub mod proxy;
pub mod receiver;
pub mod setup;
pub mod small_disk;
