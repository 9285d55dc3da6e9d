//! Outcomes written as the domain settled them. (postgres)

use deadpool_postgres::{Client, GenericClient};

use super::column::Column;
use super::events::Result;
use super::flows::{read_flow, write_flow};
use crate::domain::outcomes::{self, Observed, Settled};
use crate::domain::protection::BreakerChange;
use crate::domain::time::Timestamp;
use crate::store::sql::{claimed, delivered};
use crate::store::{FinishedAttempt, Recorded};

/// Many outcomes in one commit, as the domain settles them. A batch of plain
/// successes (the common case) is one statement: the domain's reset of each
/// destination's state needs nothing read, so each delivery's new state fenced on its
/// attempt number, its attempt record, and each destination's last success and reset
/// are written together, and a breaker it closed is announced by the monitor (from
/// `recovered_from`, with the domain's recovery alert). Otherwise the destinations'
/// rows are held while the domain decides, and the decision is written with the
/// outcomes.
pub async fn finish_attempts(
    client: &mut Client,
    finished: &[FinishedAttempt],
) -> Result<Vec<Recorded>> {
    let now = Timestamp::now();
    let observed: Vec<Observed> = finished.iter().map(FinishedAttempt::observed).collect();
    if outcomes::is_plain_success(&observed) {
        let settled: Vec<Settled> = observed.iter().map(Settled::unchanged).collect();
        let (held, closed) = write_outcomes(&*client, finished, &settled, true, now).await?;
        let mut reported = std::collections::HashSet::new();
        return Ok(finished
            .iter()
            .map(|f| {
                let name = f.record.destination.as_str();
                let breaker = (held.contains(&f.delivery.0)
                    && closed.contains(name)
                    && reported.insert(name))
                .then_some(BreakerChange::Closed);
                Recorded {
                    held: held.contains(&f.delivery.0),
                    breaker,
                    status: f.status,
                }
            })
            .collect());
    }
    let tx = client.transaction().await?;
    let mut names: Vec<&str> = observed.iter().map(|o| o.destination).collect();
    names.sort_unstable();
    names.dedup();
    let mut before = std::collections::HashMap::new();
    for name in names {
        // In name order, as every writer of these rows takes them.
        before.insert(name.to_owned(), read_flow(&tx, name, true).await?);
    }
    let settlement = outcomes::settle(&observed, &before, now);
    for (name, state) in &settlement.flows {
        write_flow(&tx, name, state).await?;
    }
    let (held, _) = write_outcomes(&tx, finished, &settlement.settled, false, now).await?;
    for alert in &settlement.alerts {
        super::alerts::raise_breaker_alert(&tx, alert, now).await?;
    }
    let written = outcomes::written(&observed, &settlement.settled, |i| {
        held.contains(&finished[i].delivery.0)
    });
    for digest in &written.digests {
        super::alerts::add_dead_letters(
            &tx,
            &digest.destination,
            digest.dead,
            &digest.last_event,
            &digest.rules,
            now,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(settlement
        .settled
        .iter()
        .zip(finished)
        .map(|(settled, f)| Recorded {
            held: held.contains(&f.delivery.0),
            breaker: settled.breaker,
            status: settled.status,
        })
        .collect())
}

/// The outcomes' statement. Returns the deliveries whose lease held, and the
/// destinations whose open breaker a success closed.
pub(super) async fn write_outcomes<C: GenericClient>(
    client: &C,
    finished: &[FinishedAttempt],
    settled: &[Settled],
    plain_success: bool,
    now: Timestamp,
) -> Result<(
    std::collections::HashSet<i64>,
    std::collections::HashSet<String>,
)> {
    let statement = client
        .prepare_cached(concat!(
            "WITH f AS (
                 SELECT * FROM unnest($1::bigint[], $2::int[], $3::text[], $4::text[],
                                      $5::bigint[], $6::text[], $7::text[], $8::bigint[],
                                      $9::bigint[], $10::int[], $11::text[], $13::int[],
                                      $14::bool[])
                      AS f(seq, attempt, status, error, next_at, event_id, destination,
                           started_at, duration_us, status_code, response_body,
                           max_attempts, probe)),
             updated AS (
                 UPDATE deliveries d SET status = f.status, last_error = f.error,
                        next_attempt_at = f.next_at, lease_until = NULL,
                        attempt_started_at = NULL, updated_at = $12,
                        max_attempts = f.max_attempts
                 FROM f
                 WHERE d.seq = f.seq AND d.attempts = f.attempt AND d.status = ",
            claimed!(),
            "
                 RETURNING d.seq),
             recorded AS (
                 INSERT INTO attempts (event_id, destination, attempt, started_at,
                                       duration_us, status_code, error, response_body,
                                       probe)
                 SELECT f.event_id, f.destination, f.attempt, f.started_at, f.duration_us,
                        f.status_code, f.error, f.response_body, f.probe
                 FROM f JOIN updated u ON u.seq = f.seq),
             was_open AS (
                 SELECT name FROM destinations
                 WHERE name IN (SELECT destination FROM f) AND breaker_since IS NOT NULL),
             outcome AS (
                 INSERT INTO destinations (name, last_success_at, last_failure_at)
                 SELECT f.destination,
                        MAX(CASE WHEN f.status = ",
            delivered!(),
            " THEN $12 END),
                        MAX(CASE WHEN f.status <> ",
            delivered!(),
            " THEN $12 END)
                 FROM f JOIN updated u ON u.seq = f.seq
                 GROUP BY f.destination ORDER BY f.destination
                 ON CONFLICT (name) DO UPDATE SET
                     last_success_at = COALESCE(excluded.last_success_at,
                                                destinations.last_success_at),
                     last_failure_at = COALESCE(excluded.last_failure_at,
                                                destinations.last_failure_at),
                     -- Only all-delivered groups reach here without their breaker
                     -- decided already: a success resets the count and closes it.
                     failures = CASE WHEN $15 THEN 0 ELSE destinations.failures END,
                     breaker_since = CASE WHEN $15 THEN NULL
                                          ELSE destinations.breaker_since END,
                     probe_at = CASE WHEN $15 THEN NULL ELSE destinations.probe_at END,
                     probe_pause_us = CASE WHEN $15 THEN NULL
                                           ELSE destinations.probe_pause_us END,
                     -- The episode a success ended, for the monitor to raise its
                     -- recovery alert (an insert into alerts here would cost every
                     -- batch a fifth of its speed).
                     recovered_from = CASE
                         WHEN $15 AND $16 AND destinations.breaker_since IS NOT NULL
                         THEN destinations.breaker_since
                         ELSE destinations.recovered_from END)
             SELECT seq, NULL FROM updated
             UNION ALL SELECT NULL, name FROM was_open WHERE $15"
        ))
        .await?;
    let seqs: Vec<i64> = finished.iter().map(|f| f.delivery.0).collect();
    let attempts: Vec<i32> = finished.iter().map(|f| f.attempt as i32).collect();
    let statuses: Vec<&str> = settled.iter().map(|s| s.status.as_str()).collect();
    let errors: Vec<Option<&str>> = finished.iter().map(|f| f.record.error.as_deref()).collect();
    let next: Vec<Option<i64>> = settled
        .iter()
        .map(|s| s.next_attempt_at.map(|t| t.0))
        .collect();
    let events: Vec<&str> = finished.iter().map(|f| f.event_id.as_str()).collect();
    let destinations: Vec<&str> = finished
        .iter()
        .map(|f| f.record.destination.as_str())
        .collect();
    let started: Vec<i64> = finished.iter().map(|f| f.record.started_at.0).collect();
    let durations: Vec<i64> = finished
        .iter()
        .map(|f| f.record.duration.as_micros() as i64)
        .collect();
    let codes: Vec<Option<i32>> = finished
        .iter()
        .map(|f| f.record.status_code.map(i32::from))
        .collect();
    let bodies: Vec<Option<&str>> = finished
        .iter()
        .map(|f| f.record.response_body.as_deref())
        .collect();
    let max_attempts: Vec<i32> = settled
        .iter()
        .map(|s| s.max_attempts.min(i32::MAX as u32) as i32)
        .collect();
    let probes: Vec<bool> = finished.iter().map(|f| f.record.probe).collect();
    let all_delivered = plain_success;
    let alerts = finished.iter().any(|f| f.alerts.is_some());
    let rows = client
        .query(
            &statement,
            &[
                &seqs,
                &attempts,
                &statuses,
                &errors,
                &next,
                &events,
                &destinations,
                &started,
                &durations,
                &codes,
                &bodies,
                &now.0,
                &max_attempts,
                &probes,
                &all_delivered,
                &alerts,
            ],
        )
        .await?;
    let mut held = std::collections::HashSet::new();
    let mut closed = std::collections::HashSet::new();
    for row in &rows {
        if let Some(seq) = row.col::<Option<i64>>(0)? {
            held.insert(seq);
        }
        if let Some(name) = row.col::<Option<String>>(1)? {
            closed.insert(name);
        }
    }
    Ok((held, closed))
}
