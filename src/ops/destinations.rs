//! What operators see of destinations: each configured one (and any the database still
//! holds deliveries for) with its state, backlog, attempts in flight, the age of its
//! oldest due delivery and its last success and failure.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::destinations::BUILT_IN;
use crate::domain::time::Timestamp;
use crate::ops::events::{Operators, OpsError};
use crate::store::DestinationStats;

/// Whether deliveries to a destination are being attempted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestinationState {
    Active,
}

impl DestinationState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
        }
    }
}

#[derive(Debug, Clone)]
pub struct DestinationStatus {
    pub name: String,
    /// `None` for the built-in processor and for destinations no longer configured.
    pub url: Option<String>,
    pub configured: bool,
    pub state: DestinationState,
    pub stats: DestinationStats,
    /// How long the oldest due delivery has waited.
    pub oldest_due_age: Option<Duration>,
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
        for destination in self.sources().destinations.iter() {
            let stats = stats
                .remove(&destination.name)
                .unwrap_or_else(|| DestinationStats {
                    name: destination.name.clone(),
                    ..DestinationStats::default()
                });
            all.push(status(stats, Some(destination.shown_url()), true, now));
        }
        for (name, stats) in stats {
            let built_in = name == BUILT_IN;
            all.push(status(stats, None, built_in, now));
        }
        Ok(all)
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
    configured: bool,
    now: Timestamp,
) -> DestinationStatus {
    DestinationStatus {
        name: stats.name.clone(),
        url,
        configured,
        state: DestinationState::Active,
        oldest_due_age: stats.oldest_due.map(|due| due.until(now)),
        stats,
    }
}
