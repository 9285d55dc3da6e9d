//! Retention: delivered events older than `HOOKRELAY_RETENTION` are deleted with their
//! attempts, in small batches with pauses between them so that ingestion never waits
//! behind a long delete. Dead-lettered events stay until replayed, or until
//! `HOOKRELAY_DEAD_RETENTION` when that is set. Undelivered events are never pruned.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::domain::time::Timestamp;
use crate::store::Housekeeping;

const BATCH: usize = 500;
const PAUSE_BETWEEN_BATCHES: Duration = Duration::from_millis(20);
/// Per-minute figures older than this are deleted (the charts show one hour).
const CHART_HISTORY: Duration = Duration::from_secs(2 * 3600);

#[derive(Debug, Clone, Copy)]
pub struct RetentionPolicy {
    pub delivered: Duration,
    pub dead_lettered: Option<Duration>,
    /// How often to look for expired events.
    pub interval: Duration,
}

/// `now - keep`, saturating: an absurdly long retention keeps everything.
fn before(now: Timestamp, keep: Duration) -> Timestamp {
    let keep = i64::try_from(keep.as_micros()).unwrap_or(i64::MAX);
    Timestamp(now.0.saturating_sub(keep))
}

pub async fn run(
    store: Arc<dyn Housekeeping>,
    policy: RetentionPolicy,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(policy.interval) => {}
        }
        let now = Timestamp::now();
        let delivered_before = before(now, policy.delivered);
        let dead_before = policy.dead_lettered.map(|keep| before(now, keep));
        let mut pruned = 0;
        loop {
            match store.prune(delivered_before, dead_before, BATCH).await {
                Ok(deleted) => {
                    pruned += deleted;
                    if (deleted as usize) < BATCH {
                        break;
                    }
                }
                Err(error) => {
                    tracing::warn!(
                        error = &error as &dyn std::error::Error,
                        "Pruning failed; will try again"
                    );
                    break;
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(PAUSE_BETWEEN_BATCHES) => {}
            }
        }
        if pruned > 0 {
            tracing::info!(pruned, "Pruned finished events past their retention");
        }
        // The charts show the last hour; sent alerts are kept as long as delivered events.
        if let Err(error) = store
            .prune_monitoring(before(now, CHART_HISTORY), delivered_before)
            .await
        {
            tracing::warn!(
                error = &error as &dyn std::error::Error,
                "Pruning chart figures and sent alerts failed; will try again"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cutoffs_saturate() {
        let now = Timestamp(1_000_000);
        assert_eq!(before(now, Duration::from_secs(1)), Timestamp(0));
        assert_eq!(before(now, Duration::MAX), Timestamp(1_000_000 - i64::MAX));
        assert!(before(now, Duration::MAX) < Timestamp(0));
    }
}
