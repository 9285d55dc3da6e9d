//! The SQL of the SQLite backend, as plain functions on a connection.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::domain::event::EventId;
use crate::domain::lifecycle::DeliveryState;
use crate::domain::lifecycle::{self, CLAIMED, EventStatus, Expiry, Replay};
use crate::domain::outcomes::{self, Observed, Settled};
use crate::domain::protection::{self, FlowState, OnDeadLetter, Wait};
use crate::domain::time::Timestamp;
use crate::store::sql::{REPLAYABLE, WAITING_DESTINATIONS, claimable, claimed};
use crate::store::{
    AttemptBudget, AttemptRecord, Claim, ClaimRequest, ClaimedDelivery, DeliveryId, DeliveryRecord,
    DestinationRow, DestinationStats, EventFilter, EventPage, EventRecord, FLOW_COLUMNS,
    FinishedAttempt, InsertOutcome, NewDelivery, NewEvent, QueueGauges, ReclaimedDelivery,
    Recorded, ReplayBatch, ReplayOutcome, WAITING_COUNT_CAP, Want, flow_state, flow_values,
};

/// Expired leases handled per claim; the rest wait for the next one.
const RECLAIM_BATCH: usize = 100;

pub fn insert_event(conn: &Connection, event: &NewEvent) -> rusqlite::Result<InsertOutcome> {
    let inserted = conn
        .prepare_cached(
            "INSERT INTO events (id, source, idempotency_key, event_type, created_at,
                                 content_type, headers, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (source, idempotency_key) DO NOTHING",
        )?
        .execute(params![
            event.id.as_str(),
            event.source.as_str(),
            event.key.as_str(),
            event.event_type,
            event.received_at.0,
            event.content_type,
            event.headers,
            &event.body[..],
        ])?;
    if inserted == 1 {
        insert_deliveries(conn, &event.id, &event.deliveries, event.received_at)?;
        return Ok(InsertOutcome::Accepted(event.id.clone()));
    }
    let first: String = conn
        .prepare_cached("SELECT id FROM events WHERE source = ?1 AND idempotency_key = ?2")?
        .query_row(params![event.source.as_str(), event.key.as_str()], |row| {
            row.get(0)
        })?;
    Ok(InsertOutcome::Duplicate(EventId::from_stored(first)))
}

fn insert_deliveries(
    conn: &Connection,
    id: &EventId,
    deliveries: &[NewDelivery],
    now: Timestamp,
) -> rusqlite::Result<()> {
    let mut statement = conn.prepare_cached(
        "INSERT INTO deliveries (event_id, destination, status, max_attempts,
                                 next_attempt_at, updated_at, ordering_key)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6)",
    )?;
    for delivery in deliveries {
        statement.execute(params![
            id.as_str(),
            delivery.destination,
            EventStatus::Queued.as_str(),
            delivery.max_attempts,
            now.0,
            delivery.ordering_key,
        ])?;
    }
    Ok(())
}

pub fn add_deliveries(
    conn: &Connection,
    id: &EventId,
    deliveries: &[NewDelivery],
) -> rusqlite::Result<bool> {
    // Runs in one write transaction: nothing can add deliveries in between.
    let routable = conn
        .prepare_cached(
            "SELECT 1 FROM events e WHERE e.id = ?1
             AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id)",
        )?
        .exists([id.as_str()])?;
    if routable {
        insert_deliveries(conn, id, deliveries, Timestamp::now())?;
    }
    Ok(routable)
}

pub fn get_event(conn: &Connection, id: &EventId) -> rusqlite::Result<Option<EventRecord>> {
    let event = conn
        .prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS} FROM events e WHERE id = ?1"
        ))?
        .query_row([id.as_str()], event_from_row)
        .optional()?;
    with_deliveries(conn, event)
}

pub fn find_by_key(
    conn: &Connection,
    source: &str,
    key: &str,
) -> rusqlite::Result<Option<EventRecord>> {
    let event = conn
        .prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS} FROM events e WHERE source = ?1 AND idempotency_key = ?2"
        ))?
        .query_row([source, key], event_from_row)
        .optional()?;
    with_deliveries(conn, event)
}

fn with_deliveries(
    conn: &Connection,
    event: Option<EventRecord>,
) -> rusqlite::Result<Option<EventRecord>> {
    let Some(mut event) = event else {
        return Ok(None);
    };
    event.deliveries = deliveries_of(conn, &event.id)?;
    Ok(Some(event))
}

fn deliveries_of(conn: &Connection, id: &EventId) -> rusqlite::Result<Vec<DeliveryRecord>> {
    conn.prepare_cached(
        "SELECT destination, status, attempts, max_attempts, last_error, next_attempt_at,
                updated_at
         FROM deliveries WHERE event_id = ?1 ORDER BY seq",
    )?
    .query_map([id.as_str()], |row| {
        Ok(DeliveryRecord {
            destination: row.get(0)?,
            state: DeliveryState {
                status: parse_status(row, 1)?,
                attempts: row.get(2)?,
                max_attempts: row.get(3)?,
                last_error: row.get(4)?,
                next_attempt_at: row.get::<_, Option<i64>>(5)?.map(Timestamp),
                updated_at: Timestamp(row.get(6)?),
            },
        })
    })?
    .collect()
}

const EVENT_COLUMNS: &str = "e.seq, e.id, e.source, e.event_type, e.created_at, e.content_type, \
     e.headers, e.body, e.idempotency_key";

/// [`EVENT_COLUMNS`] with the body only when ?8 asks for it.
const LIST_COLUMNS: &str = "e.seq, e.id, e.source, e.event_type, e.created_at, e.content_type, \
     e.headers, CASE WHEN ?8 THEN e.body ELSE x'' END, e.idempotency_key";

/// What every filter shares about the event `e`: parameters ?2 (source), ?3 and ?4
/// (arrival).
const EVENT_FILTER: &str = "(?2 IS NULL OR e.source = ?2) \
     AND (?3 IS NULL OR e.created_at >= ?3) AND (?4 IS NULL OR e.created_at < ?4)";

pub fn list_events(
    conn: &Connection,
    filter: &EventFilter,
    limit: usize,
    before: Option<i64>,
    bodies: bool,
) -> rusqlite::Result<EventPage> {
    // ?1 status and ?7 destination are about the deliveries: an event matches when one
    // of its deliveries does; `filtered` when it has none. ?8: read the bodies.
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {LIST_COLUMNS} FROM events e
         WHERE {EVENT_FILTER} AND (?5 IS NULL OR e.seq < ?5)
           AND CASE
               WHEN ?1 = 'filtered' THEN ?7 IS NULL
                   AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id)
               WHEN ?1 IS NULL AND ?7 IS NULL THEN 1
               ELSE EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id
                            AND (?1 IS NULL OR d.status = ?1)
                            AND (?7 IS NULL OR d.destination = ?7))
               END
         ORDER BY e.seq DESC LIMIT ?6"
    ))?;
    let events = statement
        .query_map(
            params![
                filter.status.map(EventStatus::as_str),
                filter.source,
                filter.since.map(|t| t.0),
                filter.until.map(|t| t.0),
                before,
                limit as i64 + 1,
                filter.destination,
                bodies,
            ],
            event_from_row,
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut page = EventPage::from_rows(events, limit);
    for event in &mut page.events {
        event.deliveries = deliveries_of(conn, &event.id)?;
    }
    Ok(page)
}

pub fn replay(
    conn: &Connection,
    id: &EventId,
    destination: Option<&str>,
    budget: &AttemptBudget,
) -> rusqlite::Result<ReplayOutcome> {
    let exists = conn
        .prepare_cached("SELECT 1 FROM events WHERE id = ?1")?
        .exists([id.as_str()])?;
    if !exists {
        return Ok(ReplayOutcome::NotFound);
    }
    let deliveries: Vec<(i64, String, EventStatus, u32)> = conn
        .prepare_cached(
            "SELECT seq, destination, status, attempts FROM deliveries
             WHERE event_id = ?1 AND (?2 IS NULL OR destination = ?2) ORDER BY seq",
        )?
        .query_map(params![id.as_str(), destination], |row| {
            Ok((row.get(0)?, row.get(1)?, parse_status(row, 2)?, row.get(3)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let decided = deliveries
        .iter()
        .map(|(seq, destination, status, attempts)| {
            (
                *seq,
                *status,
                *attempts,
                lifecycle::replay(Some((*status, *attempts)), budget.of(destination)),
            )
        });
    let mut replayed = 0;
    let mut refused = None;
    for (seq, status, attempts, decision) in decided {
        match decision {
            Ok(replay) => replayed += apply_replay(conn, seq, status, attempts, &replay)? as u64,
            Err(why) => refused = refused.or(Some(why)),
        }
    }
    Ok(match (replayed, refused, deliveries.is_empty()) {
        (0, _, true) if destination.is_some() => ReplayOutcome::NoDelivery,
        (0, _, true) => ReplayOutcome::NotReplayable(EventStatus::Filtered),
        (0, Some(why), _) => why.into(),
        (n, ..) => ReplayOutcome::Queued(n),
    })
}

/// Writes a replay the domain decided, fenced on the status and attempts it saw (the
/// whole replay runs in one write transaction, so the fence always holds here).
fn apply_replay(
    conn: &Connection,
    delivery: i64,
    from: EventStatus,
    attempts: u32,
    replay: &Replay,
) -> rusqlite::Result<usize> {
    let now = Timestamp::now().0;
    conn.prepare_cached(
        "UPDATE deliveries SET status = ?4, next_attempt_at = ?5, max_attempts = ?6,
                attempts_at_replay = ?7, updated_at = ?5
         WHERE seq = ?1 AND status = ?2 AND attempts = ?3",
    )?
    .execute(params![
        delivery,
        from.as_str(),
        attempts,
        replay.status.as_str(),
        now,
        replay.max_attempts,
        replay.attempts_at_replay,
    ])
}

/// One batch of a bulk replay: up to `limit` matching deliveries with `after_seq < seq
/// <= upto_seq`, oldest first.
pub fn replay_matching(
    conn: &Connection,
    filter: &EventFilter,
    budget: &AttemptBudget,
    after_seq: i64,
    upto_seq: i64,
    limit: usize,
) -> rusqlite::Result<ReplayBatch> {
    let candidates: Vec<(i64, String, EventStatus, u32)> = conn
        .prepare_cached(&format!(
            "SELECT d.seq, d.destination, d.status, d.attempts
             FROM deliveries d JOIN events e ON e.id = d.event_id
             WHERE d.seq > ?5 AND d.seq <= ?6 AND d.status IN {REPLAYABLE}
               AND (?1 IS NULL OR d.status = ?1) AND (?8 IS NULL OR d.destination = ?8)
               AND {EVENT_FILTER}
             ORDER BY d.seq LIMIT ?7"
        ))?
        .query_map(
            params![
                filter.status.map(EventStatus::as_str),
                filter.source,
                filter.since.map(|t| t.0),
                filter.until.map(|t| t.0),
                after_seq,
                upto_seq,
                limit as i64,
                filter.destination,
            ],
            |row| Ok((row.get(0)?, row.get(1)?, parse_status(row, 2)?, row.get(3)?)),
        )?
        .collect::<rusqlite::Result<_>>()?;
    let mut replayed = 0;
    for (seq, destination, status, attempts) in &candidates {
        let decision = lifecycle::replay(Some((*status, *attempts)), budget.of(destination));
        if let Ok(replay) = decision {
            replayed += apply_replay(conn, *seq, *status, *attempts, &replay)? as u64;
        }
    }
    Ok(ReplayBatch {
        replayed,
        last_seq: candidates.last().map(|(seq, ..)| *seq),
        examined: candidates.len(),
    })
}

/// The newest delivery's `seq`: a bulk replay stops there, so deliveries made while it
/// runs are not part of it.
pub fn last_seq(conn: &Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM deliveries")?
        .query_row([], |row| row.get(0))
}

fn event_from_row(row: &Row<'_>) -> rusqlite::Result<EventRecord> {
    Ok(EventRecord {
        seq: row.get(0)?,
        id: EventId::from_stored(row.get(1)?),
        source: row.get(2)?,
        event_type: row.get(3)?,
        created_at: Timestamp(row.get(4)?),
        content_type: row.get(5)?,
        headers: row.get(6)?,
        body: row.get(7)?,
        idempotency_key: row.get(8)?,
        deliveries: Vec::new(),
    })
}

fn parse_status(row: &Row<'_>, index: usize) -> rusqlite::Result<EventStatus> {
    let text: String = row.get(index)?;
    text.parse().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, Box::new(e))
    })
}

pub fn list_attempts(
    conn: &Connection,
    id: &EventId,
) -> rusqlite::Result<Option<Vec<AttemptRecord>>> {
    let exists = conn
        .prepare_cached("SELECT 1 FROM events WHERE id = ?1")?
        .exists([id.as_str()])?;
    if !exists {
        return Ok(None);
    }
    let mut statement = conn.prepare_cached(
        "SELECT attempt, started_at, duration_us, status_code, error, response_body,
                destination, probe
         FROM attempts WHERE event_id = ?1 ORDER BY started_at, rowid",
    )?;
    let rows = statement.query_map([id.as_str()], |row| {
        Ok(AttemptRecord {
            attempt: row.get(0)?,
            started_at: Timestamp(row.get(1)?),
            duration: Duration::from_micros(row.get::<_, i64>(2)?.max(0) as u64),
            status_code: row.get(3)?,
            error: row.get(4)?,
            response_body: row.get(5)?,
            destination: row.get(6)?,
            probe: row.get(7)?,
        })
    })?;
    rows.collect::<rusqlite::Result<Vec<_>>>().map(Some)
}

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

fn earliest(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// One destination's part of a claim: what it leased, why the rest waits, and
/// whether it will go idle (fewer due than wanted, not waiting).
fn claim_for(
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

fn read_flow(conn: &Connection, destination: &str) -> rusqlite::Result<FlowState> {
    conn.prepare_cached(&format!(
        "SELECT {FLOW_COLUMNS} FROM destinations WHERE name = ?1"
    ))?
    .query_row([destination], flow_from_row)
    .optional()
    .map(Option::unwrap_or_default)
}

fn flow_from_row(row: &Row<'_>) -> rusqlite::Result<FlowState> {
    Ok(flow_state(
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
    ))
}

fn write_flow(conn: &Connection, destination: &str, flow: &FlowState) -> rusqlite::Result<()> {
    let (failures, since, probe_at, pause, tokens, tokens_at) = flow_values(flow);
    conn.prepare_cached(
        "INSERT INTO destinations (name, failures, breaker_since, probe_at, probe_pause_us,
                                   tokens, tokens_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (name) DO UPDATE SET
             failures = excluded.failures, breaker_since = excluded.breaker_since,
             probe_at = excluded.probe_at, probe_pause_us = excluded.probe_pause_us,
             tokens = excluded.tokens, tokens_at = excluded.tokens_at",
    )?
    .execute(params![
        destination,
        failures,
        since,
        probe_at,
        pause,
        tokens,
        tokens_at
    ])?;
    Ok(())
}

fn mark_throttled(conn: &Connection, destination: &str, now: Timestamp) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO destinations (name, throttled_at) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET throttled_at = excluded.throttled_at",
    )?
    .execute(params![destination, now.0])?;
    Ok(())
}

fn in_flight_of(conn: &Connection, destination: &str) -> rusqlite::Result<u32> {
    conn.prepare_cached(
        "SELECT COUNT(*) FROM deliveries WHERE destination = ?1 AND lease_until IS NOT NULL",
    )?
    .query_row([destination], |row| row.get(0))
}

pub fn set_paused(conn: &Connection, destination: &str, paused: bool) -> rusqlite::Result<bool> {
    let changed = conn
        .prepare_cached(
            "INSERT INTO destinations (name, paused, paused_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (name) DO UPDATE SET paused = excluded.paused,
                 paused_at = excluded.paused_at
             WHERE destinations.paused <> excluded.paused",
        )?
        .execute(params![
            destination,
            paused,
            paused.then(|| Timestamp::now().0)
        ])?;
    Ok(changed > 0)
}

/// Ordered destinations lease only the first unfinished delivery of each key (and,
/// with `block`, not past a dead letter).
const ORDERED_SKIP: &str = "AND NOT EXISTS (SELECT 1 FROM deliveries p
         WHERE p.destination = d.destination AND p.ordering_key = d.ordering_key
           AND p.ordering_key IS NOT NULL AND p.status <> 'delivered' AND p.seq < d.seq
           AND p.status IN ('queued', 'retrying', 'processing'))";
const ORDERED_BLOCK: &str = "AND NOT EXISTS (SELECT 1 FROM deliveries p
         WHERE p.destination = d.destination AND p.ordering_key = d.ordering_key
           AND p.ordering_key IS NOT NULL AND p.status <> 'delivered' AND p.seq < d.seq)";

fn ordering_clause(want: &Want) -> &'static str {
    match want.limits.ordered {
        None => "",
        Some(OnDeadLetter::Skip) => ORDERED_SKIP,
        Some(OnDeadLetter::Block) => ORDERED_BLOCK,
    }
}

/// What a lease checks of the destination's state itself.
#[derive(Clone, Copy)]
enum Guard {
    /// The domain planned how many may start: lease that many.
    Planned,
    /// No limits: lease only while the destination is neither paused nor its breaker
    /// open (what the plan would say for a destination without limits).
    FlowOpen,
}

const FLOW_OPEN: &str = "AND NOT EXISTS (SELECT 1 FROM destinations
         WHERE name = ?5 AND (paused <> 0 OR breaker_since IS NOT NULL))";

/// The lease's SQL. The guard stands outside the subquery: inside, SQLite would walk
/// the destination's whole due index checking it on each row before finding none
/// (122 ms a claim with 800,000 waiting behind an open breaker); outside, it checks
/// at most `LIMIT` rows. The destination and the limit are written `+?5` and `+?3`: SQLite
/// (built with STAT4) plans with the values bound to a bare `destination = ?` and
/// `LIMIT ?` here, and then prepares the statement again every time it is reused (each
/// claim's free slots differ). The unary plus keeps one plan, the same one, for all.
fn lease_statement(want: &Want, guard: Guard) -> String {
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
         RETURNING seq, event_id, destination, attempts, max_attempts, attempts_at_replay",
        claimable!(),
        ordering_clause(want),
    )
}

fn lease_due(
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
                ))
            },
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut event = conn.prepare_cached(
        "SELECT source, content_type, headers, body, created_at FROM events WHERE id = ?1",
    )?;
    let mut deliveries = Vec::with_capacity(leased.len());
    for (delivery, event_id, destination, attempt, max_attempts, attempts_at_replay) in leased {
        // The event and its deliveries are written and deleted together; should one
        // ever be missing, its lease runs out and the attempt counts as failed.
        let Some((source, content_type, headers, body, created_at)) = event
            .query_row([event_id.as_str()], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, Option<String>>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, Vec<u8>>(3)?,
                    row.get::<_, i64>(4)?,
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
            probe: false,
        });
    }
    Ok(deliveries)
}

/// An attempt whose lease ran out counts as failed, so that a delivery which kills its
/// worker cannot loop forever; it is due again at once, or dead-lettered.
fn fail_expired_leases(
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
fn first_due(conn: &Connection, destination: &str) -> rusqlite::Result<Option<Timestamp>> {
    let due: Option<i64> = conn
        .prepare_cached(concat!(
            "SELECT MIN(next_attempt_at) FROM deliveries WHERE destination = ?1 AND status IN ",
            claimable!()
        ))?
        .query_row([destination], |row| row.get(0))?;
    Ok(due.map(Timestamp))
}

fn next_due_for(
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

fn finish_attempt(
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
fn record_outcome(
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

fn insert_attempt(
    conn: &Connection,
    event_id: &EventId,
    record: &AttemptRecord,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO attempts (event_id, destination, attempt, started_at, duration_us,
                               status_code, error, response_body, probe)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        event_id.as_str(),
        record.destination,
        record.attempt,
        record.started_at.0,
        record.duration.as_micros() as i64,
        record.status_code,
        record.error,
        record.response_body,
        record.probe,
    ])?;
    Ok(())
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

pub fn prune(
    conn: &Connection,
    delivered_before: Timestamp,
    dead_before: Option<Timestamp>,
    batch: usize,
) -> rusqlite::Result<u64> {
    // Oldest first by arrival; an event goes only when every delivery is finished and
    // old enough, so an unfinished delivery is never touched. An event arrives before
    // any of its deliveries is updated, so arrival bounds the scan.
    let ids: Vec<String> = conn
        .prepare_cached(
            "SELECT e.id FROM events e
             WHERE e.created_at < max(?1, COALESCE(?2, ?1))
               AND NOT EXISTS (
                   SELECT 1 FROM deliveries d WHERE d.event_id = e.id
                   AND NOT ((d.status = 'delivered' AND d.updated_at < ?1)
                            OR (d.status = 'dead_lettered' AND ?2 IS NOT NULL
                                AND d.updated_at < ?2)))
               AND (e.created_at < ?1
                    OR EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id))
             ORDER BY e.seq LIMIT ?3",
        )?
        .query_map(
            params![delivered_before.0, dead_before.map(|t| t.0), batch as i64],
            |row| row.get(0),
        )?
        .collect::<rusqlite::Result<_>>()?;
    let mut delete_attempts = conn.prepare_cached("DELETE FROM attempts WHERE event_id = ?1")?;
    let mut delete_deliveries =
        conn.prepare_cached("DELETE FROM deliveries WHERE event_id = ?1")?;
    let mut delete_event = conn.prepare_cached("DELETE FROM events WHERE id = ?1")?;
    for id in &ids {
        delete_attempts.execute([id])?;
        delete_deliveries.execute([id])?;
        delete_event.execute([id])?;
    }
    Ok(ids.len() as u64)
}

pub fn gauges(conn: &Connection) -> rusqlite::Result<QueueGauges> {
    let now = Timestamp::now();
    // Each count reads one partial index, and stops at the cap: the history is never
    // scanned, nor a day's backlog.
    conn.prepare_cached(&format!(
        "{WAITING_DESTINATIONS}
         SELECT
             (SELECT COUNT(*) FROM (SELECT 1 FROM deliveries
                 WHERE status IN ('queued', 'retrying') LIMIT ?1 + (SELECT COUNT(*) FROM
                     (SELECT 1 FROM deliveries WHERE status = 'retrying' LIMIT ?1)))),
             (SELECT COUNT(*) FROM (SELECT 1 FROM deliveries
                 WHERE status = 'retrying' LIMIT ?1)),
             (SELECT COUNT(*) FROM deliveries WHERE lease_until IS NOT NULL),
             (SELECT COUNT(*) FROM (SELECT 1 FROM deliveries
                 WHERE status = 'dead_lettered' LIMIT ?1)),
             (SELECT MIN((SELECT MIN(next_attempt_at) FROM deliveries
                          WHERE destination = waiting.name AND status IN ('queued', 'retrying')))
              FROM waiting WHERE waiting.name IS NOT NULL)",
    ))?
    .query_row([WAITING_COUNT_CAP], |row| {
        let oldest_due: Option<i64> = row.get(4)?;
        Ok(QueueGauges {
            // Waiting less retrying, with no look at the rows themselves: the due
            // index alone counts the waiting ones.
            queued: (row.get::<_, i64>(0)? - row.get::<_, i64>(1)?).min(WAITING_COUNT_CAP),
            retrying: row.get(1)?,
            processing: row.get(2)?,
            dead_lettered: row.get(3)?,
            queue_lag: oldest_due
                .map(|due| Timestamp(due).until(now))
                .unwrap_or_default(),
        })
    })
}

/// Among the newest `10 × cap` deliveries only: most of the history is delivered, so
/// the scan usually stops after about `cap` rows, and a day's backlog of waiting ones
/// cannot make it read everything.
pub fn count_delivered(conn: &Connection, cap: u64) -> rusqlite::Result<u64> {
    conn.prepare_cached(
        "SELECT COUNT(*) FROM (SELECT 1 FROM (SELECT status FROM deliveries
                                              ORDER BY seq DESC LIMIT ?1 * 10)
                               WHERE status = 'delivered' LIMIT ?1)",
    )?
    .query_row([cap as i64], |row| row.get::<_, i64>(0))
    .map(|n| n as u64)
}

pub fn destination_stats(conn: &Connection) -> rusqlite::Result<Vec<DestinationStats>> {
    let now = Timestamp::now().0;
    // Each destination with waiting deliveries, one index seek apiece; then its counts,
    // each stopping at the cap, and its oldest due delivery from the index's front.
    let names: Vec<String> = conn
        .prepare_cached(&format!(
            "{WAITING_DESTINATIONS} SELECT name FROM waiting WHERE name IS NOT NULL"
        ))?
        .query_map([], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut counts = conn.prepare_cached(concat!(
        "SELECT
             (SELECT COUNT(*) FROM (SELECT 1 FROM deliveries WHERE destination = ?1
                 AND status IN ",
        claimable!(),
        " AND next_attempt_at <= ?2 LIMIT ?3)),
             (SELECT COUNT(*) FROM (SELECT 1 FROM deliveries WHERE destination = ?1
                 AND status IN ",
        claimable!(),
        " AND next_attempt_at > ?2 LIMIT ?3)),
             (SELECT MIN(next_attempt_at) FROM deliveries WHERE destination = ?1
                 AND status IN ",
        claimable!(),
        ")"
    ))?;
    let mut waiting: Vec<(String, i64, i64, Option<i64>)> = Vec::with_capacity(names.len());
    for name in names {
        let (due, scheduled, first) = counts
            .query_row(params![name, now, WAITING_COUNT_CAP], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get::<_, Option<i64>>(2)?))
            })?;
        waiting.push((name, due, scheduled, first.filter(|at| *at <= now)));
    }
    let in_flight: Vec<(String, i64)> = conn
        .prepare_cached(
            "SELECT destination, COUNT(*) FROM deliveries WHERE lease_until IS NOT NULL
             GROUP BY destination",
        )?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let rows: Vec<DestinationRow> = conn
        .prepare_cached(&format!(
            "SELECT {FLOW_COLUMNS}, name, last_success_at, last_failure_at, throttled_at,
                    paused_at, lagging_since
             FROM destinations"
        ))?
        .query_map([], |row| {
            Ok(DestinationRow {
                flow: flow_from_row(row)?,
                name: row.get(7)?,
                last_success_at: row.get::<_, Option<i64>>(8)?.map(Timestamp),
                last_failure_at: row.get::<_, Option<i64>>(9)?.map(Timestamp),
                throttled_at: row.get::<_, Option<i64>>(10)?.map(Timestamp),
                paused_at: row.get::<_, Option<i64>>(11)?.map(Timestamp),
                lagging_since: row.get::<_, Option<i64>>(12)?.map(Timestamp),
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let last_alerts = super::alerts::last_alerts(conn)?;
    Ok(DestinationStats::merge(
        waiting,
        in_flight,
        rows,
        last_alerts,
    ))
}

/// A real write, so that a full disk or a lost lock shows.
pub fn probe_write(conn: &Connection) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO hookrelay_meta (key, value) VALUES ('ready_probe', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?
    .execute([Timestamp::now().0.to_string()])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use rusqlite::StatementStatus;

    use super::*;
    use crate::domain::protection::Limits;

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
