//! Outcomes written as the domain settled them. (sqlite)

use std::collections::HashMap;

use rusqlite::{Connection, params};

use super::events::insert_attempt;
use super::flows::{read_flow, write_flow};
use crate::domain::outcomes::{self, Observed, Settled};
use crate::domain::protection::FlowState;
use crate::domain::time::Timestamp;
use crate::store::sql::claimed;
use crate::store::{FinishedAttempt, Recorded};

/// Outcomes, each with its attempt record, as the domain settles them: what they do
/// to their destinations' breakers (read, decided, written back when changed), the
/// alerts that raises, and each destination's last success and failure and
/// dead-letter digest for the outcomes whose lease held.
pub fn finish_attempts(
    conn: &Connection,
    finished: &[FinishedAttempt],
) -> rusqlite::Result<Vec<Recorded>> {
    let now = Timestamp::now();
    let observed: Vec<Observed> = finished.iter().map(FinishedAttempt::observed).collect();
    let mut before: HashMap<String, FlowState> = HashMap::new();
    for one in &observed {
        if !before.contains_key(one.destination) {
            before.insert(
                one.destination.to_owned(),
                read_flow(conn, one.destination)?,
            );
        }
    }
    let settlement = outcomes::settle(&observed, &before, now);
    let mut held = Vec::with_capacity(finished.len());
    for (one, settled) in finished.iter().zip(&settlement.settled) {
        held.push(finish_attempt(conn, one, settled, now)?);
    }
    for (name, state) in &settlement.flows {
        write_flow(conn, name, state)?;
    }
    for alert in &settlement.alerts {
        super::alerts::raise_breaker_alert(conn, alert, now)?;
    }
    let written = outcomes::written(&observed, &settlement.settled, |i| held[i]);
    for (destination, delivered) in &written.last_outcomes {
        record_outcome(conn, destination, *delivered, now)?;
    }
    for digest in &written.digests {
        super::alerts::add_dead_letters(
            conn,
            &digest.destination,
            digest.dead,
            &digest.last_event,
            &digest.rules,
            now,
        )?;
    }
    Ok(settlement
        .settled
        .iter()
        .zip(held)
        .map(|(settled, held)| Recorded {
            held,
            breaker: settled.breaker,
            status: settled.status,
        })
        .collect())
}

pub(super) fn finish_attempt(
    conn: &Connection,
    finished: &FinishedAttempt,
    settled: &Settled,
    now: Timestamp,
) -> rusqlite::Result<bool> {
    // The attempt number fences out a worker whose lease was taken over.
    let updated = conn
        .prepare_cached(concat!(
            "UPDATE deliveries SET status = ?3, last_error = ?4, next_attempt_at = ?5,
                    lease_until = NULL, attempt_started_at = NULL, updated_at = ?6,
                    max_attempts = ?7
             WHERE seq = ?1 AND attempts = ?2 AND status = ",
            claimed!()
        ))?
        .execute(params![
            finished.delivery.0,
            finished.attempt,
            settled.status.as_str(),
            finished.record.error,
            settled.next_attempt_at.map(|t| t.0),
            now.0,
            settled.max_attempts,
        ])?;
    if updated == 0 {
        return Ok(false);
    }
    insert_attempt(conn, &finished.event_id, &finished.record)?;
    Ok(true)
}

/// The destination's last success or failure, for operators.
pub(super) fn record_outcome(
    conn: &Connection,
    destination: &str,
    delivered: bool,
    now: Timestamp,
) -> rusqlite::Result<()> {
    let statement = if delivered {
        "INSERT INTO destinations (name, last_success_at) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET last_success_at = excluded.last_success_at"
    } else {
        "INSERT INTO destinations (name, last_failure_at) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET last_failure_at = excluded.last_failure_at"
    };
    conn.prepare_cached(statement)?
        .execute(params![destination, now.0])?;
    Ok(())
}
