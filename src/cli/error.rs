//! What an operator's command reports when it fails.

use thiserror::Error;

use crate::ops::OpsError;
use crate::store::StoreError;

#[derive(Debug, Error)]
pub enum AdminError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Ops(#[from] OpsError),
    #[error("no event {0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("cannot write the output")]
    Output(#[from] std::io::Error),
}
