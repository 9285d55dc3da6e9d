//! Outcomes written in groups ([`Grouped`]): attempts that finish while earlier
//! outcomes are being written are recorded together, in one transaction (one statement
//! on PostgreSQL). Each attempt still waits for its own outcome to be committed.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::alerts::monitor::MinuteOutcomes;
use crate::domain::lifecycle::EventStatus;
use crate::store::group::Grouped;
use crate::store::{DeliveryQueue, FinishedAttempt, Recorded, StoreError};

/// The most outcomes one write records.
const MAX_GROUP: usize = 256;
/// Groups written at the same time.
const CONCURRENT: usize = 2;

#[derive(Clone)]
pub struct Recorder(Grouped<FinishedAttempt, Recorded>);

impl Recorder {
    /// Runs until every `Recorder` handle is dropped.
    /// Counts each outcome written into `outcomes` (for the dashboard's charts).
    pub fn start(store: Arc<dyn DeliveryQueue>, outcomes: Arc<MinuteOutcomes>) -> Self {
        Self(Grouped::start(
            MAX_GROUP,
            CONCURRENT,
            CancellationToken::new(),
            move |finished: Vec<FinishedAttempt>| {
                let store = store.clone();
                let outcomes = outcomes.clone();
                async move {
                    let names: Vec<String> = finished
                        .iter()
                        .map(|f| f.record.destination.clone())
                        .collect();
                    let recorded = store.finish_attempts(finished).await?;
                    for (name, one) in names.iter().zip(&recorded) {
                        if one.held {
                            outcomes.add(name, one.status == EventStatus::Delivered);
                        }
                    }
                    Ok(recorded)
                }
            },
        ))
    }

    /// Whether the lease still held when the outcome was written, and what it did to
    /// the destination's breaker.
    pub async fn record(&self, finished: FinishedAttempt) -> Result<Recorded, StoreError> {
        self.0.submit(finished).await
    }
}
