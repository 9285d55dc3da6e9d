//! Claims: due deliveries leased within their destinations' limits, expired leases
//! reclaimed, leases renewed or handed back. (postgres)

use std::time::Duration;

use bytes::Bytes;
use deadpool_postgres::{Client, GenericClient, Transaction};

use super::column::Column;
use super::events::Result;
use super::events::insert_attempt;
use super::flows::{in_flight_of, read_flow, write_flow};
use crate::domain::event::EventId;
use crate::domain::lifecycle::{self, CLAIMED, Expiry};
use crate::domain::protection::{self, Wait};
use crate::domain::time::Timestamp;
use crate::store::sql::{Guard, claimable, claimed, ordering_clause};
use crate::store::{
    AttemptRecord, Claim, ClaimRequest, ClaimedDelivery, DeliveryId, ReclaimedDelivery, Want,
};

/// Expired leases handled per claim; the rest wait for the next one.
pub(super) const RECLAIM_BATCH: i64 = 100;

/// Leases due deliveries to each destination wanted, as its state and limits allow.
/// A destination with shared limits (or an open breaker) is claimed in a transaction
/// holding its row, so that workers in every process take turns; one without is
/// leased in one statement. Expired leases are failed when slots would stay free or
/// `sweep` says it is time; the earliest future work is read for destinations that
/// will go idle.
pub async fn claim(client: &mut Client, request: &ClaimRequest, sweep: bool) -> Result<Claim> {
    let now = Timestamp::now();
    let mut claim = Claim::default();
    let mut idle = false;
    for want in &request.wants {
        // A destination without limits takes everything wanted unless it is paused or
        // its breaker is open: one statement leases, guarded by that state. Nothing
        // leased (nothing due, or held back) takes the full path below.
        if !want.limits.shared() {
            let leased = lease_due(
                &*client,
                now,
                want,
                want.limit,
                request.lease,
                Guard::FlowOpen,
            )
            .await?;
            if !leased.is_empty() {
                if leased.len() < want.limit {
                    idle = true;
                    let due = next_due_for(client, &want.destination, now).await?;
                    claim.next_due = earliest(claim.next_due, due);
                }
                claim.deliveries.extend(leased);
                continue;
            }
        }
        let (leased, wait, goes_idle) = claim_for(client, want, request.lease, now).await?;
        if let Some(wait) = wait {
            claim.waits.push((want.destination.clone(), wait));
        }
        if goes_idle {
            idle = true;
            let due = next_due_for(client, &want.destination, now).await?;
            claim.next_due = earliest(claim.next_due, due);
        }
        claim.deliveries.extend(leased);
    }
    // Expired leases are rare: looked for when the claim found nothing to do, and while
    // workers are busy at the sweep clock's pace. (An idle destination's lane beside a
    // busy one is no reason to look on every claim.)
    if claim.deliveries.is_empty() || sweep {
        let tx = client.transaction().await?;
        claim.reclaimed = fail_expired_leases(&tx, now).await?;
        tx.commit().await?;
        if !claim.reclaimed.is_empty() {
            claim.next_due = Some(now);
        }
    }
    if idle {
        // ORDER BY … LIMIT 1 rather than MIN(): a cached generic plan may otherwise
        // aggregate over every lease instead of reading one entry.
        let statement = client
            .prepare_cached(
                "SELECT lease_until FROM deliveries WHERE lease_until IS NOT NULL
                 ORDER BY lease_until LIMIT 1",
            )
            .await?;
        let leases = client.query_opt(&statement, &[]).await?;
        if let Some(row) = leases {
            claim.next_due = earliest(claim.next_due, Some(Timestamp(row.col(0)?)));
        }
    }
    Ok(claim)
}

pub(super) fn earliest(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

pub(super) async fn next_due_for(
    client: &Client,
    destination: &str,
    now: Timestamp,
) -> Result<Option<Timestamp>> {
    let statement = client
        .prepare_cached(concat!(
            "SELECT next_attempt_at FROM deliveries WHERE destination = $1 AND status IN ",
            claimable!(),
            " AND next_attempt_at > $2 ORDER BY next_attempt_at LIMIT 1"
        ))
        .await?;
    Ok(client
        .query_opt(&statement, &[&destination, &now.0])
        .await?
        .map(|row| row.col(0))
        .transpose()?
        .map(Timestamp))
}

/// One destination's part of a claim: what it leased, why the rest waits, and
/// whether it will go idle (fewer due than wanted, not waiting).
pub(super) async fn claim_for(
    client: &mut Client,
    want: &Want,
    lease: Duration,
    now: Timestamp,
) -> Result<(Vec<ClaimedDelivery>, Option<Wait>, bool)> {
    let state = read_flow(&*client, &want.destination, false).await?;
    if !want.limits.shared() && state.breaker.is_none() {
        // The common case: nothing to count or share; the pause is all that matters.
        let plan = protection::plan(&state, &want.limits, 0, want.limit, now);
        let leased = if plan.take > 0 {
            lease_due(&*client, now, want, plan.take, lease, Guard::Planned).await?
        } else {
            Vec::new()
        };
        let idle = plan.wait.is_none() && leased.len() < want.limit;
        return Ok((leased, plan.wait, idle));
    }
    let tx = client.transaction().await?;
    let state = read_flow(&tx, &want.destination, true).await?;
    let counts = want.limits.max_in_flight.is_some() || state.breaker.is_some();
    let in_flight = if counts {
        in_flight_of(&tx, &want.destination).await?
    } else {
        0
    };
    let plan = protection::plan(&state, &want.limits, in_flight, want.limit, now);
    let mut leased = if plan.take > 0 {
        lease_due(&tx, now, want, plan.take, lease, Guard::Planned).await?
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
        write_flow(&tx, &want.destination, &spent).await?;
    }
    if matches!(wait, Some(Wait::Throttled(_) | Wait::InFlight)) {
        let statement = tx
            .prepare_cached("UPDATE destinations SET throttled_at = $2 WHERE name = $1")
            .await?;
        tx.execute(&statement, &[&want.destination, &now.0]).await?;
    }
    if wait.is_none() && want.limits.ordered.is_some() && leased.len() < plan.take {
        let statement = tx
            .prepare_cached(concat!(
                "SELECT 1 FROM deliveries WHERE destination = $1 AND status IN ",
                claimable!(),
                " AND next_attempt_at <= $2 LIMIT 1"
            ))
            .await?;
        if tx
            .query_opt(&statement, &[&want.destination, &now.0])
            .await?
            .is_some()
        {
            wait = Some(Wait::InFlight);
        }
    }
    tx.commit().await?;
    let idle = wait.is_none() && leased.len() < want.limit;
    Ok((leased, wait, idle))
}

pub(super) const FLOW_OPEN: &str = "AND NOT EXISTS (SELECT 1 FROM destinations
         WHERE name = $5 AND (paused OR breaker_since IS NOT NULL))";

/// One statement: lease due deliveries of one destination and read their events.
pub(super) async fn lease_due<C: GenericClient>(
    client: &C,
    now: Timestamp,
    want: &Want,
    limit: usize,
    lease: Duration,
    guard: Guard,
) -> Result<Vec<ClaimedDelivery>> {
    let guard = match guard {
        Guard::Planned => "",
        Guard::FlowOpen => FLOW_OPEN,
    };
    let statement = client
        .prepare_cached(&format!(
            "WITH leased AS (
                 UPDATE deliveries
                 SET status = $4, attempts = attempts + 1, attempt_started_at = $1,
                     lease_until = $2, updated_at = $1
                 WHERE seq IN (SELECT d.seq FROM deliveries d
                               WHERE d.destination = $5 AND d.status IN {}
                                 AND d.next_attempt_at <= $1
                               {} {guard}
                               ORDER BY d.next_attempt_at LIMIT $3
                               FOR UPDATE SKIP LOCKED)
                 RETURNING seq, event_id, destination, attempts, max_attempts,
                           attempts_at_replay, ordering_key)
             SELECT l.seq, l.event_id, l.destination, l.attempts, l.max_attempts,
                    l.attempts_at_replay, e.source, e.content_type, e.headers, e.body,
                    e.created_at, e.event_type, l.ordering_key, e.trace_context
             FROM leased l JOIN events e ON e.id = l.event_id",
            claimable!(),
            ordering_clause(want.limits.ordered),
        ))
        .await?;
    let rows = client
        .query(
            &statement,
            &[
                &now.0,
                &now.plus(lease).0,
                &(limit as i64),
                &CLAIMED.as_str(),
                &want.destination,
            ],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(ClaimedDelivery {
                delivery: DeliveryId(row.col(0)?),
                event_id: EventId::from_stored(row.col(1)?),
                destination: row.col(2)?,
                attempt: row.col::<i32>(3)? as u32,
                max_attempts: row.col::<i32>(4)? as u32,
                attempts_at_replay: row.col::<i32>(5)? as u32,
                source: row.col(6)?,
                content_type: row.col(7)?,
                headers: row.col(8)?,
                body: Bytes::from(row.col::<Vec<u8>>(9)?),
                received_at: Timestamp(row.col(10)?),
                event_type: row.col(11)?,
                ordering_key: row.col(12)?,
                trace_context: row.col(13)?,
                probe: false,
            })
        })
        .collect()
}

/// An attempt whose lease ran out counts as failed, so that a delivery which kills its
/// worker cannot loop forever; it is due again at once, or dead-lettered.
pub(super) async fn fail_expired_leases(
    tx: &Transaction<'_>,
    now: Timestamp,
) -> Result<Vec<ReclaimedDelivery>> {
    let select = tx
        .prepare_cached(concat!(
            "SELECT seq, event_id, destination, attempts, max_attempts, attempt_started_at
             FROM deliveries
             WHERE lease_until <= $1 AND status = ",
            claimed!(),
            "
             ORDER BY lease_until LIMIT $2
             FOR UPDATE SKIP LOCKED"
        ))
        .await?;
    let expired = tx.query(&select, &[&now.0, &RECLAIM_BATCH]).await?;
    let mut reclaimed = Vec::with_capacity(expired.len());
    for row in expired {
        let seq: i64 = row.col(0)?;
        let event_id = EventId::from_stored(row.col(1)?);
        let destination: String = row.col(2)?;
        let attempt = row.col::<i32>(3)? as u32;
        let max_attempts = row.col::<i32>(4)? as u32;
        let started_at = Timestamp(row.col::<Option<i64>>(5)?.unwrap_or(now.0));
        let Expiry {
            status,
            error,
            next_attempt_at,
        } = lifecycle::expire(attempt, max_attempts, now);
        // Fenced on the attempt whose lease ran out (the row is also locked).
        let update = tx
            .prepare_cached(concat!(
                "UPDATE deliveries SET status = $2, last_error = $3, next_attempt_at = $4,
                        lease_until = NULL, attempt_started_at = NULL, updated_at = $5
                 WHERE seq = $1 AND attempts = $6 AND status = ",
                claimed!()
            ))
            .await?;
        tx.execute(
            &update,
            &[
                &seq,
                &status.as_str(),
                &error,
                &next_attempt_at.map(|t| t.0),
                &now.0,
                &(attempt as i32),
            ],
        )
        .await?;
        let record = AttemptRecord {
            destination: destination.clone(),
            attempt,
            started_at,
            duration: started_at.until(now),
            status_code: None,
            error: Some(error),
            response_body: None,
            probe: false,
        };
        insert_attempt(tx, &event_id, &record).await?;
        reclaimed.push(ReclaimedDelivery {
            event_id,
            destination,
            attempt,
            status,
        });
    }
    Ok(reclaimed)
}

pub async fn renew_leases(
    client: &Client,
    attempts: &[(DeliveryId, u32)],
    lease: Duration,
) -> Result<usize> {
    let seqs: Vec<i64> = attempts.iter().map(|(d, _)| d.0).collect();
    let numbers: Vec<i32> = attempts.iter().map(|(_, n)| *n as i32).collect();
    let statement = client
        .prepare_cached(concat!(
            "UPDATE deliveries d SET lease_until = $1
             FROM unnest($2::bigint[], $3::int[]) AS running(seq, attempt)
             WHERE d.seq = running.seq AND d.attempts = running.attempt
               AND d.status = ",
            claimed!()
        ))
        .await?;
    let renewed = client
        .execute(
            &statement,
            &[&Timestamp::now().plus(lease).0, &seqs, &numbers],
        )
        .await?;
    Ok(renewed as usize)
}

pub async fn release(client: &Client, delivery: DeliveryId, attempt: u32) -> Result<()> {
    let now = Timestamp::now().0;
    let release = lifecycle::release(attempt);
    let statement = client
        .prepare_cached(concat!(
            "UPDATE deliveries
             SET status = $4, attempts = $5, next_attempt_at = $3, lease_until = NULL,
                 attempt_started_at = NULL, updated_at = $3
             WHERE seq = $1 AND attempts = $2 AND status = ",
            claimed!()
        ))
        .await?;
    client
        .execute(
            &statement,
            &[
                &delivery.0,
                &(attempt as i32),
                &now,
                &release.status.as_str(),
                &(release.attempts as i32),
            ],
        )
        .await?;
    Ok(())
}
