//! Looks at every destination now and then: records its backlog for the dashboard's
//! charts and, when `[alerts] lag` is set, starts and ends lag episodes (the domain
//! decides; the store applies each change fenced, so one worker raises its alert).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::domain::alert::lag_change;
use crate::domain::time::Timestamp;
use crate::store::{DestinationSample, DestinationStats, Store};

/// How often to look without `lag`: often enough for a per-minute chart.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(10);

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

pub async fn run(store: Arc<dyn Store>, lag: Option<Duration>, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(interval(lag));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let stats = match store.destination_stats().await {
            Ok(stats) => stats,
            Err(error) => {
                tracing::error!(
                    error = &error as &dyn std::error::Error,
                    "Reading destinations for the charts and lag alerts failed"
                );
                continue;
            }
        };
        let now = Timestamp::now();
        let samples = samples(&stats, lag, now);
        if samples.is_empty() {
            continue;
        }
        if let Err(error) = store.record_samples(samples, now).await {
            tracing::error!(
                error = &error as &dyn std::error::Error,
                "Recording destinations' backlog failed"
            );
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
