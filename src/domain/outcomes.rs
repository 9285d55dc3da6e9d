//! What a batch of attempts' outcomes does, decided once for both stores: where each
//! delivery ends (an attempt that failed behind an open breaker is held, not spent),
//! what the destinations' breakers become, the alerts that raises, and, once the
//! fenced writes say which outcomes held their lease, each destination's last success
//! or failure and its dead-letter digest.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use super::alert::{AlertDetails, AlertKind, AlertRules};
use super::lifecycle::{EventStatus, Finish};
use super::protection::{self, BreakerChange, BreakerPolicy, Fault, FlowState};
use super::time::Timestamp;

/// One attempt's outcome as the worker saw it and decided it alone.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    pub destination: &'a str,
    pub event_id: &'a str,
    pub status: EventStatus,
    pub next_attempt_at: Option<Timestamp>,
    pub error: Option<&'a str>,
    pub attempt: u32,
    pub max_attempts: u32,
    /// Whose failure it was: what the breaker counts.
    pub fault: Fault,
    pub probe: bool,
    /// The destination's breaker, `None` when it is off.
    pub breaker: Option<BreakerPolicy>,
    /// How alerts are raised, `None` when no `[alerts]` are configured.
    pub alerts: Option<AlertRules>,
}

/// Where one delivery ends, and what its outcome did to its destination's breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settled {
    pub status: EventStatus,
    pub next_attempt_at: Option<Timestamp>,
    pub max_attempts: u32,
    pub breaker: Option<BreakerChange>,
}

impl Settled {
    /// The outcome as the worker decided it, where nothing holds it.
    pub fn unchanged(outcome: &Observed<'_>) -> Self {
        Self {
            status: outcome.status,
            next_attempt_at: outcome.next_attempt_at,
            max_attempts: outcome.max_attempts,
            breaker: None,
        }
    }
}

/// An alert a breaker's change raises. `details.waiting` is for the store to fill in.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerAlert {
    pub kind: AlertKind,
    pub destination: String,
    /// The outage it belongs to: since when the breaker was open.
    pub episode: Timestamp,
    pub details: AlertDetails,
    pub settle: Duration,
}

/// What a batch decides before it is written.
#[derive(Debug, Clone, PartialEq)]
pub struct Settlement {
    /// One per outcome, in order.
    pub settled: Vec<Settled>,
    /// The destinations whose state changed, in name order (the order every writer
    /// takes their rows in).
    pub flows: Vec<(String, FlowState)>,
    pub alerts: Vec<BreakerAlert>,
}

/// Applies the outcomes to their destinations' states in order. `before` holds each
/// destination's state as read (a missing one is a fresh destination).
pub fn settle(
    outcomes: &[Observed<'_>],
    before: &HashMap<String, FlowState>,
    now: Timestamp,
) -> Settlement {
    let mut states = before.clone();
    let settled: Vec<Settled> = outcomes
        .iter()
        .map(|one| {
            let state = states.entry(one.destination.to_owned()).or_default();
            let (after, change) =
                protection::record(state, one.breaker.as_ref(), one.fault, one.probe, now);
            let finish = Finish {
                status: one.status,
                next_attempt_at: one.next_attempt_at,
                error: None,
            };
            let (finish, max_attempts) = protection::hold(
                finish,
                one.fault,
                &after,
                one.attempt,
                one.max_attempts,
                now,
            );
            *state = after;
            Settled {
                status: finish.status,
                next_attempt_at: finish.next_attempt_at,
                max_attempts,
                breaker: change,
            }
        })
        .collect();
    let alerts = outcomes
        .iter()
        .zip(&settled)
        .filter_map(|(one, settled)| {
            let (change, rules) = (settled.breaker?, one.alerts?);
            let before = before.get(one.destination);
            let after = &states[one.destination];
            Some(breaker_alert(change, before, after, one, rules, now))
        })
        .collect();
    let mut flows: Vec<(String, FlowState)> = states
        .into_iter()
        .filter(|(name, state)| before.get(name) != Some(state))
        .collect();
    flows.sort_by(|a, b| a.0.cmp(&b.0));
    Settlement {
        settled,
        flows,
        alerts,
    }
}

/// A batch whose destinations' states need not be read: every outcome a delivery that
/// was not a probe. Each destination's state then resets (no failures, breaker
/// closed) whatever it was, and a breaker it closes raises [`recovery_alert`].
pub fn is_plain_success(outcomes: &[Observed<'_>]) -> bool {
    outcomes
        .iter()
        .all(|one| one.fault == Fault::None && !one.probe)
}

/// A destination's state after a success: no failures counted, its breaker closed.
/// PostgreSQL's one-statement write of plain successes does this in SQL without
/// reading the state; the test below holds `settle` to it, and the store contract's
/// breaker and alert tests hold both backends to the same outcome.
#[cfg(test)]
pub fn after_success(state: &FlowState) -> FlowState {
    FlowState {
        failures: 0,
        breaker: None,
        ..*state
    }
}

/// The alert of a breaker that closed, open since `since`.
pub fn recovery_alert(destination: &str, since: Timestamp, settle: Duration) -> BreakerAlert {
    BreakerAlert {
        kind: AlertKind::Recovered,
        destination: destination.to_owned(),
        episode: since,
        details: AlertDetails {
            since: Some(since.to_rfc3339()),
            ..AlertDetails::default()
        },
        settle,
    }
}

/// The alert a breaker's change raises: since when it was down comes from the state
/// before the batch (a closing) or after it (an opening).
fn breaker_alert(
    change: BreakerChange,
    before: Option<&FlowState>,
    after: &FlowState,
    outcome: &Observed<'_>,
    rules: AlertRules,
    now: Timestamp,
) -> BreakerAlert {
    let since = match change {
        BreakerChange::Opened => after.breaker.map(|b| b.since),
        BreakerChange::Closed => before.and_then(|b| b.breaker).map(|b| b.since),
    };
    if change == BreakerChange::Closed
        && let Some(since) = since
    {
        return recovery_alert(outcome.destination, since, rules.settle);
    }
    let opened = change == BreakerChange::Opened;
    BreakerAlert {
        kind: change.into(),
        destination: outcome.destination.to_owned(),
        episode: since.unwrap_or(now),
        details: AlertDetails {
            since: since.map(Timestamp::to_rfc3339),
            failures: opened.then_some(after.failures),
            last_error: opened.then(|| outcome.error.map(str::to_owned)).flatten(),
            ..AlertDetails::default()
        },
        settle: rules.settle,
    }
}

/// What the outcomes that held their lease add to the destinations' records.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Written {
    /// Each destination's last outcome, `true` for a delivery: one entry per
    /// destination and kind.
    pub last_outcomes: Vec<(String, bool)>,
    /// Dead letters, by destination, for the digest alert.
    pub digests: Vec<Digest>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Digest {
    pub destination: String,
    pub dead: i64,
    /// The latest dead-lettered event.
    pub last_event: String,
    pub rules: AlertRules,
}

/// What the outcomes add once written; `held(i)` says whether outcome `i` still held
/// its lease (a stale worker's outcome changes nothing).
pub fn written(
    outcomes: &[Observed<'_>],
    settled: &[Settled],
    held: impl Fn(usize) -> bool,
) -> Written {
    let mut last_outcomes: Vec<(String, bool)> = Vec::new();
    let mut dead: BTreeMap<&str, (i64, &str, Option<AlertRules>)> = BTreeMap::new();
    for (index, (one, settled)) in outcomes.iter().zip(settled).enumerate() {
        if !held(index) {
            continue;
        }
        let delivered = settled.status == EventStatus::Delivered;
        if !last_outcomes
            .iter()
            .any(|(name, kind)| name == one.destination && *kind == delivered)
        {
            last_outcomes.push((one.destination.to_owned(), delivered));
        }
        let counts = dead.entry(one.destination).or_insert((0, "", None));
        if settled.status == EventStatus::DeadLettered {
            counts.0 += 1;
            counts.1 = one.event_id;
        }
        counts.2 = counts.2.or(one.alerts);
    }
    let digests = dead
        .into_iter()
        .filter_map(|(destination, (dead, last_event, rules))| {
            Some(Digest {
                destination: destination.to_owned(),
                dead,
                last_event: last_event.to_owned(),
                rules: rules.filter(|_| dead > 0)?,
            })
        })
        .collect();
    Written {
        last_outcomes,
        digests,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::protection::OpenBreaker;

    const NOW: Timestamp = Timestamp(1_000_000_000_000);
    const EARLIER: Timestamp = Timestamp(999_000_000_000);

    fn policy() -> BreakerPolicy {
        BreakerPolicy {
            failures: 2,
            ..BreakerPolicy::default()
        }
    }

    fn outcome(status: EventStatus, fault: Fault) -> Observed<'static> {
        Observed {
            destination: "app",
            event_id: "evt_1",
            status,
            next_attempt_at: (status == EventStatus::Retrying)
                .then_some(NOW.plus(Duration::from_secs(5))),
            error: (fault != Fault::None).then_some("HTTP 503"),
            attempt: 1,
            max_attempts: 1,
            fault,
            probe: false,
            breaker: Some(policy()),
            alerts: Some(AlertRules::default()),
        }
    }

    fn open() -> FlowState {
        FlowState {
            failures: 2,
            breaker: Some(OpenBreaker {
                since: EARLIER,
                probe_at: NOW,
                pause: Duration::from_secs(1),
            }),
            ..FlowState::default()
        }
    }

    struct Case {
        what: &'static str,
        before: Option<FlowState>,
        outcomes: Vec<Observed<'static>>,
        statuses: Vec<EventStatus>,
        breaker: Option<BreakerChange>,
        alert: Option<(AlertKind, Timestamp)>,
        failures_after: u32,
        dead_in_digest: i64,
    }

    #[test]
    fn outcomes_decide_finishes_breakers_alerts_and_digests() {
        use EventStatus::*;
        let failed = outcome(Retrying, Fault::Destination);
        let last_failed = outcome(DeadLettered, Fault::Destination);
        let refused = outcome(DeadLettered, Fault::Event);
        let cases = [
            Case {
                what: "a success closes an open breaker and announces the recovery",
                before: Some(open()),
                outcomes: vec![outcome(Delivered, Fault::None)],
                statuses: vec![Delivered],
                breaker: Some(BreakerChange::Closed),
                alert: Some((AlertKind::Recovered, EARLIER)),
                failures_after: 0,
                dead_in_digest: 0,
            },
            Case {
                what: "failures in a row open the breaker; the one that opens it is held",
                before: None,
                outcomes: vec![failed, last_failed],
                statuses: vec![Retrying, Retrying],
                breaker: Some(BreakerChange::Opened),
                alert: Some((AlertKind::Failing, NOW)),
                failures_after: 2,
                dead_in_digest: 0,
            },
            Case {
                what: "a last attempt failing behind an open breaker is held, not dead",
                before: Some(open()),
                outcomes: vec![last_failed],
                statuses: vec![Retrying],
                breaker: None,
                alert: None,
                failures_after: 3,
                dead_in_digest: 0,
            },
            Case {
                what: "a last attempt failing with the breaker closed is dead-lettered",
                before: None,
                outcomes: vec![last_failed],
                statuses: vec![DeadLettered],
                breaker: None,
                alert: None,
                failures_after: 1,
                dead_in_digest: 1,
            },
            Case {
                what: "a refusal of the event is not the destination's failure",
                before: Some(open()),
                outcomes: vec![refused],
                statuses: vec![DeadLettered],
                breaker: Some(BreakerChange::Closed),
                alert: Some((AlertKind::Recovered, EARLIER)),
                failures_after: 0,
                dead_in_digest: 1,
            },
        ];
        for case in cases {
            let before: HashMap<String, FlowState> = case
                .before
                .map(|s| ("app".to_owned(), s))
                .into_iter()
                .collect();
            let settlement = settle(&case.outcomes, &before, NOW);
            let statuses: Vec<_> = settlement.settled.iter().map(|s| s.status).collect();
            assert_eq!(statuses, case.statuses, "{}", case.what);
            let change = settlement.settled.iter().find_map(|s| s.breaker);
            assert_eq!(change, case.breaker, "{}", case.what);
            let alert = settlement.alerts.first().map(|a| (a.kind, a.episode));
            assert_eq!(alert, case.alert, "{}", case.what);
            let after = settlement
                .flows
                .iter()
                .find(|(name, _)| name == "app")
                .map(|(_, state)| *state)
                .or(case.before)
                .unwrap_or_default();
            assert_eq!(after.failures, case.failures_after, "{}", case.what);
            let written = written(&case.outcomes, &settlement.settled, |_| true);
            let dead: i64 = written.digests.iter().map(|d| d.dead).sum();
            assert_eq!(dead, case.dead_in_digest, "{}", case.what);
            // An outcome whose lease was lost adds nothing.
            assert_eq!(
                super::written(&case.outcomes, &settlement.settled, |_| false),
                Written::default(),
                "{}",
                case.what
            );
        }
    }

    #[test]
    fn a_plain_success_resets_the_state_as_settling_it_would() {
        let outcomes = [outcome(EventStatus::Delivered, Fault::None)];
        assert!(is_plain_success(&outcomes));
        let before: HashMap<String, FlowState> = [("app".to_owned(), open())].into();
        let settlement = settle(&outcomes, &before, NOW);
        assert_eq!(
            settlement.flows,
            vec![("app".to_owned(), after_success(&open()))]
        );
        assert_eq!(
            settlement.alerts,
            vec![recovery_alert("app", EARLIER, AlertRules::default().settle)]
        );
        let probe = Observed {
            probe: true,
            ..outcomes[0]
        };
        assert!(!is_plain_success(&[probe]));
    }

    #[test]
    fn the_opening_alert_says_how_many_failures_and_the_last_error() {
        let outcomes = [
            outcome(EventStatus::Retrying, Fault::Destination),
            outcome(EventStatus::Retrying, Fault::Destination),
        ];
        let settlement = settle(&outcomes, &HashMap::new(), NOW);
        let alert = &settlement.alerts[0];
        assert_eq!(alert.details.failures, Some(2));
        assert_eq!(alert.details.last_error.as_deref(), Some("HTTP 503"));
        assert_eq!(alert.details.since, Some(NOW.to_rfc3339()));
    }
}
