//! Looks at every destination now and then: records its backlog for the dashboard's
//! charts and, when `[alerts] lag` is set, starts and ends lag episodes (the domain
//! decides; the store applies each change fenced, so one worker raises its alert).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::domain::alert::lag_change;
use crate::domain::time::Timestamp;
use crate::store::{DestinationSample, DestinationStats, MinuteCount, Store, minute_of};

/// Outcomes this worker wrote, by destination and minute, until the monitor writes
/// them to the database. Counted in memory rather than in each outcome's transaction:
/// one row per destination and minute updated by every batch of every worker is a
/// hot row that all of them would queue on.
#[derive(Debug, Default)]
pub struct MinuteOutcomes(Mutex<BTreeMap<(String, Timestamp), (i64, i64)>>);

impl MinuteOutcomes {
    pub fn add(&self, destination: &str, delivered: bool) {
        let Ok(mut counts) = self.0.lock() else {
            return;
        };
        let minute = minute_of(Timestamp::now());
        let entry = counts.entry((destination.to_owned(), minute)).or_default();
        if delivered {
            entry.0 += 1;
        } else {
            entry.1 += 1;
        }
    }

    /// Everything counted since the last call.
    pub fn take(&self) -> Vec<MinuteCount> {
        let Ok(mut counts) = self.0.lock() else {
            return Vec::new();
        };
        std::mem::take(&mut *counts)
            .into_iter()
            .map(|((destination, minute), (delivered, failed))| MinuteCount {
                destination,
                minute,
                delivered,
                failed,
            })
            .collect()
    }

    /// Counts taken but not written go back, to be written next time.
    pub fn restore(&self, unwritten: Vec<MinuteCount>) {
        let Ok(mut counts) = self.0.lock() else {
            return;
        };
        for count in unwritten {
            let entry = counts.entry((count.destination, count.minute)).or_default();
            entry.0 += count.delivered;
            entry.1 += count.failed;
        }
    }
}

/// How often to look without `lag`: often enough for a per-minute chart.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(5);

/// How often to look: a quarter of `lag` (so that an episode is seen soon after it
/// starts), between 100 ms and [`SAMPLE_INTERVAL`].
pub fn interval(lag: Option<Duration>) -> Duration {
    lag.map_or(SAMPLE_INTERVAL, |lag| {
        (lag / 4).clamp(Duration::from_millis(100), SAMPLE_INTERVAL)
    })
}

/// What to record of each destination now.
pub fn samples(
    stats: &[DestinationStats],
    lag: Option<Duration>,
    now: Timestamp,
) -> Vec<DestinationSample> {
    stats
        .iter()
        .map(|s| DestinationSample {
            destination: s.name.clone(),
            waiting: s.backlog + s.scheduled + s.in_flight,
            lag: lag.and_then(|lag| lag_change(s.lagging_since, s.oldest_due, lag, now)),
        })
        .collect()
}

/// Runs until `stop`, then writes the outcomes counted since the last look.
/// `settle`: how long a recovery alert raised here waits before it is sent.
pub async fn run(
    store: Arc<dyn Store>,
    lag: Option<Duration>,
    settle: Duration,
    outcomes: Arc<MinuteOutcomes>,
    stop: CancellationToken,
) {
    let mut ticker = tokio::time::interval(interval(lag));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            biased;
            () = stop.cancelled() => true,
            _ = ticker.tick() => false,
        };
        let now = Timestamp::now();
        let samples = if stopping {
            Vec::new()
        } else {
            match store.destination_stats().await {
                Ok(stats) => samples(&stats, lag, now),
                Err(error) => {
                    tracing::error!(
                        error = &error as &dyn std::error::Error,
                        "Reading destinations for the charts and lag alerts failed"
                    );
                    Vec::new()
                }
            }
        };
        let counts = outcomes.take();
        // Called even with nothing to write: it also raises the recovery alerts that
        // successes left for it (PostgreSQL).
        if let Err(error) = store
            .record_samples(samples, counts.clone(), now, settle)
            .await
        {
            tracing::error!(
                error = &error as &dyn std::error::Error,
                "Recording destinations' figures failed"
            );
            outcomes.restore(counts);
        }
        if stopping {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::alert::LagChange;

    #[test]
    fn the_interval_follows_lag_within_bounds() {
        assert_eq!(interval(None), SAMPLE_INTERVAL);
        assert_eq!(interval(Some(Duration::from_secs(300))), SAMPLE_INTERVAL);
        assert_eq!(
            interval(Some(Duration::from_secs(8))),
            Duration::from_secs(2)
        );
        assert_eq!(
            interval(Some(Duration::from_millis(10))),
            Duration::from_millis(100)
        );
    }

    #[test]
    fn outcomes_are_counted_per_destination_and_minute_and_taken_once() {
        let outcomes = MinuteOutcomes::default();
        outcomes.add("billing", true);
        outcomes.add("billing", true);
        outcomes.add("billing", false);
        outcomes.add("crm", false);
        let taken = outcomes.take();
        let figures: Vec<(&str, i64, i64)> = taken
            .iter()
            .map(|c| (c.destination.as_str(), c.delivered, c.failed))
            .collect();
        assert_eq!(figures, [("billing", 2, 1), ("crm", 0, 1)]);
        assert!(outcomes.take().is_empty());
        outcomes.restore(taken);
        outcomes.add("crm", true);
        let again: Vec<(i64, i64)> = outcomes
            .take()
            .iter()
            .map(|c| (c.delivered, c.failed))
            .collect();
        assert_eq!(again, [(2, 1), (1, 1)]);
    }

    #[test]
    fn samples_count_everything_unfinished_and_decide_lag() {
        let now = Timestamp(1_000_000_000);
        let stats = vec![DestinationStats {
            name: "billing".into(),
            backlog: 3,
            scheduled: 2,
            in_flight: 1,
            oldest_due: Some(Timestamp(now.0 - 10_000_000)),
            ..DestinationStats::default()
        }];
        let lagging = samples(&stats, Some(Duration::from_secs(5)), now);
        assert_eq!(lagging[0].waiting, 6);
        assert_eq!(
            lagging[0].lag,
            Some(LagChange::Started {
                since: Timestamp(now.0 - 10_000_000)
            })
        );
        assert_eq!(samples(&stats, None, now)[0].lag, None);
    }
}
