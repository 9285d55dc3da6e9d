//! The worker: claims due events under a lease, runs attempts concurrently, records
//! each outcome, and stops cleanly.
//!
//! It sleeps until the store signals new work, the next retry or lease expiry is
//! due, or the poll interval passes, whichever comes first.

mod attempt;
pub mod deliver;
mod recorder;
pub mod retention;
pub mod simulate;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::domain::event::EventId;
use crate::domain::lifecycle::EventStatus;
use crate::domain::retry::RetryPolicy;
use crate::domain::time::Timestamp;
use crate::metrics::Metrics;
use crate::sources::Sources;
use crate::store::DeliveryId;
use crate::store::{Claim, Store};

/// How long to wait before claiming again after the store failed.
const ERROR_BACKOFF: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub retry: RetryPolicy,
    pub lease: Duration,
    pub concurrency: usize,
    pub poll_interval: Duration,
    pub sources: Arc<Sources>,
    pub retention: retention::RetentionPolicy,
    pub metrics: Arc<Metrics>,
}

/// Attempts running now, by delivery, with their attempt number (for lease renewal).
type InFlight = Arc<Mutex<HashMap<DeliveryId, u32>>>;

pub struct Worker {
    store: Arc<dyn Store>,
    settings: WorkerSettings,
    client: reqwest::Client,
}

impl Worker {
    /// `client` delivers to destinations ([`deliver::client`]).
    pub fn new(store: Arc<dyn Store>, settings: WorkerSettings, client: reqwest::Client) -> Self {
        Self {
            store,
            settings,
            client,
        }
    }

    pub async fn run(self, shutdown: CancellationToken) {
        let settings = Arc::new(self.settings);
        let store = self.store;
        let signal = store.work_signal();
        let permits = Arc::new(Semaphore::new(settings.concurrency));
        let in_flight: InFlight = Arc::default();
        // One client: kept-alive connections to each destination are reused.
        let client = self.client;
        let attempts = TaskTracker::new();
        let recorder = recorder::Recorder::start(store.clone());
        let renewals_stop = CancellationToken::new();
        let renewals = tokio::spawn(renew_leases(
            store.clone(),
            in_flight.clone(),
            settings.lease,
            renewals_stop.clone(),
        ));
        let pruner = tokio::spawn(retention::run(
            store.clone(),
            settings.retention,
            shutdown.clone(),
        ));
        tracing::info!(concurrency = settings.concurrency, "Worker started");

        // After a claim that filled every slot, wait for a few slots to free up before
        // claiming again, so that a busy worker claims in batches rather than one
        // event per transaction.
        let refill = (settings.concurrency / 8).max(1) as u32;
        let mut saturated = false;
        loop {
            let wanted = if saturated { refill } else { 1 };
            let first = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                permit = permits.clone().acquire_many_owned(wanted) => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
            };
            drop(first);
            let first = match permits.clone().try_acquire_owned() {
                Ok(permit) => permit,
                Err(_) => continue,
            };
            // Claim as many events as there are free slots.
            let mut held = vec![first];
            while let Ok(permit) = permits.clone().try_acquire_owned() {
                held.push(permit);
            }
            let limit = held.len();

            let wake_at = match store.claim(limit, settings.lease).await {
                Ok(claim) => {
                    let Claim {
                        deliveries,
                        reclaimed,
                        next_due,
                    } = claim;
                    settings.metrics.expired_leases(reclaimed.len());
                    for lost in reclaimed {
                        log_reclaimed(&lost.event_id, &lost.destination, lost.attempt, lost.status);
                    }
                    let claimed = deliveries.len();
                    let mut pool = held.into_iter();
                    for event in deliveries {
                        let Some(permit) = pool.next() else { break };
                        let context = attempt::Context {
                            store: store.clone(),
                            recorder: recorder.clone(),
                            client: client.clone(),
                            settings: settings.clone(),
                            in_flight: in_flight.clone(),
                            shutdown: shutdown.clone(),
                        };
                        attempts.spawn(async move {
                            attempt::run(context, event).await;
                            drop(permit);
                        });
                    }
                    saturated = claimed == limit;
                    if saturated {
                        // Every slot was filled: more may be due right now.
                        continue;
                    }
                    let poll = Instant::now() + settings.poll_interval;
                    match next_due {
                        Some(due) => poll.min(Instant::now() + Timestamp::now().until(due)),
                        None => poll,
                    }
                }
                Err(error) => {
                    tracing::error!(
                        error = &error as &dyn std::error::Error,
                        "Claiming events failed"
                    );
                    Instant::now() + ERROR_BACKOFF
                }
            };
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                () = signal.notified() => {}
                () = tokio::time::sleep_until(wake_at) => {}
            }
        }

        attempts.close();
        attempts.wait().await;
        drop(recorder);
        renewals_stop.cancel();
        let _ = renewals.await;
        let _ = pruner.await;
        tracing::info!("Worker stopped");
    }
}

fn log_reclaimed(id: &EventId, destination: &str, attempt: u32, status: EventStatus) {
    tracing::warn!(
        event_id = %id,
        destination = %destination,
        attempt,
        status = status.as_str(),
        "Lease expired before the attempt finished; attempt counted as failed"
    );
}

/// Keeps the leases of running attempts alive, so that a slow attempt is not taken
/// over by another worker.
async fn renew_leases(
    store: Arc<dyn Store>,
    in_flight: InFlight,
    lease: Duration,
    stop: CancellationToken,
) {
    let mut ticker = tokio::time::interval(lease / 3);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let running: Vec<(DeliveryId, u32)> = match in_flight.lock() {
            Ok(map) => map.iter().map(|(id, n)| (*id, *n)).collect(),
            Err(_) => continue,
        };
        if running.is_empty() {
            continue;
        }
        if let Err(error) = store.renew_leases(running, lease).await {
            tracing::error!(
                error = &error as &dyn std::error::Error,
                "Renewing leases failed"
            );
        }
    }
}
