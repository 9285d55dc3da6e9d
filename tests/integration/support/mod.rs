//! Fixtures shared by the black-box tests.

pub mod postgres_server;
pub mod small_disk;
