//! Outcomes written in groups ([`Grouped`]): attempts that finish while earlier
//! outcomes are being written are recorded together, in one transaction (one statement
//! on PostgreSQL). Each attempt still waits for its own outcome to be committed.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::store::group::Grouped;
use crate::store::{FinishedAttempt, Recorded, Store, StoreError};

/// The most outcomes one write records.
const MAX_GROUP: usize = 256;
/// Groups written at the same time.
const CONCURRENT: usize = 2;

#[derive(Clone)]
pub struct Recorder(Grouped<FinishedAttempt, Recorded>);

impl Recorder {
    /// Runs until every `Recorder` handle is dropped.
    pub fn start(store: Arc<dyn Store>) -> Self {
        Self(Grouped::start(
            MAX_GROUP,
            CONCURRENT,
            CancellationToken::new(),
            move |finished: Vec<FinishedAttempt>| {
                let store = store.clone();
                async move { store.finish_attempts(finished).await }
            },
        ))
    }

    /// Whether the lease still held when the outcome was written, and what it did to
    /// the destination's breaker.
    pub async fn record(&self, finished: FinishedAttempt) -> Result<Recorded, StoreError> {
        self.0.submit(finished).await
    }
}
