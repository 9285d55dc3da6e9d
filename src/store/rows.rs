//! Per-destination figures and flow state as the database keeps them.

use std::time::Duration;

use super::records::AlertRecord;
use crate::domain::alert::LagChange;
use crate::domain::protection::FlowState;
use crate::domain::time::Timestamp;

/// One destination as the database knows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DestinationStats {
    pub name: String,
    /// Deliveries due now (queued, or retrying and due), up to [`WAITING_COUNT_CAP`].
    pub backlog: i64,
    /// Deliveries waiting for a later retry, up to [`WAITING_COUNT_CAP`].
    pub scheduled: i64,
    /// Pause, breaker and bucket, as every worker sees them.
    pub flow: FlowState,
    /// The last time a claim held deliveries back for `rate` or `max_in_flight`.
    pub throttled_at: Option<Timestamp>,
    /// Since when it has been paused.
    pub paused_at: Option<Timestamp>,
    pub in_flight: i64,
    /// When the oldest due delivery became due.
    pub oldest_due: Option<Timestamp>,
    pub last_success_at: Option<Timestamp>,
    pub last_failure_at: Option<Timestamp>,
    /// Since when its oldest due delivery has waited longer than `lag`.
    pub lagging_since: Option<Timestamp>,
    /// The last alert raised about it.
    pub last_alert: Option<AlertRecord>,
}

impl DestinationStats {
    /// One entry per destination from the three reads both backends make: due and
    /// scheduled deliveries, attempts in flight, last outcomes.
    pub fn merge(
        waiting: Vec<(String, i64, i64, Option<i64>)>,
        in_flight: Vec<(String, i64)>,
        rows: Vec<DestinationRow>,
        last_alerts: Vec<AlertRecord>,
    ) -> Vec<Self> {
        let mut all: std::collections::BTreeMap<String, Self> = Default::default();
        fn entry(
            all: &mut std::collections::BTreeMap<String, DestinationStats>,
            name: String,
        ) -> &mut DestinationStats {
            all.entry(name.clone()).or_insert_with(|| DestinationStats {
                name,
                ..DestinationStats::default()
            })
        }
        for (name, due, scheduled, oldest) in waiting {
            let stats = entry(&mut all, name);
            stats.backlog = due;
            stats.scheduled = scheduled;
            stats.oldest_due = oldest.map(Timestamp);
        }
        for (name, running) in in_flight {
            entry(&mut all, name).in_flight = running;
        }
        for row in rows {
            let stats = entry(&mut all, row.name);
            stats.last_success_at = row.last_success_at;
            stats.last_failure_at = row.last_failure_at;
            stats.flow = row.flow;
            stats.throttled_at = row.throttled_at;
            stats.paused_at = row.paused_at.filter(|_| row.flow.paused);
            stats.lagging_since = row.lagging_since;
        }
        for alert in last_alerts {
            let name = alert.destination.clone();
            entry(&mut all, name).last_alert = Some(alert);
        }
        all.into_values().collect()
    }
}

/// A destination's row in `destinations`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DestinationRow {
    pub name: String,
    pub last_success_at: Option<Timestamp>,
    pub last_failure_at: Option<Timestamp>,
    pub flow: FlowState,
    pub throttled_at: Option<Timestamp>,
    pub paused_at: Option<Timestamp>,
    pub lagging_since: Option<Timestamp>,
}

/// The columns both backends read a [`FlowState`] from, in this order.
pub const FLOW_COLUMNS: &str =
    "paused, failures, breaker_since, probe_at, probe_pause_us, tokens, tokens_at";

/// A [`FlowState`] from [`FLOW_COLUMNS`]' values.
pub fn flow_state(
    paused: bool,
    failures: i64,
    breaker_since: Option<i64>,
    probe_at: Option<i64>,
    probe_pause_us: Option<i64>,
    tokens: Option<f64>,
    tokens_at: Option<i64>,
) -> FlowState {
    use crate::domain::protection::OpenBreaker;
    FlowState {
        paused,
        failures: failures.clamp(0, i64::from(u32::MAX)) as u32,
        breaker: breaker_since.map(|since| OpenBreaker {
            since: Timestamp(since),
            probe_at: Timestamp(probe_at.unwrap_or(since)),
            pause: Duration::from_micros(probe_pause_us.unwrap_or(0).max(0) as u64),
        }),
        tokens: tokens.zip(tokens_at.map(Timestamp)),
    }
}

/// A [`FlowState`] as the values of `failures, breaker_since, probe_at,
/// probe_pause_us, tokens, tokens_at` (pause is written apart).
#[allow(clippy::type_complexity)]
pub fn flow_values(
    flow: &FlowState,
) -> (
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<f64>,
    Option<i64>,
) {
    (
        i64::from(flow.failures),
        flow.breaker.map(|b| b.since.0),
        flow.breaker.map(|b| b.probe_at.0),
        flow.breaker.map(|b| b.pause.as_micros() as i64),
        flow.tokens.map(|(t, _)| t),
        flow.tokens.map(|(_, at)| at.0),
    )
}

/// What a worker saw of a destination while sampling: the backlog for the charts, and
/// the change of its lag episode the domain decided.
#[derive(Debug, Clone, PartialEq)]
pub struct DestinationSample {
    pub destination: String,
    /// Deliveries not finished: due, scheduled and in flight.
    pub waiting: i64,
    pub lag: Option<LagChange>,
}

/// Outcomes a worker counted for one destination and minute, added to the minute's.
#[derive(Debug, Clone, PartialEq)]
pub struct MinuteCount {
    pub destination: String,
    pub minute: Timestamp,
    pub delivered: i64,
    pub failed: i64,
}

/// One destination's minute for the dashboard's charts.
#[derive(Debug, Clone, PartialEq)]
pub struct MinuteRow {
    pub destination: String,
    /// The minute's start.
    pub minute: Timestamp,
    pub delivered: i64,
    pub failed: i64,
    /// The most deliveries seen waiting in that minute (`None`: no worker looked).
    pub backlog: Option<i64>,
}

/// The start of the minute `at` falls in.
pub fn minute_of(at: Timestamp) -> Timestamp {
    const MINUTE: i64 = 60_000_000;
    Timestamp(at.0.div_euclid(MINUTE) * MINUTE)
}

/// Waiting deliveries are counted up to this many per figure, so that a read costs
/// the same with a day's outage waiting as with none; the age of the oldest due
/// delivery (the lag) is always exact.
pub const WAITING_COUNT_CAP: i64 = 10_000;

/// What `/metrics` reports about the queue.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueGauges {
    pub queued: i64,
    pub retrying: i64,
    pub processing: i64,
    pub dead_lettered: i64,
    /// How long the oldest due event has waited past its due time.
    pub queue_lag: Duration,
}
