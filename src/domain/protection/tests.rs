//! Limits, the breaker and the hold, by example.

use super::*;

const NOW: Timestamp = Timestamp(1_000_000_000);

fn limits() -> Limits {
    Limits {
        breaker: Some(BreakerPolicy::default()),
        ..Limits::default()
    }
}

#[test]
fn rates_parse_and_refuse_what_they_cannot_mean() {
    let rate: Rate = "50/s".parse().unwrap();
    assert_eq!(rate.per_second(), 50.0);
    assert_eq!(rate.burst(), 5.0);
    assert_eq!(rate.to_string(), "50/s");
    assert_eq!("600/m".parse::<Rate>().unwrap().per_second(), 10.0);
    assert_eq!("1/h".parse::<Rate>().unwrap().burst(), 1.0);
    for bad in ["50", "50/d", "x/s", "0/s", "-1/s", ""] {
        assert!(bad.parse::<Rate>().is_err(), "{bad}");
    }
}

#[test]
fn an_unlimited_destination_takes_what_it_wants() {
    let plan = plan(&FlowState::default(), &limits(), 100, 64, NOW);
    assert_eq!((plan.take, plan.probe, plan.wait), (64, false, None));
}

#[test]
fn a_paused_destination_takes_nothing_and_wakes_on_its_own_never() {
    let state = FlowState {
        paused: true,
        ..FlowState::default()
    };
    let plan = plan(&state, &limits(), 0, 64, NOW);
    assert_eq!((plan.take, plan.wait), (0, Some(Wait::Paused)));
    assert_eq!(Wait::Paused.until(), None);
}

#[test]
fn max_in_flight_counts_every_workers_attempts() {
    let limits = Limits {
        max_in_flight: Some(1),
        ..limits()
    };
    assert_eq!(plan(&FlowState::default(), &limits, 0, 64, NOW).take, 1);
    let busy = plan(&FlowState::default(), &limits, 1, 64, NOW);
    assert_eq!((busy.take, busy.wait), (0, Some(Wait::InFlight)));
}

#[test]
fn a_rate_that_holds_back_more_than_max_in_flight_wakes_on_its_own() {
    let limits = Limits {
        rate: Some("2/s".parse().unwrap()),
        max_in_flight: Some(1),
        ..limits()
    };
    let spent = spend(
        &FlowState::default(),
        &limits,
        1,
        false,
        NOW,
        Duration::from_secs(30),
    );
    // Nothing in flight, no token: the wait ends when the token is back, not when
    // an attempt finishes (none is running).
    let idle = plan_for(&spent, &limits, 0);
    assert_eq!(idle.take, 0);
    assert_eq!(
        idle.wait,
        Some(Wait::Throttled(NOW.plus(Duration::from_millis(500))))
    );
    // At max_in_flight, the running attempt's finish is what frees the slot.
    let busy = plan_for(&spent, &limits, 1);
    assert_eq!((busy.take, busy.wait), (0, Some(Wait::InFlight)));
    // A few tokens under a wider max_in_flight: those start, the rest wait timed.
    let wide = Limits {
        rate: Some("40/s".parse().unwrap()),
        max_in_flight: Some(16),
        ..limits
    };
    let some = plan_for(&FlowState::default(), &wide, 0);
    assert_eq!(some.take, 4);
    assert!(matches!(some.wait, Some(Wait::Throttled(_))), "{some:?}");
}

fn plan_for(state: &FlowState, limits: &Limits, in_flight: u32) -> Plan {
    plan(state, limits, in_flight, 64, NOW)
}

#[test]
fn the_bucket_refills_smoothly_and_never_beyond_a_tenth_of_a_second() {
    let limits = Limits {
        rate: Some("50/s".parse().unwrap()),
        ..limits()
    };
    // Full at first: five (a tenth of a second's worth), not fifty.
    let first = plan(&FlowState::default(), &limits, 0, 64, NOW);
    assert_eq!(first.take, 5);
    // What it takes is spent: the rest waits for the next handful.
    assert_eq!(
        first.wait,
        Some(Wait::Throttled(NOW.plus(Duration::from_millis(100))))
    );
    let after = spend(
        &FlowState::default(),
        &limits,
        5,
        false,
        NOW,
        Duration::from_secs(30),
    );
    let empty = plan(&after, &limits, 0, 64, NOW);
    assert_eq!(empty.take, 0);
    // It wakes when the handful is back, 100 ms later: not once per token.
    assert_eq!(
        empty.wait,
        Some(Wait::Throttled(NOW.plus(Duration::from_millis(100))))
    );
    let later = plan(&after, &limits, 0, 64, NOW.plus(Duration::from_millis(40)));
    assert_eq!(later.take, 2);
    // An hour idle still holds five.
    let idle = plan(&after, &limits, 0, 64, NOW.plus(Duration::from_secs(3600)));
    assert_eq!(idle.take, 5);
}

#[test]
fn five_destination_failures_in_a_row_open_the_breaker_and_a_success_resets_the_count() {
    let policy = BreakerPolicy::default();
    let mut state = FlowState::default();
    for _ in 0..4 {
        let (next, change) = record(&state, Some(&policy), Fault::Destination, false, NOW);
        assert_eq!(change, None);
        state = next;
    }
    let (reset, _) = record(&state, Some(&policy), Fault::None, false, NOW);
    assert_eq!(reset.failures, 0);
    // A 4xx is the event's failure: it does not count towards opening.
    let (still, _) = record(&state, Some(&policy), Fault::Event, false, NOW);
    assert_eq!((still.failures, still.breaker), (0, None));
    let (open, change) = record(&state, Some(&policy), Fault::Destination, false, NOW);
    assert_eq!(change, Some(BreakerChange::Opened));
    assert_eq!(
        open.breaker.unwrap().probe_at,
        NOW.plus(Duration::from_secs(5))
    );
    // Without a policy it never opens.
    let (off, change) = record(&state, None, Fault::Destination, false, NOW);
    assert_eq!((off.breaker, change), (None, None));
}

#[test]
fn an_open_breaker_sends_one_probe_whose_pause_doubles_up_to_five_minutes() {
    let policy = BreakerPolicy::default();
    let mut state = FlowState {
        failures: 5,
        breaker: Some(OpenBreaker {
            since: NOW,
            probe_at: NOW.plus(Duration::from_secs(5)),
            pause: Duration::from_secs(5),
        }),
        ..FlowState::default()
    };
    let early = plan(&state, &limits(), 0, 64, NOW);
    assert_eq!(early.take, 0);
    assert_eq!(
        early.wait,
        Some(Wait::BreakerOpen(NOW.plus(Duration::from_secs(5))))
    );
    let due = NOW.plus(Duration::from_secs(5));
    let probe = plan(&state, &limits(), 0, 64, due);
    assert_eq!((probe.take, probe.probe), (1, true));
    // Not while anything runs (a probe, or an attempt from before it opened).
    assert_eq!(plan(&state, &limits(), 1, 64, due).take, 0);
    let spent = spend(&state, &limits(), 1, true, due, Duration::from_secs(30));
    assert_eq!(
        spent.breaker.unwrap().probe_at,
        due.plus(Duration::from_secs(30))
    );
    let mut pauses = Vec::new();
    for _ in 0..9 {
        let (next, change) = record(&state, Some(&policy), Fault::Destination, true, NOW);
        assert_eq!(change, None);
        pauses.push(next.breaker.unwrap().pause.as_secs());
        state = next;
    }
    assert_eq!(pauses, [10, 20, 40, 80, 160, 300, 300, 300, 300]);
    let (closed, change) = record(&state, Some(&policy), Fault::None, true, NOW);
    assert_eq!(
        (closed.breaker, closed.failures, change),
        (None, 0, Some(BreakerChange::Closed))
    );
}

#[test]
fn faults_are_the_destinations_for_no_answer_5xx_408_and_429_only() {
    assert_eq!(Fault::of(true, Some(200)), Fault::None);
    assert_eq!(Fault::of(false, None), Fault::Destination);
    for code in [500, 503, 408, 429] {
        assert_eq!(Fault::of(false, Some(code)), Fault::Destination, "{code}");
    }
    for code in [400, 401, 404, 410, 422] {
        assert_eq!(Fault::of(false, Some(code)), Fault::Event, "{code}");
    }
}

#[test]
fn a_failure_behind_an_open_breaker_is_held_not_dead_lettered() {
    let dead = Finish {
        status: EventStatus::DeadLettered,
        next_attempt_at: None,
        error: Some("connection failed".into()),
    };
    let open = FlowState {
        breaker: Some(OpenBreaker {
            since: NOW,
            probe_at: NOW,
            pause: Duration::from_secs(5),
        }),
        ..FlowState::default()
    };
    let (held, max) = hold(dead.clone(), Fault::Destination, &open, 3, 3, NOW);
    assert_eq!(held.status, EventStatus::Retrying);
    assert_eq!((held.next_attempt_at, max), (Some(NOW), 4));
    // The event's own failure counts as usual, as does any failure with the breaker closed.
    assert_eq!(hold(dead.clone(), Fault::Event, &open, 3, 3, NOW).0, dead);
    assert_eq!(
        hold(
            dead.clone(),
            Fault::Destination,
            &FlowState::default(),
            3,
            3,
            NOW
        )
        .0,
        dead
    );
}
