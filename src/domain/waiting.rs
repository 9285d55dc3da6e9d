//! When a delivery is unfinished, when it is due, and why a due one waits: one rule
//! for the API, the dashboard and the command line.

use super::lifecycle::{DeliveryState, EventStatus};
use super::time::Timestamp;

/// Whether deliveries to a destination are being attempted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestinationState {
    Active,
    /// An operator paused it: deliveries wait, unattempted.
    Paused,
    /// Its breaker is open: nothing is sent but a probe now and then.
    Failing,
}

impl DestinationState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Paused => "paused",
            Self::Failing => "failing",
        }
    }
}

/// Why a destination's due deliveries are not attempted now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeldBack {
    Paused,
    BreakerOpen,
    /// Its `rate` or `max_in_flight` holds them back for a moment.
    Throttled,
}

impl HeldBack {
    pub const ALL: [HeldBack; 3] = [Self::Paused, Self::BreakerOpen, Self::Throttled];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Paused => "paused",
            Self::BreakerOpen => "breaker_open",
            Self::Throttled => "throttled",
        }
    }

    /// What holds a destination's due deliveries back, if anything.
    pub fn of(state: DestinationState, throttled: bool) -> Option<Self> {
        match state {
            DestinationState::Paused => Some(Self::Paused),
            DestinationState::Failing => Some(Self::BreakerOpen),
            DestinationState::Active => throttled.then_some(Self::Throttled),
        }
    }
}

/// Not yet delivered or dead-lettered.
pub fn is_unfinished(status: EventStatus) -> bool {
    matches!(
        status,
        EventStatus::Queued | EventStatus::Retrying | EventStatus::Processing
    )
}

/// A worker would attempt it now if its destination let it: queued, or retrying
/// with its next attempt's time come.
pub fn is_due(state: &DeliveryState, now: Timestamp) -> bool {
    match state.status {
        EventStatus::Queued => true,
        EventStatus::Retrying => state.next_attempt_at.is_none_or(|at| at <= now),
        _ => false,
    }
}

/// Why the delivery waits: it is due and its destination holds it back. A retry
/// whose time has not come is not waiting on its destination: it is scheduled.
pub fn waiting(
    state: &DeliveryState,
    now: Timestamp,
    destination: Option<HeldBack>,
) -> Option<HeldBack> {
    destination.filter(|_| is_due(state, now))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(status: EventStatus, next_attempt_in: Option<i64>) -> DeliveryState {
        let now = Timestamp(1_000_000_000);
        DeliveryState {
            status,
            attempts: 1,
            max_attempts: 5,
            last_error: None,
            next_attempt_at: next_attempt_in.map(|us| Timestamp(now.0 + us)),
            updated_at: now,
        }
    }

    #[test]
    fn only_a_due_delivery_waits_on_its_destination() {
        let now = Timestamp(1_000_000_000);
        let cases = [
            (state(EventStatus::Queued, Some(0)), true),
            (state(EventStatus::Retrying, Some(-1)), true),
            (state(EventStatus::Retrying, Some(0)), true),
            (state(EventStatus::Retrying, Some(60_000_000)), false),
            (state(EventStatus::Processing, None), false),
            (state(EventStatus::Delivered, None), false),
            (state(EventStatus::DeadLettered, None), false),
        ];
        for (delivery, due) in cases {
            assert_eq!(is_due(&delivery, now), due, "{delivery:?}");
            for held in HeldBack::ALL {
                let expected = due.then_some(held);
                assert_eq!(
                    waiting(&delivery, now, Some(held)),
                    expected,
                    "{delivery:?}"
                );
            }
            assert_eq!(waiting(&delivery, now, None), None);
        }
    }

    #[test]
    fn a_destination_holds_back_when_paused_failing_or_throttled() {
        use DestinationState::*;
        assert_eq!(HeldBack::of(Paused, true), Some(HeldBack::Paused));
        assert_eq!(HeldBack::of(Failing, false), Some(HeldBack::BreakerOpen));
        assert_eq!(HeldBack::of(Active, true), Some(HeldBack::Throttled));
        assert_eq!(HeldBack::of(Active, false), None);
    }
}
