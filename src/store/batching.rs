//! Work done in bounded batches: sweeps at most so often, replays in slices.

use std::time::Duration;

use super::errors::StoreError;

/// Expired leases are looked for on every claim that finds nothing to do, and at least
/// this often while workers are busy: they are rare, and the look costs a query.
pub const SWEEP_INTERVAL: Duration = Duration::from_millis(250);

/// When this process last looked for expired leases.
#[derive(Debug, Default)]
pub struct SweepClock(std::sync::Mutex<Option<std::time::Instant>>);

impl SweepClock {
    /// Whether a saturated claim should look now (and note that it does).
    pub fn due(&self) -> bool {
        let Ok(mut last) = self.0.lock() else {
            return true;
        };
        let due = last.is_none_or(|at| at.elapsed() >= SWEEP_INTERVAL);
        if due {
            *last = Some(std::time::Instant::now());
        }
        due
    }
}

/// Rows one bulk replay changes per transaction: a replay of millions of events must
/// not hold the writer (and every webhook waiting on it) for the whole of it.
pub const REPLAY_BATCH: usize = 500;

/// One batch of a bulk replay: how many events it queued, how many it looked at, and
/// the last `seq` it saw.
pub struct ReplayBatch {
    pub replayed: u64,
    pub last_seq: Option<i64>,
    pub examined: usize,
}

/// Runs `batch(after_seq)` until a batch comes back short. Each event is considered
/// once, in `seq` order, so an event that is replayed and finishes again while the
/// replay runs is not replayed twice.
pub async fn replay_in_batches<F, Fut>(mut batch: F) -> Result<u64, StoreError>
where
    F: FnMut(i64) -> Fut,
    Fut: std::future::Future<Output = Result<ReplayBatch, StoreError>>,
{
    let mut total = 0;
    let mut after_seq = 0;
    loop {
        let ReplayBatch {
            replayed,
            last_seq,
            examined,
        } = batch(after_seq).await?;
        total += replayed;
        match last_seq {
            Some(last) if examined >= REPLAY_BATCH => after_seq = last,
            _ => return Ok(total),
        }
    }
}
