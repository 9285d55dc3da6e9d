//! The worker: claims due events under a lease, runs attempts concurrently, records
//! each outcome, and stops cleanly.
//!
//! It sleeps until the store signals new work, the next retry or lease expiry is
//! due, or the poll interval passes, whichever comes first.

mod attempt;
pub mod deliver;
mod lanes;
mod recorder;
pub mod retention;
mod settings;
pub mod simulate;

pub use settings::WorkerSettings;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use self::settings::InFlight;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::alerts::monitor;
use crate::alerts::sender::Sender;
use crate::config::destinations::BUILT_IN;
use crate::domain::event::EventId;
use crate::domain::lifecycle::EventStatus;
use crate::domain::protection::Limits;
use crate::domain::time::Timestamp;
use crate::store::{Claim, ClaimRequest, DeliveryId, Store, Want};

/// How long to wait before claiming again after the store failed.
const ERROR_BACKOFF: Duration = Duration::from_secs(1);

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
        // Every configured destination and the built-in processor: deliveries to a
        // destination this worker does not know wait (unattempted) for one that does.
        let names = settings
            .destinations
            .iter()
            .map(|d| (d.name.clone(), d.limits.ordered.is_none()))
            .chain([(BUILT_IN.to_owned(), true)]);
        let lanes = Arc::new(lanes::Lanes::new(names, settings.concurrency));
        let in_flight: InFlight = Arc::default();
        // One client: kept-alive connections to each destination are reused.
        let client = self.client;
        let attempts = TaskTracker::new();
        let outcomes = Arc::new(monitor::MinuteOutcomes::default());
        let recorder = recorder::Recorder::start(store.clone(), outcomes.clone());
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
        let lag = settings.alerts.as_ref().and_then(|a| a.lag);
        let monitor_stop = CancellationToken::new();
        let settle = settings
            .alerts
            .as_ref()
            .map_or(Duration::ZERO, |a| a.settle);
        let monitor = tokio::spawn(monitor::run(
            store.clone(),
            lag,
            settle,
            outcomes,
            monitor_stop.clone(),
        ));
        let sender = settings.alerts.clone().map(|alerts| {
            let sender = Sender {
                store: store.clone(),
                settings: alerts,
                retry: settings.retry,
                poll_interval: settings.poll_interval,
                client: client.clone(),
            };
            tokio::spawn(sender.run(shutdown.clone()))
        });
        tracing::info!(
            concurrency = settings.concurrency,
            "Worker started (each destination has this many slots of its own)"
        );

        let mut wake_at = Instant::now();
        loop {
            let wanted = lanes.wanted();
            if !wanted.is_empty() {
                let request = ClaimRequest {
                    lease: settings.lease,
                    wants: wanted
                        .iter()
                        .map(|(name, limit)| Want {
                            destination: name.clone(),
                            limit: *limit,
                            limits: limits_of(&settings, name),
                        })
                        .collect(),
                };
                match store.claim(request).await {
                    Ok(claim) => {
                        let Claim {
                            deliveries,
                            reclaimed,
                            next_due,
                            waits,
                        } = claim;
                        settings.metrics.expired_leases(reclaimed.len());
                        for lost in reclaimed {
                            log_reclaimed(
                                &lost.event_id,
                                &lost.destination,
                                lost.attempt,
                                lost.status,
                            );
                        }
                        let mut started: HashMap<&str, (usize, bool)> = HashMap::new();
                        for delivery in &deliveries {
                            let entry = started.entry(delivery.destination.as_str()).or_default();
                            entry.0 += 1;
                            entry.1 |= delivery.probe;
                        }
                        let mut until = Instant::now() + settings.poll_interval;
                        for (name, limit) in &wanted {
                            let wait = waits.iter().find(|(n, _)| n == name).map(|(_, w)| *w);
                            let (count, probe) =
                                started.get(name.as_str()).copied().unwrap_or_default();
                            lanes.claimed(name, *limit, count, wait, probe);
                            if let Some(wait) = wait {
                                settings.metrics.wait(name, wait.as_str());
                                if let Some(at) = wait.until() {
                                    until = until.min(Instant::now() + Timestamp::now().until(at));
                                }
                            }
                            if probe {
                                settings.metrics.probe(name);
                            }
                        }
                        if let Some(due) = next_due {
                            until = until.min(Instant::now() + Timestamp::now().until(due));
                        }
                        wake_at = until;
                        for delivery in deliveries {
                            let context = attempt::Context {
                                store: store.clone(),
                                recorder: recorder.clone(),
                                client: client.clone(),
                                settings: settings.clone(),
                                in_flight: in_flight.clone(),
                                shutdown: shutdown.clone(),
                            };
                            let lanes = lanes.clone();
                            attempts.spawn(async move {
                                let destination = delivery.destination.clone();
                                let slot = lanes.request_slot(&destination);
                                attempt::run(context, delivery, slot, || lanes.sent(&destination))
                                    .await;
                                lanes.recorded(&destination);
                            });
                        }
                        // A lane that filled its slots is still ready: look again.
                        continue;
                    }
                    Err(error) => {
                        tracing::error!(
                            error = &error as &dyn std::error::Error,
                            "Claiming events failed"
                        );
                        wake_at = Instant::now() + ERROR_BACKOFF;
                        tokio::select! {
                            biased;
                            () = shutdown.cancelled() => break,
                            () = tokio::time::sleep_until(wake_at) => {}
                        }
                        lanes.all_ready();
                        continue;
                    }
                }
            }
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                () = signal.notified() => lanes.all_ready(),
                () = lanes.finished() => {}
                () = tokio::time::sleep_until(wake_at) => {
                    lanes.all_ready();
                    wake_at = Instant::now() + settings.poll_interval;
                }
            }
        }

        attempts.close();
        attempts.wait().await;
        drop(recorder);
        renewals_stop.cancel();
        let _ = renewals.await;
        let _ = pruner.await;
        // After the last outcome, so that its count is written too.
        monitor_stop.cancel();
        let _ = monitor.await;
        if let Some(sender) = sender {
            let _ = sender.await;
        }
        tracing::info!("Worker stopped");
    }
}

/// A destination's limits from this worker's configuration (the built-in processor
/// has none).
fn limits_of(settings: &WorkerSettings, name: &str) -> Limits {
    settings
        .destinations
        .get(name)
        .map(|d| d.limits)
        .unwrap_or_default()
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
