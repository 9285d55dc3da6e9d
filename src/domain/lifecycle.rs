//! The delivery state machine: its states, their descriptions, the allowed
//! transitions, and the pure functions that decide each one. The store applies what
//! these decide, fenced on the state they decided from; its SQL never chooses a status
//! itself. An event's status is its one delivery's, or a summary of several
//! ([`summarize`]), or `filtered` when no route took it.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

use super::time::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventStatus {
    Queued,
    Processing,
    Retrying,
    Delivered,
    DeadLettered,
    /// An event that matched no route: it has no delivery. Never a delivery's status.
    Filtered,
}

#[derive(Debug, Error)]
#[error("unknown event status {0:?}")]
pub struct UnknownStatus(pub String);

impl EventStatus {
    pub const ALL: [EventStatus; 6] = [
        Self::Queued,
        Self::Processing,
        Self::Retrying,
        Self::Delivered,
        Self::DeadLettered,
        Self::Filtered,
    ];
    /// The states a delivery can be in (the schema's `CHECK`).
    pub const DELIVERY: [EventStatus; 5] = [
        Self::Queued,
        Self::Processing,
        Self::Retrying,
        Self::Delivered,
        Self::DeadLettered,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Processing => "processing",
            Self::Retrying => "retrying",
            Self::Delivered => "delivered",
            Self::DeadLettered => "dead_lettered",
            Self::Filtered => "filtered",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Self::Queued => "Awaiting first processing attempt",
            Self::Processing => "Currently being processed by worker",
            Self::Retrying => "Failed, scheduled for retry",
            Self::Delivered => "Successfully processed",
            Self::DeadLettered => "Permanently failed after max attempts",
            Self::Filtered => "Matched no route",
        }
    }

    /// Whether a worker may move an event from `self` to `next`.
    /// An operator may queue these again.
    pub fn is_replayable(self) -> bool {
        matches!(self, Self::Delivered | Self::DeadLettered)
    }

    pub fn can_become(self, next: EventStatus) -> bool {
        use EventStatus::*;
        matches!(
            (self, next),
            (Queued | Retrying, Processing)
                | (Processing, Delivered | Retrying | DeadLettered)
                // A released lease (graceful stop) hands the event back untouched.
                | (Processing, Queued)
                // An operator's replay.
                | (Delivered | DeadLettered, Queued)
        )
    }
}

impl fmt::Display for EventStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

/// What one attempt decided about the event.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptOutcome {
    Delivered,
    /// Failed; try again unless the attempt budget is spent, not before `retry_after`
    /// when the destination asked for that.
    Failed {
        error: String,
        retry_after: Option<std::time::Duration>,
    },
    /// Failed in a way that retrying cannot fix.
    FailedPermanently {
        error: String,
    },
}

/// Where a failed or successful attempt leaves the event.
pub fn status_after(outcome: &AttemptOutcome, attempt: u32, max_attempts: u32) -> EventStatus {
    match outcome {
        AttemptOutcome::Delivered => EventStatus::Delivered,
        AttemptOutcome::FailedPermanently { .. } => EventStatus::DeadLettered,
        AttemptOutcome::Failed { .. } if attempt >= max_attempts => EventStatus::DeadLettered,
        AttemptOutcome::Failed { .. } => EventStatus::Retrying,
    }
}

/// An attempt whose lease ran out counts as failed, so that an event which kills its
/// worker cannot loop forever: where that leaves the event, and the recorded error.
pub fn lease_expired(attempt: u32, max_attempts: u32) -> (EventStatus, String) {
    let error = format!(
        "attempt {attempt} did not finish: the worker's lease expired (worker stopped or crashed)"
    );
    let lost = AttemptOutcome::Failed {
        error: error.clone(),
        retry_after: None,
    };
    (status_after(&lost, attempt, max_attempts), error)
}

/// Statuses a worker claims from (due ones only), and the status a claim moves to.
pub const CLAIMABLE: [EventStatus; 2] = [EventStatus::Queued, EventStatus::Retrying];
pub const CLAIMED: EventStatus = EventStatus::Processing;
/// The statuses a replay starts from.
pub const REPLAYABLE: [EventStatus; 2] = [EventStatus::Delivered, EventStatus::DeadLettered];

/// What a finished attempt does to its event.
#[derive(Debug, Clone, PartialEq)]
pub struct Finish {
    pub status: EventStatus,
    /// When the next attempt is due (retrying only).
    pub next_attempt_at: Option<Timestamp>,
    pub error: Option<String>,
}

/// Decides where an attempt leaves its event. `delay` is the backoff the retry
/// policy draws for this attempt; the destination's `Retry-After` can only lengthen it.
pub fn finish(
    outcome: &AttemptOutcome,
    attempt: u32,
    max_attempts: u32,
    delay: std::time::Duration,
    now: Timestamp,
) -> Finish {
    let status = status_after(outcome, attempt, max_attempts);
    let asked = match outcome {
        AttemptOutcome::Failed {
            retry_after: Some(asked),
            ..
        } => *asked,
        _ => std::time::Duration::ZERO,
    };
    let next_attempt_at = (status == EventStatus::Retrying).then(|| now.plus(delay.max(asked)));
    let error = match outcome {
        AttemptOutcome::Delivered => None,
        AttemptOutcome::Failed { error, .. } | AttemptOutcome::FailedPermanently { error } => {
            Some(error.clone())
        }
    };
    Finish {
        status,
        next_attempt_at,
        error,
    }
}

/// An attempt handed back unfinished (graceful stop) does not count: the event goes
/// back to where it was before the claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Release {
    pub status: EventStatus,
    pub attempts: u32,
}

pub fn release(attempt: u32) -> Release {
    let attempts = attempt.saturating_sub(1);
    Release {
        status: if attempts == 0 {
            EventStatus::Queued
        } else {
            EventStatus::Retrying
        },
        attempts,
    }
}

/// A lease that ran out: the attempt is recorded as failed and the event is due at
/// once, or dead-lettered if that was its last attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct Expiry {
    pub status: EventStatus,
    pub error: String,
    pub next_attempt_at: Option<Timestamp>,
}

pub fn expire(attempt: u32, max_attempts: u32, now: Timestamp) -> Expiry {
    let (status, error) = lease_expired(attempt, max_attempts);
    Expiry {
        status,
        error,
        next_attempt_at: (status == EventStatus::Retrying).then_some(now),
    }
}

/// An operator's replay: queued again at once with `fresh` more attempts; the history
/// is kept and the backoff starts again from the base delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replay {
    pub status: EventStatus,
    pub max_attempts: u32,
    pub attempts_at_replay: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayRefused {
    NotFound,
    NotReplayable(EventStatus),
}

/// One delivery's state, as an event's summary reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryState {
    pub status: EventStatus,
    pub attempts: u32,
    pub max_attempts: u32,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<Timestamp>,
    pub updated_at: Timestamp,
}

/// How far a delivery is from done: the summary of several shows the one furthest.
fn distance_from_done(status: EventStatus) -> u8 {
    match status {
        EventStatus::Queued => 4,
        EventStatus::Retrying => 3,
        EventStatus::Processing => 2,
        EventStatus::DeadLettered => 1,
        EventStatus::Delivered | EventStatus::Filtered => 0,
    }
}

/// An event's state from its deliveries: the one delivery's when it has one;
/// `delivered` when all are; `dead_lettered` when all are finished and one is
/// dead-lettered; otherwise the state of the one furthest from done (the most
/// attempts among equals). `None` when there are none: the event is filtered.
pub fn summarize<'a>(
    deliveries: impl IntoIterator<Item = &'a DeliveryState>,
) -> Option<&'a DeliveryState> {
    deliveries.into_iter().max_by(|a, b| {
        distance_from_done(a.status)
            .cmp(&distance_from_done(b.status))
            .then(a.attempts.cmp(&b.attempts))
    })
}

/// `current` is the delivery's status and attempt count, `None` when there is none.
pub fn replay(current: Option<(EventStatus, u32)>, fresh: u32) -> Result<Replay, ReplayRefused> {
    let (status, attempts) = current.ok_or(ReplayRefused::NotFound)?;
    if !status.is_replayable() {
        return Err(ReplayRefused::NotReplayable(status));
    }
    Ok(Replay {
        status: EventStatus::Queued,
        max_attempts: attempts.saturating_add(fresh),
        attempts_at_replay: attempts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn every_decided_transition_is_an_allowed_one() {
        let now = Timestamp(1_000_000);
        for outcome in [
            AttemptOutcome::Delivered,
            AttemptOutcome::Failed {
                error: "x".into(),
                retry_after: None,
            },
            AttemptOutcome::FailedPermanently { error: "x".into() },
        ] {
            for attempt in 1..=5 {
                let finish = finish(&outcome, attempt, 5, Duration::from_secs(1), now);
                assert!(CLAIMED.can_become(finish.status), "{finish:?}");
            }
        }
        for attempt in 1..=5 {
            assert!(CLAIMED.can_become(release(attempt).status));
            assert!(CLAIMED.can_become(expire(attempt, 5, now).status));
        }
        for from in CLAIMABLE {
            assert!(from.can_become(CLAIMED));
        }
        for from in REPLAYABLE {
            let replay = replay(Some((from, 3)), 5).unwrap();
            assert!(from.can_become(replay.status));
        }
    }

    #[test]
    fn finishing_schedules_retries_and_honours_retry_after() {
        let now = Timestamp(0);
        let failed = |retry_after| AttemptOutcome::Failed {
            error: "HTTP 503".into(),
            retry_after,
        };
        let backoff = Duration::from_secs(10);
        let plain = finish(&failed(None), 1, 5, backoff, now);
        assert_eq!(plain.status, EventStatus::Retrying);
        assert_eq!(plain.next_attempt_at, Some(now.plus(backoff)));
        assert_eq!(plain.error.as_deref(), Some("HTTP 503"));
        let longer = finish(&failed(Some(Duration::from_secs(60))), 1, 5, backoff, now);
        assert_eq!(
            longer.next_attempt_at,
            Some(now.plus(Duration::from_secs(60)))
        );
        let shorter = finish(&failed(Some(Duration::from_secs(1))), 1, 5, backoff, now);
        assert_eq!(shorter.next_attempt_at, Some(now.plus(backoff)));
        let last = finish(&failed(None), 5, 5, backoff, now);
        assert_eq!(last.status, EventStatus::DeadLettered);
        assert_eq!(last.next_attempt_at, None);
        let delivered = finish(&AttemptOutcome::Delivered, 2, 5, backoff, now);
        assert_eq!(
            (delivered.status, delivered.error),
            (EventStatus::Delivered, None)
        );
    }

    #[test]
    fn a_released_attempt_does_not_count() {
        assert_eq!(
            release(1),
            Release {
                status: EventStatus::Queued,
                attempts: 0
            }
        );
        assert_eq!(
            release(3),
            Release {
                status: EventStatus::Retrying,
                attempts: 2
            }
        );
    }

    #[test]
    fn an_expired_lease_is_a_failed_attempt() {
        let now = Timestamp(42);
        let expiry = expire(2, 5, now);
        assert_eq!(expiry.status, EventStatus::Retrying);
        assert_eq!(expiry.next_attempt_at, Some(now));
        assert!(expiry.error.contains("lease expired"));
        assert_eq!(expire(5, 5, now).status, EventStatus::DeadLettered);
        assert_eq!(expire(5, 5, now).next_attempt_at, None);
    }

    #[test]
    fn replay_arithmetic() {
        assert_eq!(
            replay(Some((EventStatus::DeadLettered, 5)), 5),
            Ok(Replay {
                status: EventStatus::Queued,
                max_attempts: 10,
                attempts_at_replay: 5
            })
        );
        assert_eq!(
            replay(Some((EventStatus::Retrying, 2)), 5),
            Err(ReplayRefused::NotReplayable(EventStatus::Retrying))
        );
        assert_eq!(replay(None, 5), Err(ReplayRefused::NotFound));
        assert_eq!(
            replay(Some((EventStatus::Delivered, u32::MAX)), 5)
                .unwrap()
                .max_attempts,
            u32::MAX
        );
    }

    #[test]
    fn names_round_trip() {
        for status in EventStatus::ALL {
            assert_eq!(status.as_str().parse::<EventStatus>().unwrap(), status);
        }
        assert!("done".parse::<EventStatus>().is_err());
    }

    #[test]
    fn transitions_are_exactly_the_lifecycle() {
        use EventStatus::*;
        let allowed = [
            (Queued, Processing),
            (Retrying, Processing),
            (Processing, Delivered),
            (Processing, Retrying),
            (Processing, DeadLettered),
            (Processing, Queued),
            (Delivered, Queued),
            (DeadLettered, Queued),
        ];
        for from in EventStatus::ALL {
            for to in EventStatus::ALL {
                assert_eq!(
                    from.can_become(to),
                    allowed.contains(&(from, to)),
                    "{from} -> {to}"
                );
            }
        }
    }

    #[test]
    fn the_last_failed_attempt_dead_letters() {
        let failed = AttemptOutcome::Failed {
            error: "x".into(),
            retry_after: None,
        };
        assert_eq!(status_after(&failed, 1, 5), EventStatus::Retrying);
        assert_eq!(status_after(&failed, 4, 5), EventStatus::Retrying);
        assert_eq!(status_after(&failed, 5, 5), EventStatus::DeadLettered);
        let gone = AttemptOutcome::FailedPermanently {
            error: "410".into(),
        };
        assert_eq!(status_after(&gone, 1, 5), EventStatus::DeadLettered);
        assert_eq!(
            status_after(&AttemptOutcome::Delivered, 5, 5),
            EventStatus::Delivered
        );
    }

    #[test]
    fn an_event_reads_as_its_deliveries_summarised() {
        use EventStatus::*;
        let state = |status, attempts| DeliveryState {
            status,
            attempts,
            max_attempts: 5,
            last_error: None,
            next_attempt_at: None,
            updated_at: Timestamp(0),
        };
        let summary = |states: &[DeliveryState]| summarize(states).map(|s| s.status);
        assert_eq!(summary(&[]), None);
        assert_eq!(summary(&[state(Retrying, 2)]), Some(Retrying));
        assert_eq!(
            summary(&[state(Delivered, 1), state(Delivered, 3)]),
            Some(Delivered)
        );
        assert_eq!(
            summarize(&[state(Delivered, 1), state(Delivered, 3)]).map(|s| s.attempts),
            Some(3)
        );
        assert_eq!(
            summary(&[state(Delivered, 1), state(DeadLettered, 5)]),
            Some(DeadLettered)
        );
        assert_eq!(
            summary(&[state(DeadLettered, 5), state(Retrying, 1)]),
            Some(Retrying)
        );
        assert_eq!(
            summary(&[state(Processing, 1), state(Queued, 0)]),
            Some(Queued)
        );
        assert_eq!(
            summary(&[state(Delivered, 1), state(Processing, 2)]),
            Some(Processing)
        );
        assert_eq!(
            summary(&[state(Retrying, 1), state(Processing, 2)]),
            Some(Retrying)
        );
    }
}
