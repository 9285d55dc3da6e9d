//! How a process opens the database.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenOptions {
    pub migrate: bool,
    /// This process accepts webhooks (and so tells other processes of new work).
    pub runs_api: bool,
    /// This process runs a worker (and so listens for work from other processes).
    pub runs_worker: bool,
    /// Connections per process (PostgreSQL).
    pub pool_size: usize,
}
