//! The claim loop, in named steps: ask for what the lanes have room for, apply the
//! claim (lost leases logged, lanes told what started and why the rest waits, the next
//! wake-up chosen), spawn the attempts, and sleep until something may be due.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::attempt;
use super::background::Background;
use super::lanes::Lanes;
use super::publish::Publishers;
use super::settings::WorkerSettings;
use crate::config::destinations::BUILT_IN;
use crate::domain::event::EventId;
use crate::domain::lifecycle::EventStatus;
use crate::domain::protection::Limits;
use crate::domain::time::Timestamp;
use crate::store::{Claim, ClaimRequest, ClaimedDelivery, Store, StoreError, Want};

/// How long to wait before claiming again after the store failed.
const ERROR_BACKOFF: Duration = Duration::from_secs(1);

pub struct Rounds {
    pub store: Arc<dyn Store>,
    pub settings: Arc<WorkerSettings>,
    pub publishers: Arc<Publishers>,
    pub lanes: Arc<Lanes>,
    pub attempts: TaskTracker,
    pub shutdown: CancellationToken,
}

impl Rounds {
    /// One lane per configured destination and the built-in processor: deliveries to
    /// a destination this worker does not know wait (unattempted) for one that does.
    pub fn lanes(settings: &WorkerSettings) -> Lanes {
        let names = settings
            .destinations
            .iter()
            .map(|d| (d.name.clone(), d.limits.ordered.is_none()))
            .chain([(BUILT_IN.to_owned(), true)]);
        Lanes::new(names, settings.concurrency)
    }

    /// Claims until shutdown.
    pub async fn run(&self, background: &Background) {
        let signal = self.store.work_signal();
        let mut wake_at = Instant::now();
        loop {
            let wanted = self.lanes.wanted();
            if !wanted.is_empty() {
                match self.claim_round(&wanted, background).await {
                    // A lane that filled its slots is still ready: look again.
                    Ok(next) => {
                        wake_at = next;
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
                            () = self.shutdown.cancelled() => break,
                            () = tokio::time::sleep_until(wake_at) => {}
                        }
                        self.lanes.all_ready();
                        continue;
                    }
                }
            }
            tokio::select! {
                biased;
                () = self.shutdown.cancelled() => break,
                () = signal.notified() => self.lanes.all_ready(),
                () = self.lanes.finished() => {}
                () = tokio::time::sleep_until(wake_at) => {
                    self.lanes.all_ready();
                    wake_at = Instant::now() + self.settings.poll_interval;
                }
            }
        }
    }

    /// Claims for the lanes that want work, applies the claim and spawns its attempts.
    /// Returns when to look again if nothing wakes the loop sooner.
    async fn claim_round(
        &self,
        wanted: &[(String, usize)],
        background: &Background,
    ) -> Result<Instant, StoreError> {
        let claim = self.store.claim(self.request(wanted)).await?;
        let Claim {
            deliveries,
            reclaimed,
            next_due,
            waits,
        } = claim;
        self.settings.metrics.expired_leases(reclaimed.len());
        for lost in reclaimed {
            log_reclaimed(&lost.event_id, &lost.destination, lost.attempt, lost.status);
        }
        let wake_at = self.apply_claim(wanted, &deliveries, &waits, next_due);
        self.spawn_attempts(deliveries, background);
        Ok(wake_at)
    }

    fn request(&self, wanted: &[(String, usize)]) -> ClaimRequest {
        ClaimRequest {
            lease: self.settings.lease,
            wants: wanted
                .iter()
                .map(|(name, limit)| Want {
                    destination: name.clone(),
                    limit: *limit,
                    limits: limits_of(&self.settings, name),
                })
                .collect(),
        }
    }

    /// Tells each lane what started and why the rest waits; returns the next wake-up:
    /// the poll interval, or sooner when a wait ends or a retry comes due.
    fn apply_claim(
        &self,
        wanted: &[(String, usize)],
        deliveries: &[ClaimedDelivery],
        waits: &[(String, crate::domain::protection::Wait)],
        next_due: Option<Timestamp>,
    ) -> Instant {
        let mut started: HashMap<&str, (usize, bool)> = HashMap::new();
        for delivery in deliveries {
            let entry = started.entry(delivery.destination.as_str()).or_default();
            entry.0 += 1;
            entry.1 |= delivery.probe;
        }
        let metrics = &self.settings.metrics;
        let mut until = Instant::now() + self.settings.poll_interval;
        for (name, limit) in wanted {
            let wait = waits.iter().find(|(n, _)| n == name).map(|(_, w)| *w);
            let (count, probe) = started.get(name.as_str()).copied().unwrap_or_default();
            self.lanes.claimed(name, *limit, count, wait, probe);
            if let Some(wait) = wait {
                metrics.wait(name, wait.as_str());
                if let Some(at) = wait.until() {
                    until = until.min(Instant::now() + Timestamp::now().until(at));
                }
            }
            if probe {
                metrics.probe(name);
            }
        }
        if let Some(due) = next_due {
            until = until.min(Instant::now() + Timestamp::now().until(due));
        }
        until
    }

    /// Each delivery's attempt as a task of its own, behind its lane's request slot.
    fn spawn_attempts(&self, deliveries: Vec<ClaimedDelivery>, background: &Background) {
        for delivery in deliveries {
            let context = attempt::Context {
                store: self.store.clone(),
                recorder: background.recorder.clone(),
                publishers: self.publishers.clone(),
                settings: self.settings.clone(),
                in_flight: background.in_flight.clone(),
                shutdown: self.shutdown.clone(),
            };
            let lanes = self.lanes.clone();
            self.attempts.spawn(async move {
                let destination = delivery.destination.clone();
                let slot = lanes.request_slot(&destination);
                attempt::run(context, delivery, slot, || lanes.sent(&destination)).await;
                lanes.recorded(&destination);
            });
        }
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
