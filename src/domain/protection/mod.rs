//! Protecting the user's application: a destination's rate (a token bucket), its
//! attempts in flight, its breaker and its pause, decided here as pure functions of
//! the destination's stored state. The store reads that state under a lock, asks
//! [`plan`] how many deliveries a claim may start, and writes back what [`spend`] and
//! [`record`] return; every worker process sharing the database obeys the same row.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::lifecycle::{EventStatus, Finish};
use super::time::Timestamp;

/// `N/s`, `N/m` or `N/h`: at most N attempts started per unit, spread evenly.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub count: u32,
    pub per: Duration,
}

impl Rate {
    pub fn per_second(self) -> f64 {
        f64::from(self.count) / self.per.as_secs_f64()
    }

    /// The most tokens the bucket holds: a tenth of a second's worth, at least one.
    /// Small on purpose: an idle destination gets no burst of a whole window.
    pub fn burst(self) -> f64 {
        (self.per_second() / 10.0).max(1.0)
    }
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let usage = || format!("{text:?} is not a rate such as \"50/s\", \"600/m\" or \"1000/h\"");
        let (count, unit) = text.trim().split_once('/').ok_or_else(usage)?;
        let count: u32 = count.trim().parse().map_err(|_| usage())?;
        let per = match unit.trim() {
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            _ => return Err(usage()),
        };
        if count == 0 {
            return Err("must allow at least one attempt (use pause to stop a destination)".into());
        }
        Ok(Self { count, per })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "s",
            60 => "m",
            _ => "h",
        };
        write!(f, "{}/{unit}", self.count)
    }
}

/// When a dead-lettered delivery of an ordered destination lets the next one of its
/// key start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnDeadLetter {
    /// The next one starts; the dead letter waits for an operator.
    #[default]
    Skip,
    /// The key waits until the dead letter is replayed and delivered.
    Block,
}

impl FromStr for OnDeadLetter {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "skip" => Ok(Self::Skip),
            "block" => Ok(Self::Block),
            _ => Err(format!("{text:?} is neither \"skip\" nor \"block\"")),
        }
    }
}

/// When a destination's breaker opens and how often it probes while open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Failures of the destination's making in a row that open it.
    pub failures: u32,
    /// The pause before the first probe; it doubles after each failed probe...
    pub first_probe: Duration,
    /// ...up to this.
    pub max_probe: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self {
            failures: 5,
            first_probe: Duration::from_secs(5),
            max_probe: Duration::from_secs(300),
        }
    }
}

/// A destination's limits, from its settings.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Limits {
    pub rate: Option<Rate>,
    pub max_in_flight: Option<u32>,
    /// Set when deliveries start one at a time per ordering key.
    pub ordered: Option<OnDeadLetter>,
    /// `None`: the breaker is off.
    pub breaker: Option<BreakerPolicy>,
}

impl Limits {
    /// Whether claims must count this destination's attempts in flight across every
    /// worker (and so hold its row while they claim).
    pub fn shared(&self) -> bool {
        self.rate.is_some() || self.max_in_flight.is_some() || self.ordered.is_some()
    }
}

/// An open breaker: nothing is sent but one probe at `probe_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenBreaker {
    pub since: Timestamp,
    pub probe_at: Timestamp,
    /// The pause before the next probe after a failed one.
    pub pause: Duration,
}

/// What the database keeps about a destination between claims.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FlowState {
    pub paused: bool,
    /// Failures of the destination's making since its last success.
    pub failures: u32,
    pub breaker: Option<OpenBreaker>,
    /// The token bucket (`None`: full).
    pub tokens: Option<(f64, Timestamp)>,
}

/// Why a destination's due deliveries wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    Paused,
    /// Until the next probe.
    BreakerOpen(Timestamp),
    /// Until enough tokens have come back.
    Throttled(Timestamp),
    /// At `max_in_flight`, or (ordered) every due key has a delivery in flight:
    /// until an attempt finishes.
    InFlight,
}

impl Wait {
    /// The moment waiting can end by itself, if it has one.
    pub fn until(self) -> Option<Timestamp> {
        match self {
            Self::BreakerOpen(at) | Self::Throttled(at) => Some(at),
            Self::Paused | Self::InFlight => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Paused => "paused",
            Self::BreakerOpen(_) => "breaker_open",
            Self::Throttled(_) => "throttled",
            Self::InFlight => "in_flight_limit",
        }
    }
}

/// What one claim may start for a destination.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    /// Deliveries it may lease now.
    pub take: usize,
    /// The one delivery leased is a probe of an open breaker.
    pub probe: bool,
    /// Set when fewer than wanted may start.
    pub wait: Option<Wait>,
}

fn refill(tokens: Option<(f64, Timestamp)>, rate: Rate, now: Timestamp) -> f64 {
    match tokens {
        None => rate.burst(),
        Some((held, at)) => {
            let earned = at.until(now).as_secs_f64() * rate.per_second();
            (held + earned).min(rate.burst())
        }
    }
}

/// How many of `wanted` due deliveries a claim may start now, given `in_flight`
/// attempts already running to the destination (across every worker).
pub fn plan(
    state: &FlowState,
    limits: &Limits,
    in_flight: u32,
    wanted: usize,
    now: Timestamp,
) -> Plan {
    let mut plan = Plan {
        take: wanted,
        probe: false,
        wait: None,
    };
    if state.paused {
        return Plan {
            take: 0,
            wait: Some(Wait::Paused),
            ..plan
        };
    }
    if let Some(open) = state.breaker {
        // One probe at a time, once its pause is over and nothing else is running.
        if open.probe_at > now {
            return Plan {
                take: 0,
                wait: Some(Wait::BreakerOpen(open.probe_at)),
                ..plan
            };
        }
        if in_flight > 0 {
            // A probe (or an attempt started before the breaker opened) is running:
            // its outcome decides, and its finish wakes the claimer.
            return Plan {
                take: 0,
                wait: Some(Wait::InFlight),
                ..plan
            };
        }
        plan.take = plan.take.min(1);
        plan.probe = true;
        plan.wait = Some(Wait::BreakerOpen(open.probe_at));
    }
    if let Some(max) = limits.max_in_flight {
        let room = max.saturating_sub(in_flight) as usize;
        if room < plan.take {
            plan.take = room;
            plan.wait = plan.wait.or(Some(Wait::InFlight));
        }
    }
    if let Some(rate) = limits.rate {
        let tokens = refill(state.tokens, rate, now);
        let whole = tokens.floor() as usize;
        if whole < plan.take {
            plan.take = whole;
            // Wake when a useful handful is back (a tenth of a second's worth, or what
            // is wanted), not for each token: throttled rows are not polled.
            let goal = (wanted as f64).min(rate.burst()).max(1.0);
            let missing = (goal - (tokens - whole as f64)).max(0.0);
            let until = now.plus(Duration::from_secs_f64(missing / rate.per_second()));
            // The rate is what holds back more than any other limit: only a timed
            // wake-up ends this wait (an attempt finishing brings no tokens back).
            plan.wait = Some(Wait::Throttled(until));
        }
    }
    if plan.take > 0 && plan.probe {
        plan.wait = None;
    }
    plan
}

/// The state after a claim started `started` deliveries (`probe`: the one was a probe).
/// A probe moves the next probe a lease away, so that no other worker probes while it
/// runs; its outcome sets the real time.
pub fn spend(
    state: &FlowState,
    limits: &Limits,
    started: usize,
    probe: bool,
    now: Timestamp,
    lease: Duration,
) -> FlowState {
    let mut next = *state;
    if let Some(rate) = limits.rate {
        let tokens = refill(state.tokens, rate, now) - started as f64;
        next.tokens = Some((tokens.max(0.0), now));
    }
    if probe
        && started > 0
        && let Some(open) = &mut next.breaker
    {
        open.probe_at = now.plus(lease);
    }
    next
}

/// Whose failure an attempt's was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Delivered.
    None,
    /// Connection refused, timeout, 5xx, 408, 429: the destination is not taking
    /// deliveries right now.
    Destination,
    /// Any other 4xx: the destination answered and refused this one event.
    Event,
}

impl Fault {
    /// From what the attempt got back: `status` is `None` when no response came.
    pub fn of(delivered: bool, status: Option<u16>) -> Self {
        match (delivered, status) {
            (true, _) => Self::None,
            (false, None) => Self::Destination,
            (false, Some(code)) if code >= 500 || code == 408 || code == 429 => Self::Destination,
            (false, Some(_)) => Self::Event,
        }
    }
}

/// A change of a destination's breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerChange {
    Opened,
    Closed,
}

/// The state after an attempt's outcome. A response of any kind that is not the
/// destination's failure (a success, a 4xx) closes an open breaker: the application
/// is answering again.
pub fn record(
    state: &FlowState,
    policy: Option<&BreakerPolicy>,
    fault: Fault,
    probe: bool,
    now: Timestamp,
) -> (FlowState, Option<BreakerChange>) {
    let mut next = *state;
    if fault != Fault::Destination {
        next.failures = 0;
        let change = next.breaker.take().map(|_| BreakerChange::Closed);
        return (next, change);
    }
    next.failures = next.failures.saturating_add(1);
    let Some(policy) = policy else {
        return (next, None);
    };
    match &mut next.breaker {
        Some(open) if probe => {
            open.pause = (open.pause * 2).min(policy.max_probe);
            open.probe_at = now.plus(open.pause);
            (next, None)
        }
        // An attempt started before the breaker opened.
        Some(_) => (next, None),
        None if next.failures >= policy.failures => {
            next.breaker = Some(OpenBreaker {
                since: now,
                probe_at: now.plus(policy.first_probe),
                pause: policy.first_probe,
            });
            (next, Some(BreakerChange::Opened))
        }
        None => (next, None),
    }
}

/// An attempt that failed by the destination's fault while its breaker is open uses up
/// nothing: the delivery waits behind the breaker, due (a probe takes the oldest due),
/// never dead-lettered for it, with at least one attempt still left. Returns the
/// finish and the delivery's `max_attempts`.
pub fn hold(
    finish: Finish,
    fault: Fault,
    after: &FlowState,
    attempt: u32,
    max_attempts: u32,
    now: Timestamp,
) -> (Finish, u32) {
    if fault != Fault::Destination
        || after.breaker.is_none()
        || finish.status == EventStatus::Delivered
    {
        return (finish, max_attempts);
    }
    (
        Finish {
            status: EventStatus::Retrying,
            next_attempt_at: Some(now),
            error: finish.error,
        },
        max_attempts.max(attempt.saturating_add(1)),
    )
}

#[cfg(test)]
mod tests;
