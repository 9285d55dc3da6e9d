//! One attempt: run it, then record its outcome and schedule what comes next.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tracing::Span;

use super::attempt_span;
use super::publish::{Delivery, Publishers};
use super::settings::{InFlight, WorkerSettings};
use super::simulate;
use crate::config::destinations::BUILT_IN;
use crate::domain::lifecycle::{self, AttemptOutcome, EventStatus, Finish};
use crate::domain::protection::{BreakerChange, Fault};
use crate::domain::time::Timestamp;
use crate::store::{AttemptRecord, ClaimedDelivery, DeliveryQueue, FinishedAttempt};

/// The first pause before recording an outcome again; it doubles up to the most.
const RECORD_RETRY_DELAY: Duration = Duration::from_millis(200);
const RECORD_RETRY_MOST: Duration = Duration::from_secs(2);

pub struct Context {
    pub store: Arc<dyn DeliveryQueue>,
    pub recorder: super::recorder::Recorder,
    pub publishers: Arc<Publishers>,
    pub settings: Arc<WorkerSettings>,
    pub in_flight: InFlight,
    pub shutdown: CancellationToken,
}

/// Runs one attempt. Its log lines are written inside a span naming the event, its
/// source and the destination, so that each carries them (an error-level span:
/// rendered whatever the filter). The span is entered only to log, not on every poll
/// of the delivery: that would cost more than the lines it labels.
/// The request waits for `slot` (the destination's request slot, held until the
/// request is over); `sent` is called once it is over, before its outcome is written.
pub async fn run(
    context: Context,
    event: ClaimedDelivery,
    slot: impl Future<Output = Option<OwnedSemaphorePermit>>,
    sent: impl FnOnce(),
) {
    let destination = context.settings.destinations.get(&event.destination);
    let span = attempt_span::start(&event, destination.map(|d| &**d), context.settings.tracing);
    run_in_span(context, event, slot, sent, &span).await
}

async fn run_in_span(
    context: Context,
    event: ClaimedDelivery,
    slot: impl Future<Output = Option<OwnedSemaphorePermit>>,
    sent: impl FnOnce(),
    span: &Span,
) {
    // Its lease is renewed from here on, while it waits for a slot as while it runs.
    if let Ok(mut map) = context.in_flight.lock() {
        map.insert(event.delivery, event.attempt);
    }
    let attempted = deliver_in_slot(&context, &event, slot, span).await;
    sent();
    let Some(attempted) = attempted else {
        forget_lease(&context, &event);
        release(&context, &event, span).await;
        return;
    };
    let finished = decide(&context, &event, attempted);
    let error = finished.record.error.clone();
    let next_attempt_at = finished.next_attempt_at;
    let duration = finished.record.duration;
    // The lease is renewed until the outcome is written: a database that is back
    // after a restart takes the outcome, rather than the delivery being sent again.
    let recorded = record(&context, finished, span).await;
    forget_lease(&context, &event);
    if let Some(recorded) = recorded {
        report(
            &context,
            &event,
            &recorded,
            duration,
            error.as_deref(),
            next_attempt_at,
            span,
        );
    }
}

/// What an attempt got back, and when it started and how long it took.
struct Attempted {
    delivery: Delivery,
    started_at: Timestamp,
    duration: Duration,
}

/// Waits for a request slot and delivers. `None` when stopping first.
async fn deliver_in_slot(
    context: &Context,
    event: &ClaimedDelivery,
    slot: impl Future<Output = Option<OwnedSemaphorePermit>>,
    span: &Span,
) -> Option<Attempted> {
    let _held = tokio::select! {
        slot = slot => slot,
        // Stopping: handed back without an attempt.
        () = context.shutdown.cancelled() => return None,
    };
    span.in_scope(|| tracing::debug!(attempt = event.attempt, "Processing event"));
    let started_at = Timestamp::now();
    let clock = Instant::now();
    let delivery = run_attempt(context, event, span).await?;
    attempt_span::finish(span, &delivery);
    Some(Attempted {
        delivery,
        started_at,
        duration: clock.elapsed(),
    })
}

/// Where the attempt leaves the delivery, as this worker sees it alone (the store
/// settles it with its destination's breaker).
fn decide(context: &Context, event: &ClaimedDelivery, attempted: Attempted) -> FinishedAttempt {
    let Attempted {
        delivery,
        started_at,
        duration,
    } = attempted;
    let outcome = delivery.outcome;
    let configured = context.settings.destinations.get(&event.destination);
    let retry = match configured {
        Some(destination) => destination.retry(&context.settings.retry),
        None => context.settings.retry,
    };
    let fault = delivery.fault;
    let backoff = retry.delay(event.attempt_in_round());
    let Finish {
        status,
        next_attempt_at,
        error,
    } = lifecycle::finish(
        &outcome,
        event.attempt,
        event.max_attempts,
        backoff,
        Timestamp::now(),
    );
    FinishedAttempt {
        delivery: event.delivery,
        event_id: event.event_id.clone(),
        attempt: event.attempt,
        max_attempts: event.max_attempts,
        fault,
        breaker: configured.and_then(|d| d.limits.breaker),
        alerts: context.settings.alerts.as_ref().map(|a| a.rules()),
        status,
        record: AttemptRecord {
            destination: event.destination.clone(),
            attempt: event.attempt,
            started_at,
            duration,
            status_code: delivery.status_code,
            error,
            response_body: delivery.response_body,
            probe: event.probe,
        },
        next_attempt_at,
    }
}

/// Logs and counts what was written.
fn report(
    context: &Context,
    event: &ClaimedDelivery,
    recorded: &Written,
    duration: Duration,
    error: Option<&str>,
    next_attempt_at: Option<Timestamp>,
    span: &Span,
) {
    // What the store decided: a failure behind an open breaker is held, not spent.
    let status = recorded.status;
    if let Some(change) = recorded.breaker {
        span.in_scope(|| log_breaker(&event.destination, change));
    }
    let metrics = &context.settings.metrics;
    metrics.attempt(&event.destination, status.as_str(), duration.as_secs_f64());
    if status == EventStatus::Delivered {
        metrics.delivered_after(event.received_at.until(Timestamp::now()).as_secs_f64());
    }
    span.in_scope(|| log_outcome(event, status, duration, error, next_attempt_at));
    if status == EventStatus::Retrying {
        // The claim loop may be asleep until a later moment; a retry may be due
        // sooner than that.
        context.store.work_signal().notify_one();
    }
}

/// Delivers to the delivery's destination, or hands the event to the built-in
/// processor. `None` when shutdown interrupted the attempt.
async fn run_attempt(context: &Context, event: &ClaimedDelivery, span: &Span) -> Option<Delivery> {
    if let Some(destination) = context.settings.destinations.get(&event.destination) {
        let trace = attempt_span::carried(span, event, destination, context.settings.tracing);
        // A stopping worker hands the attempt back rather than wait for the
        // destination: it does not count, and another worker takes the delivery.
        return tokio::select! {
            delivery = context.publishers.send(destination, event, trace.as_deref()) => Some(delivery),
            () = context.shutdown.cancelled() => None,
        };
    }
    let outcome = if event.destination != BUILT_IN {
        // It was routed to the application; marking it delivered here would lose it.
        AttemptOutcome::Failed {
            error: format!(
                "destination {} is not in this worker's configuration",
                event.destination
            ),
            retry_after: None,
        }
    } else {
        simulate::process(event, &context.shutdown).await?
    };
    Some(Delivery {
        fault: Fault::of(outcome == AttemptOutcome::Delivered, None),
        outcome,
        status_code: None,
        response_body: None,
    })
}

fn log_breaker(destination: &str, change: BreakerChange) {
    match change {
        BreakerChange::Opened => tracing::warn!(
            destination,
            "Destination keeps failing: breaker opened; deliveries wait (no attempts used) \
             and a probe will be sent"
        ),
        BreakerChange::Closed => tracing::info!(
            destination,
            "Destination answers again: breaker closed; the backlog drains"
        ),
    }
}

/// What was written for an attempt.
struct Written {
    status: EventStatus,
    breaker: Option<BreakerChange>,
}

/// No more lease renewals for this attempt.
fn forget_lease(context: &Context, event: &ClaimedDelivery) {
    if let Ok(mut map) = context.in_flight.lock() {
        map.remove(&event.delivery);
    }
}

/// Writes the outcome. A store outage is waited out for as long as the lease lasts
/// (it is renewed meanwhile, once the store answers again); past that, the lease's
/// expiry makes the attempt count as failed and the event is tried again. `None`
/// when it was not written.
async fn record(context: &Context, finished: FinishedAttempt, span: &Span) -> Option<Written> {
    let give_up = Instant::now() + context.settings.lease;
    let mut pause = RECORD_RETRY_DELAY;
    while Instant::now() < give_up {
        match context.recorder.record(finished.clone()).await {
            Ok(recorded) if recorded.held => {
                return Some(Written {
                    status: recorded.status,
                    breaker: recorded.breaker,
                });
            }
            Ok(_) => {
                let _entered = span.enter();
                tracing::warn!(
                    attempt = finished.attempt,
                    "Lease was lost before the outcome was recorded; the event will be retried"
                );
                return None;
            }
            Err(error) => {
                span.in_scope(|| {
                    tracing::error!(
                        error = &error as &dyn std::error::Error,
                        "Recording an attempt failed"
                    )
                });
                // A stopping worker leaves it to the lease's expiry.
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = context.shutdown.cancelled() => return None,
                }
                pause = (pause * 2).min(RECORD_RETRY_MOST);
            }
        }
    }
    None
}

async fn release(context: &Context, event: &ClaimedDelivery, span: &Span) {
    let released = context.store.release(event.delivery, event.attempt).await;
    let _entered = span.enter();
    match released {
        Ok(()) => tracing::info!(
            attempt = event.attempt,
            "Attempt interrupted by shutdown; delivery handed back"
        ),
        Err(error) => tracing::error!(
            error = &error as &dyn std::error::Error,
            "Handing back an interrupted attempt failed; its lease will expire"
        ),
    }
}

fn log_outcome(
    event: &ClaimedDelivery,
    status: EventStatus,
    duration: Duration,
    error: Option<&str>,
    next_attempt_at: Option<Timestamp>,
) {
    let duration_ms = crate::domain::time::millis(duration);
    match status {
        EventStatus::Delivered => tracing::info!(
            total_attempts = event.attempt,
            duration_ms,
            "Event delivered"
        ),
        EventStatus::Retrying => tracing::warn!(
            attempt = event.attempt,
            error = error.unwrap_or_default(),
            next_retry_at = next_attempt_at
                .map(Timestamp::to_rfc3339)
                .unwrap_or_default(),
            "Attempt failed; retry scheduled"
        ),
        _ => tracing::error!(
            total_attempts = event.attempt,
            error = error.unwrap_or_default(),
            "Event dead-lettered"
        ),
    }
}
