//! Claims: due deliveries leased within their destinations' limits, expired leases
//! reclaimed, leases renewed or handed back. (sqlite)

use std::time::Duration;

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, params};

use super::events::insert_attempt;
use super::flows::{in_flight_of, mark_throttled, read_flow, write_flow};
use crate::domain::event::EventId;
use crate::domain::lifecycle::{self, CLAIMED, Expiry};
use crate::domain::protection::{self, Wait};
use crate::domain::time::Timestamp;
use crate::store::sql::{Guard, claimable, claimed, ordering_clause};
use crate::store::{
    AttemptRecord, Claim, ClaimRequest, ClaimedDelivery, DeliveryId, ReclaimedDelivery, Want,
};

/// Expired leases handled per claim; the rest wait for the next one.
pub(super) const RECLAIM_BATCH: usize = 100;

/// Leases due deliveries to each destination wanted, as its state and limits allow.
/// Expired leases are failed first when slots would stay free or `sweep` says it is
/// time; the earliest future work is read for destinations that will go idle.
pub fn claim(conn: &Connection, request: &ClaimRequest, sweep: bool) -> rusqlite::Result<Claim> {
    let now = Timestamp::now();
    let mut claim = Claim::default();
    let mut idle = false;
    for want in &request.wants {
        // A destination without limits takes everything wanted unless it is paused or
        // its breaker is open: one statement leases, guarded by that state. Nothing
        // leased (nothing due, or held back) takes the full path below.
        if !want.limits.shared() {
            let leased = lease_due(conn, now, want, want.limit, request.lease, Guard::FlowOpen)?;
            if !leased.is_empty() {
                if leased.len() < want.limit {
                    idle = true;
                    let due = next_due_for(conn, &want.destination, now)?;
                    claim.next_due = earliest(claim.next_due, due);
                }
                claim.deliveries.extend(leased);
                continue;
            }
        }
        // Nothing due (the common answer for a destination asked again after a wake-up):
        // one indexed look, and its next due time is the answer.
        let first = first_due(conn, &want.destination)?;
        if first.is_none_or(|due| due > now) {
            idle = true;
            claim.next_due = earliest(claim.next_due, first);
            continue;
        }
        let (leased, wait, goes_idle) = claim_for(conn, want, request.lease, now)?;
        if let Some(wait) = wait {
            claim.waits.push((want.destination.clone(), wait));
        }
        if goes_idle {
            idle = true;
            let due = next_due_for(conn, &want.destination, now)?;
            claim.next_due = earliest(claim.next_due, due);
        }
        claim.deliveries.extend(leased);
    }
    // Expired leases are rare: looked for when the claim found nothing to do, and while
    // workers are busy at the sweep clock's pace. (An idle destination's lane beside a
    // busy one is no reason to look on every claim.)
    if claim.deliveries.is_empty() || sweep {
        claim.reclaimed = fail_expired_leases(conn, now)?;
        if !claim.reclaimed.is_empty() {
            // Due again at once (or dead-lettered): claim again now.
            claim.next_due = Some(now);
        }
    }
    if idle {
        let leases: Option<i64> = conn
            .prepare_cached(
                "SELECT MIN(lease_until) FROM deliveries WHERE lease_until IS NOT NULL",
            )?
            .query_row([], |row| row.get(0))?;
        claim.next_due = earliest(claim.next_due, leases.map(Timestamp));
    }
    Ok(claim)
}

pub(super) fn earliest(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// One destination's part of a claim: what it leased, why the rest waits, and
/// whether it will go idle (fewer due than wanted, not waiting).
pub(super) fn claim_for(
    conn: &Connection,
    want: &Want,
    lease: Duration,
    now: Timestamp,
) -> rusqlite::Result<(Vec<ClaimedDelivery>, Option<Wait>, bool)> {
    let state = read_flow(conn, &want.destination)?;
    let counts = want.limits.max_in_flight.is_some() || state.breaker.is_some();
    let in_flight = if counts {
        in_flight_of(conn, &want.destination)?
    } else {
        0
    };
    let plan = protection::plan(&state, &want.limits, in_flight, want.limit, now);
    let mut leased = if plan.take > 0 {
        lease_due(conn, now, want, plan.take, lease, Guard::Planned)?
    } else {
        Vec::new()
    };
    if plan.probe {
        for delivery in &mut leased {
            delivery.probe = true;
        }
    }
    let mut wait = plan.wait;
    if want.limits.rate.is_some() || plan.probe {
        let spent = protection::spend(&state, &want.limits, leased.len(), plan.probe, now, lease);
        write_flow(conn, &want.destination, &spent)?;
    }
    if matches!(wait, Some(Wait::Throttled(_) | Wait::InFlight)) {
        mark_throttled(conn, &want.destination, now)?;
    }
    // Ordered: due deliveries whose keys are busy wait for an attempt to finish.
    if wait.is_none() && want.limits.ordered.is_some() && leased.len() < plan.take {
        let due_waiting = conn
            .prepare_cached(concat!(
                "SELECT 1 FROM deliveries WHERE destination = ?1 AND status IN ",
                claimable!(),
                " AND next_attempt_at <= ?2 LIMIT 1"
            ))?
            .exists(params![want.destination, now.0])?;
        if due_waiting {
            wait = Some(Wait::InFlight);
        }
    }
    let idle = wait.is_none() && leased.len() < want.limit;
    Ok((leased, wait, idle))
}

pub(super) const FLOW_OPEN: &str = "AND NOT EXISTS (SELECT 1 FROM destinations
         WHERE name = ?5 AND (paused <> 0 OR breaker_since IS NOT NULL))";

/// The lease's SQL. The guard stands outside the subquery: inside, SQLite would walk
/// the destination's whole due index checking it on each row before finding none
/// (122 ms a claim with 800,000 waiting behind an open breaker); outside, it checks
/// at most `LIMIT` rows. The destination and the limit are written `+?5` and `+?3`: SQLite
/// (built with STAT4) plans with the values bound to a bare `destination = ?` and
/// `LIMIT ?` here, and then prepares the statement again every time it is reused (each
/// claim's free slots differ). The unary plus keeps one plan, the same one, for all.
pub(super) fn lease_statement(want: &Want, guard: Guard) -> String {
    let guard = match guard {
        Guard::Planned => "",
        Guard::FlowOpen => FLOW_OPEN,
    };
    format!(
        "UPDATE deliveries
         SET status = ?4, attempts = attempts + 1, attempt_started_at = ?1,
             lease_until = ?2, updated_at = ?1
         WHERE seq IN (SELECT d.seq FROM deliveries d
                       WHERE d.destination = +?5 AND d.status IN {} AND d.next_attempt_at <= ?1
                       {}
                       ORDER BY d.next_attempt_at LIMIT +?3)
         {guard}
         RETURNING seq, event_id, destination, attempts, max_attempts, attempts_at_replay,
                   ordering_key",
        claimable!(),
        ordering_clause(want.limits.ordered),
    )
}

pub(super) fn lease_due(
    conn: &Connection,
    now: Timestamp,
    want: &Want,
    limit: usize,
    lease: Duration,
    guard: Guard,
) -> rusqlite::Result<Vec<ClaimedDelivery>> {
    let lease_until = now.plus(lease);
    let mut statement = conn.prepare_cached(&lease_statement(want, guard))?;
    let leased = statement
        .query_map(
            params![
                now.0,
                lease_until.0,
                limit as i64,
                CLAIMED.as_str(),
                want.destination
            ],
            |row| {
                Ok((
                    DeliveryId(row.get(0)?),
                    EventId::from_stored(row.get(1)?),
                    row.get::<_, String>(2)?,
                    row.get::<_, u32>(3)?,
                    row.get::<_, u32>(4)?,
                    row.get::<_, u32>(5)?,
                    row.get::<_, Option<String>>(6)?,
                ))
            },
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut event = conn.prepare_cached(
        "SELECT source, content_type, headers, body, created_at, event_type, trace_context
         FROM events WHERE id = ?1",
    )?;
    let mut deliveries = Vec::with_capacity(leased.len());
    for (
        delivery,
        event_id,
        destination,
        attempt,
        max_attempts,
        attempts_at_replay,
        ordering_key,
    ) in leased
    {
        // The event and its deliveries are written and deleted together; should one
        // ever be missing, its lease runs out and the attempt counts as failed.
        let Some((source, content_type, headers, body, created_at, event_type, trace_context)) =
            event
                .query_row([event_id.as_str()], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, Option<String>>(1)?,
                        row.get::<_, String>(2)?,
                        row.get::<_, Vec<u8>>(3)?,
                        row.get::<_, i64>(4)?,
                        row.get::<_, Option<String>>(5)?,
                        row.get::<_, Option<String>>(6)?,
                    ))
                })
                .optional()?
        else {
            continue;
        };
        deliveries.push(ClaimedDelivery {
            delivery,
            event_id,
            destination,
            received_at: Timestamp(created_at),
            source,
            attempt,
            max_attempts,
            attempts_at_replay,
            content_type,
            headers,
            body: Bytes::from(body),
            event_type,
            ordering_key,
            trace_context,
            probe: false,
        });
    }
    Ok(deliveries)
}

/// An attempt whose lease ran out counts as failed, so that a delivery which kills its
/// worker cannot loop forever; it is due again at once, or dead-lettered.
pub(super) fn fail_expired_leases(
    conn: &Connection,
    now: Timestamp,
) -> rusqlite::Result<Vec<ReclaimedDelivery>> {
    let expired = conn
        .prepare_cached(concat!(
            "SELECT seq, event_id, destination, attempts, max_attempts, attempt_started_at
             FROM deliveries
             WHERE lease_until <= ?1 AND status = ",
            claimed!(),
            "
             ORDER BY lease_until LIMIT ?2"
        ))?
        .query_map(params![now.0, RECLAIM_BATCH as i64], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                EventId::from_stored(row.get(1)?),
                row.get::<_, String>(2)?,
                row.get::<_, u32>(3)?,
                row.get::<_, u32>(4)?,
                row.get::<_, Option<i64>>(5)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut reclaimed = Vec::with_capacity(expired.len());
    for (seq, event_id, destination, attempt, max_attempts, started_at) in expired {
        let started_at = Timestamp(started_at.unwrap_or(now.0));
        let Expiry {
            status,
            error,
            next_attempt_at,
        } = lifecycle::expire(attempt, max_attempts, now);
        // Fenced on the attempt whose lease ran out.
        conn.prepare_cached(concat!(
            "UPDATE deliveries SET status = ?2, last_error = ?3, next_attempt_at = ?4,
                    lease_until = NULL, attempt_started_at = NULL, updated_at = ?5
             WHERE seq = ?1 AND attempts = ?6 AND status = ",
            claimed!()
        ))?
        .execute(params![
            seq,
            status.as_str(),
            error,
            next_attempt_at.map(|t| t.0),
            now.0,
            attempt,
        ])?;
        insert_attempt(
            conn,
            &event_id,
            &AttemptRecord {
                destination: destination.clone(),
                attempt,
                started_at,
                duration: started_at.until(now),
                status_code: None,
                error: Some(error),
                response_body: None,
                probe: false,
            },
        )?;
        reclaimed.push(ReclaimedDelivery {
            event_id,
            destination,
            attempt,
            status,
        });
    }
    Ok(reclaimed)
}

/// When the destination's next delivery not yet due becomes due.
/// When the destination's earliest unfinished delivery is (or was) due.
pub(super) fn first_due(
    conn: &Connection,
    destination: &str,
) -> rusqlite::Result<Option<Timestamp>> {
    let due: Option<i64> = conn
        .prepare_cached(concat!(
            "SELECT MIN(next_attempt_at) FROM deliveries WHERE destination = ?1 AND status IN ",
            claimable!()
        ))?
        .query_row([destination], |row| row.get(0))?;
    Ok(due.map(Timestamp))
}

pub(super) fn next_due_for(
    conn: &Connection,
    destination: &str,
    now: Timestamp,
) -> rusqlite::Result<Option<Timestamp>> {
    let due: Option<i64> = conn
        .prepare_cached(concat!(
            "SELECT MIN(next_attempt_at) FROM deliveries WHERE destination = ?1 AND status IN ",
            claimable!(),
            " AND next_attempt_at > ?2"
        ))?
        .query_row(params![destination, now.0], |row| row.get(0))?;
    Ok(due.map(Timestamp))
}

pub fn renew_leases(
    conn: &Connection,
    attempts: &[(DeliveryId, u32)],
    lease: Duration,
) -> rusqlite::Result<usize> {
    let lease_until = Timestamp::now().plus(lease);
    let mut statement = conn.prepare_cached(concat!(
        "UPDATE deliveries SET lease_until = ?3
         WHERE seq = ?1 AND attempts = ?2 AND status = ",
        claimed!()
    ))?;
    let mut renewed = 0;
    for (delivery, attempt) in attempts {
        renewed += statement.execute(params![delivery.0, attempt, lease_until.0])?;
    }
    Ok(renewed)
}

pub fn release(conn: &Connection, delivery: DeliveryId, attempt: u32) -> rusqlite::Result<()> {
    let now = Timestamp::now().0;
    let release = lifecycle::release(attempt);
    conn.prepare_cached(concat!(
        "UPDATE deliveries
         SET status = ?4, attempts = ?5, next_attempt_at = ?3, lease_until = NULL,
             attempt_started_at = NULL, updated_at = ?3
         WHERE seq = ?1 AND attempts = ?2 AND status = ",
        claimed!()
    ))?
    .execute(params![
        delivery.0,
        attempt,
        now,
        release.status.as_str(),
        release.attempts,
    ])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use rusqlite::StatementStatus;

    use super::*;
    use crate::domain::protection::{Limits, OnDeadLetter};

    fn with_due_deliveries(count: usize) -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        super::super::migrate(&conn).unwrap();
        for n in 0..count {
            let id = format!("evt_{n}");
            conn.execute(
                "INSERT INTO events (id, source, idempotency_key, created_at, headers, body)
                 VALUES (?1, 'stripe', ?1, 0, '[]', x'7b7d')",
                [&id],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO deliveries (event_id, destination, status, max_attempts,
                                         next_attempt_at, updated_at, ordering_key)
                 VALUES (?1, 'app', 'queued', 5, 0, 0, ?1)",
                [&id],
            )
            .unwrap();
        }
        conn
    }

    /// Behind an open breaker, the guarded lease leases nothing in a number of steps
    /// that does not grow with the backlog.
    #[test]
    fn a_held_back_lease_costs_the_same_whatever_waits() {
        let steps = |backlog: usize| {
            let conn = with_due_deliveries(backlog);
            conn.execute(
                "INSERT INTO destinations (name, failures, breaker_since, probe_at)
                 VALUES ('app', 5, 1, 9000000000000000)",
                [],
            )
            .unwrap();
            let want = Want {
                destination: "app".into(),
                limit: 64,
                limits: Limits::default(),
            };
            let leased = lease_due(
                &conn,
                Timestamp::now(),
                &want,
                64,
                Duration::from_secs(30),
                Guard::FlowOpen,
            )
            .unwrap();
            assert!(leased.is_empty());
            let statement = conn
                .prepare_cached(&lease_statement(&want, Guard::FlowOpen))
                .unwrap();
            statement.get_status(StatementStatus::VmStep)
        };
        let (small, large) = (steps(100), steps(3_000));
        assert!(
            large < small * 2,
            "{small} steps for 100 waiting, {large} for 3,000"
        );
    }

    /// Each claim asks for its free slots, so the limit changes from one lease to the
    /// next: the statement must keep its plan rather than be prepared again each time.
    #[test]
    fn a_lease_is_not_prepared_again_from_one_claim_to_the_next() {
        let unordered = Limits::default();
        let ordered = Limits {
            ordered: Some(OnDeadLetter::Skip),
            ..Limits::default()
        };
        for (limits, guard) in [
            (unordered, Guard::FlowOpen),
            (unordered, Guard::Planned),
            (ordered, Guard::Planned),
        ] {
            let conn = with_due_deliveries(20);
            let want = Want {
                destination: "app".into(),
                limit: 8,
                limits,
            };
            for limit in [1, 3, 2, 4] {
                let leased = lease_due(
                    &conn,
                    Timestamp::now(),
                    &want,
                    limit,
                    Duration::from_secs(30),
                    guard,
                )
                .unwrap();
                assert_eq!(leased.len(), limit);
            }
            let statement = conn.prepare_cached(&lease_statement(&want, guard)).unwrap();
            assert_eq!(statement.get_status(StatementStatus::RePrepare), 0);
        }
    }
}
