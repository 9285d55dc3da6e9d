//! The event state machine: its states, their descriptions and the allowed transitions.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventStatus {
    Queued,
    Processing,
    Retrying,
    Delivered,
    DeadLettered,
}

#[derive(Debug, Error)]
#[error("unknown event status {0:?}")]
pub struct UnknownStatus(pub String);

impl EventStatus {
    pub const ALL: [EventStatus; 5] = [
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
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Self::Queued => "Awaiting first processing attempt",
            Self::Processing => "Currently being processed by worker",
            Self::Retrying => "Failed, scheduled for retry",
            Self::Delivered => "Successfully processed",
            Self::DeadLettered => "Permanently failed after max attempts",
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
