//! The tasks that run beside a worker's claims: the outcome recorder, lease renewal,
//! retention, the lag monitor and the alert sender. Started together, stopped in the
//! order that loses nothing.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::recorder::Recorder;
use super::retention;
use super::settings::{InFlight, WorkerSettings};
use crate::alerts::monitor::{self, MinuteOutcomes};
use crate::alerts::sender::Sender;
use crate::store::{DeliveryId, DeliveryQueue, Store};

pub struct Background {
    pub recorder: Recorder,
    pub in_flight: InFlight,
    renewals: (CancellationToken, JoinHandle<()>),
    pruner: JoinHandle<()>,
    monitor: (CancellationToken, JoinHandle<()>),
    sender: Option<JoinHandle<()>>,
}

impl Background {
    pub fn start(
        store: &Arc<dyn Store>,
        settings: &WorkerSettings,
        client: &reqwest::Client,
        shutdown: &CancellationToken,
    ) -> Self {
        let outcomes = Arc::new(MinuteOutcomes::default());
        let recorder = Recorder::start(store.clone(), outcomes.clone());
        let in_flight: InFlight = Arc::default();
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
        let alerts = settings.alerts.as_ref();
        let monitor_stop = CancellationToken::new();
        let monitor = tokio::spawn(monitor::run(
            store.clone(),
            alerts.and_then(|a| a.lag),
            alerts.map_or(Duration::ZERO, |a| a.settle),
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
        Self {
            recorder,
            in_flight,
            renewals: (renewals_stop, renewals),
            pruner,
            monitor: (monitor_stop, monitor),
            sender,
        }
    }

    /// Once every attempt is over: the recorder drains, renewals stop, and the monitor
    /// stops after the last outcome so that its count is written too.
    pub async fn stop(self) {
        drop(self.recorder);
        self.renewals.0.cancel();
        let _ = self.renewals.1.await;
        let _ = self.pruner.await;
        self.monitor.0.cancel();
        let _ = self.monitor.1.await;
        if let Some(sender) = self.sender {
            let _ = sender.await;
        }
    }
}

/// Keeps the leases of running attempts alive, so that a slow attempt is not taken
/// over by another worker.
async fn renew_leases(
    store: Arc<dyn DeliveryQueue>,
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
