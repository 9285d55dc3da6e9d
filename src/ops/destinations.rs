//! What operators see of destinations: each configured one (and any the database still
//! holds deliveries for) with its state, backlog, attempts in flight, the age of its
//! oldest due delivery and its last success and failure; and pausing and resuming one.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::destinations::BUILT_IN;
use crate::config::endpoints::Kind;
use crate::domain::message::Format;
use crate::domain::protection::Limits;
use crate::domain::time::Timestamp;
use crate::domain::waiting::{DestinationState, HeldBack};
use crate::ops::{Operators, OpsError};
use crate::store::{DestinationStats, MinuteRow};

/// A claim held deliveries back for `rate` or `max_in_flight` this recently: the
/// destination counts as throttled.
const THROTTLED_RECENTLY: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct DestinationStatus {
    pub name: String,
    /// `None` for the built-in processor and for destinations no longer configured.
    pub url: Option<String>,
    /// What it is and how events are put into it; `None` when not configured here.
    pub kind: Option<(Kind, Format)>,
    pub configured: bool,
    pub state: DestinationState,
    pub stats: DestinationStats,
    /// How long the oldest due delivery has waited.
    pub oldest_due_age: Option<Duration>,
    /// When the open breaker's next probe may start.
    pub next_probe_at: Option<Timestamp>,
    /// Since when the breaker has been open.
    pub failing_since: Option<Timestamp>,
    /// Deliveries are being held back for `rate` or `max_in_flight`.
    pub throttled: bool,
    /// The configured limits, `None` when not configured here.
    pub limits: Option<Limits>,
}

impl DestinationStatus {
    /// Why its due deliveries wait now.
    pub fn waiting(&self) -> Option<HeldBack> {
        HeldBack::of(self.state, self.throttled)
    }
}

impl Operators {
    /// Every configured destination, then any other the database knows (a destination
    /// removed from the config with deliveries still waiting must stay visible).
    pub async fn destinations(&self) -> Result<Vec<DestinationStatus>, OpsError> {
        let now = Timestamp::now();
        let mut stats: BTreeMap<String, DestinationStats> = self
            .store()
            .destination_stats()
            .await?
            .into_iter()
            .map(|s| (s.name.clone(), s))
            .collect();
        let mut all = Vec::new();
        for destination in self.destination_settings().iter() {
            let stats = stats
                .remove(&destination.name)
                .unwrap_or_else(|| DestinationStats {
                    name: destination.name.clone(),
                    ..DestinationStats::default()
                });
            let mut shown = status(
                stats,
                Some(destination.shown_url().to_owned()),
                Some(destination.limits),
                now,
            );
            shown.kind = Some((destination.endpoint.kind(), destination.format));
            all.push(shown);
        }
        for (name, stats) in stats {
            let built_in = (name == BUILT_IN).then(Limits::default);
            all.push(status(stats, None, built_in, now));
        }
        Ok(all)
    }

    /// Pauses (or resumes) a destination for every worker sharing the database.
    /// Returns its status afterwards and whether it changed.
    pub async fn set_paused(
        &self,
        name: &str,
        paused: bool,
    ) -> Result<(DestinationStatus, bool), OpsError> {
        if name != BUILT_IN && !self.destination_settings().contains(name) {
            return Err(OpsError::UnknownDestination(name.to_owned()));
        }
        let changed = self.store().set_paused(name, paused).await?;
        Ok((self.destination(name).await?, changed))
    }

    /// Each destination's minutes of the last hour (for the dashboard's charts), by name.
    pub async fn last_hour(&self) -> Result<BTreeMap<String, Vec<MinuteRow>>, OpsError> {
        let since = Timestamp(Timestamp::now().0 - 3_600_000_000);
        let mut by_name: BTreeMap<String, Vec<MinuteRow>> = BTreeMap::new();
        for row in self.store().destination_minutes(since).await? {
            by_name
                .entry(row.destination.clone())
                .or_default()
                .push(row);
        }
        Ok(by_name)
    }

    pub async fn destination(&self, name: &str) -> Result<DestinationStatus, OpsError> {
        self.destinations()
            .await?
            .into_iter()
            .find(|d| d.name == name)
            .ok_or_else(|| OpsError::UnknownDestination(name.to_owned()))
    }
}

fn status(
    stats: DestinationStats,
    url: Option<String>,
    limits: Option<Limits>,
    now: Timestamp,
) -> DestinationStatus {
    let state = match (stats.flow.paused, stats.flow.breaker) {
        (true, _) => DestinationState::Paused,
        (false, Some(_)) => DestinationState::Failing,
        (false, None) => DestinationState::Active,
    };
    DestinationStatus {
        name: stats.name.clone(),
        url,
        kind: None,
        configured: limits.is_some(),
        state,
        oldest_due_age: stats.oldest_due.map(|due| due.until(now)),
        next_probe_at: stats.flow.breaker.map(|b| b.probe_at),
        failing_since: stats.flow.breaker.map(|b| b.since),
        throttled: stats.backlog > 0
            && stats
                .throttled_at
                .is_some_and(|at| at.until(now) < THROTTLED_RECENTLY),
        limits,
        stats,
    }
}
