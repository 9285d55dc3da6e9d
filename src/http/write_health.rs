//! Whether webhooks are being committed: part of readiness.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A webhook that could not be committed this recently, with none committed since,
/// makes the process not ready, whatever a probe says: the probe's small write can
/// pass while the events' own writes fail (a full disk, a lock on the table).
const RECENT_FAILURE: Duration = Duration::from_secs(5);

/// The outcome of the most recent webhook commit: when it failed, or `None` when it
/// was committed. Every webhook records into it, so a success only locks when it has
/// a failure to clear.
#[derive(Debug, Default)]
pub struct WriteHealth {
    last_failure: Mutex<Option<Instant>>,
    any_failure: AtomicBool,
}

impl WriteHealth {
    pub fn committed(&self) {
        // A read on the hot path; a write only when there is something to clear.
        if self.any_failure.load(Ordering::Relaxed)
            && self.any_failure.swap(false, Ordering::Relaxed)
            && let Ok(mut last) = self.last_failure.lock()
        {
            *last = None;
        }
    }

    pub fn failed(&self) {
        if let Ok(mut last) = self.last_failure.lock() {
            *last = Some(Instant::now());
        }
        self.any_failure.store(true, Ordering::Relaxed);
    }

    /// True while commits fail: the last one failed, and recently.
    pub fn failing(&self) -> bool {
        self.last_failure
            .lock()
            .is_ok_and(|last| last.is_some_and(|at| at.elapsed() < RECENT_FAILURE))
    }
}
