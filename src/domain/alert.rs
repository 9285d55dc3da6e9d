//! Alerts: what happened to a destination that a person should hear about, decided
//! from the destination's state. Each is raised once per episode; sending them is the
//! worker's business.

use std::time::Duration;

use super::protection::BreakerChange;
use super::retry::RetryPolicy;
use super::time::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertKind {
    /// The destination's breaker opened: it failed too often in a row.
    Failing,
    /// Its breaker closed again: it answers.
    Recovered,
    /// Deliveries to it were dead-lettered (one alert per digest window, with a count).
    DeadLettered,
    /// Its oldest due delivery has waited longer than `lag`.
    Lagging,
    /// The lag is over.
    CaughtUp,
}

impl AlertKind {
    pub const ALL: [Self; 5] = [
        Self::Failing,
        Self::Recovered,
        Self::DeadLettered,
        Self::Lagging,
        Self::CaughtUp,
    ];

    /// The `type` of a JSON alert, and what the database stores.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Failing => "destination.failing",
            Self::Recovered => "destination.recovered",
            Self::DeadLettered => "destination.dead_lettered",
            Self::Lagging => "destination.lagging",
            Self::CaughtUp => "destination.caught_up",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == text)
    }
}

impl From<BreakerChange> for AlertKind {
    fn from(change: BreakerChange) -> Self {
        match change {
            BreakerChange::Opened => Self::Failing,
            BreakerChange::Closed => Self::Recovered,
        }
    }
}

/// How alerts are grouped. Dead letters of one destination within one window are one
/// alert, so a burst of them is one message, not thousands. A recovery is announced
/// only once the destination has stayed up for `settle`; failing again before that
/// continues the episode already announced, so a flapping destination pages once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlertRules {
    pub digest: Duration,
    pub settle: Duration,
}

impl Default for AlertRules {
    fn default() -> Self {
        Self {
            digest: Duration::from_secs(60),
            settle: Duration::from_secs(60),
        }
    }
}

impl AlertRules {
    /// The start of the digest window `now` falls in. Windows are aligned to the
    /// epoch, so every process agrees on them.
    pub fn window(&self, now: Timestamp) -> Timestamp {
        let width = (self.digest.as_micros() as i64).max(1);
        Timestamp(now.0.div_euclid(width) * width)
    }

    /// When an alert of `kind` raised `now` is first sent: a recovery only once it has
    /// held for `settle` (a failure before then continues the episode and takes it back).
    pub fn send_at(kind: AlertKind, now: Timestamp, settle: Duration) -> Timestamp {
        match kind {
            AlertKind::Recovered => now.plus(settle),
            _ => now,
        }
    }

    /// The window after the one starting at `start`.
    pub fn next_window(&self, start: Timestamp) -> Timestamp {
        start.plus(self.digest.max(Duration::from_micros(1)))
    }
}

/// What an alert's message says beyond its kind, fixed when it is raised. Times are
/// RFC 3339; absent fields are left out of the JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AlertDetails {
    /// Since when the trouble lasts (or, for its end, lasted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Failures in a row that opened the breaker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failures: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Deliveries to the destination not yet finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<i64>,
    /// Dead letters in the digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<i64>,
    /// The latest dead-lettered event of the digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_start: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_end: Option<String>,
}

impl AlertDetails {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }

    /// Details as stored; an unreadable value reads as none rather than failing.
    pub fn from_json(text: &str) -> Self {
        serde_json::from_str(text).unwrap_or_default()
    }
}

/// A change of a destination's lag episode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LagChange {
    /// The oldest due delivery, due since `since`, has waited longer than `lag`.
    Started { since: Timestamp },
    /// The lag fell to half of `lag` or less.
    Ended,
}

/// Whether a destination's lag episode starts or ends now. It ends only once the
/// oldest due delivery's wait falls to half of `lag`, so that a backlog hovering at
/// the threshold does not page someone every minute.
pub fn lag_change(
    lagging_since: Option<Timestamp>,
    oldest_due: Option<Timestamp>,
    lag: Duration,
    now: Timestamp,
) -> Option<LagChange> {
    let waited = oldest_due.map_or(Duration::ZERO, |due| due.until(now));
    match (lagging_since, oldest_due) {
        (None, Some(due)) if waited > lag => Some(LagChange::Started { since: due }),
        (Some(_), _) if waited <= lag / 2 => Some(LagChange::Ended),
        _ => None,
    }
}

/// The longest pause between two tries of an alert: an alert is news, so the receiver
/// is tried at least this often until it takes it.
pub const MAX_ALERT_RETRY: Duration = Duration::from_secs(600);

/// When to try an alert again after `attempts` failed tries: the delivery policy's
/// backoff, capped, and never giving up.
pub fn alert_retry_delay(policy: &RetryPolicy, attempts: u32) -> Duration {
    policy.delay(attempts).min(MAX_ALERT_RETRY)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: i64 = 1_000_000;

    #[test]
    fn kinds_round_trip_through_their_names() {
        for kind in AlertKind::ALL {
            assert_eq!(AlertKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(AlertKind::parse("destination.on_fire"), None);
        assert_eq!(AlertKind::from(BreakerChange::Opened), AlertKind::Failing);
        assert_eq!(AlertKind::from(BreakerChange::Closed), AlertKind::Recovered);
    }

    #[test]
    fn digest_windows_are_aligned_and_consecutive() {
        let rules = AlertRules::default();
        let now = Timestamp(1_700_000_012 * SECOND + 345);
        let start = rules.window(now);
        assert_eq!(start, Timestamp(1_699_999_980 * SECOND));
        assert_eq!(rules.window(Timestamp(start.0 + 59 * SECOND)), start);
        assert_eq!(rules.next_window(start), Timestamp(start.0 + 60 * SECOND));
        assert_eq!(
            rules.window(rules.next_window(start)),
            rules.next_window(start)
        );
        let tiny = AlertRules {
            settle: Duration::ZERO,
            digest: Duration::ZERO,
        };
        assert_eq!(tiny.window(now), now);
    }

    #[test]
    fn a_lag_episode_starts_past_lag_and_ends_at_half_of_it() {
        let lag = Duration::from_secs(300);
        let now = Timestamp(10_000 * SECOND);
        let due = |ago: i64| Some(Timestamp(now.0 - ago * SECOND));
        assert_eq!(lag_change(None, None, lag, now), None);
        assert_eq!(lag_change(None, due(300), lag, now), None);
        assert_eq!(
            lag_change(None, due(301), lag, now),
            Some(LagChange::Started {
                since: due(301).unwrap()
            })
        );
        let since = due(400);
        // Still lagging, or hovering between half and all of `lag`: no change.
        assert_eq!(lag_change(since, due(400), lag, now), None);
        assert_eq!(lag_change(since, due(200), lag, now), None);
        assert_eq!(
            lag_change(since, due(150), lag, now),
            Some(LagChange::Ended)
        );
        assert_eq!(lag_change(since, None, lag, now), Some(LagChange::Ended));
    }

    #[test]
    fn alert_retries_back_off_and_are_capped() {
        let policy = RetryPolicy {
            jitter: 0.0,
            ..RetryPolicy::default()
        };
        assert_eq!(alert_retry_delay(&policy, 1), Duration::from_secs(10));
        assert_eq!(alert_retry_delay(&policy, 2), Duration::from_secs(30));
        assert_eq!(alert_retry_delay(&policy, 40), MAX_ALERT_RETRY);
    }
}
