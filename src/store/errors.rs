//! What can go wrong with the database, as callers need to tell it apart.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    /// The database cannot be reached or written right now (down, locked, full,
    /// the file gone): the caller may retry later.
    #[error("database unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the database writer has stopped")]
    WriterStopped,
    /// A fault of ours: a statement the database refused, a value that does not fit
    /// the schema. Retrying will not help.
    #[error("database fault")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The schema is missing or older than this build.
    #[error("{0}")]
    Schema(String),
    #[error("unsupported database: {0}")]
    Unsupported(String),
}

impl StoreError {
    /// Whether the failure is the database's availability (503, retry later), not a
    /// fault of ours (500).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::WriterStopped)
    }

    pub fn internal(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Internal(Box::new(error))
    }
}
