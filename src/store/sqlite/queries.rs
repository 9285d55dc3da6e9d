//! The SQL of the SQLite backend, as plain functions on a connection.

use std::time::Duration;

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::domain::event::EventId;
use crate::domain::lifecycle::{self, CLAIMED, EventStatus, Expiry, Replay};
use crate::domain::time::Timestamp;
use crate::store::sql::{REPLAYABLE, claimable, claimed};
use crate::store::{
    AttemptRecord, Claim, ClaimedEvent, EventFilter, EventPage, EventRecord, FinishedAttempt,
    InsertOutcome, NewEvent, QueueGauges, ReclaimedEvent, ReplayBatch, ReplayOutcome,
};

/// Expired leases handled per claim; the rest wait for the next one.
const RECLAIM_BATCH: usize = 100;

pub fn insert_event(conn: &Connection, event: &NewEvent) -> rusqlite::Result<InsertOutcome> {
    let now = event.received_at.0;
    let inserted = conn
        .prepare_cached(
            "INSERT INTO events (id, source, idempotency_key, status, max_attempts,
                                 next_attempt_at, created_at, updated_at,
                                 content_type, headers, body, forward)
             VALUES (?1, ?2, ?3, ?10, ?4, ?5, ?5, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (source, idempotency_key) DO NOTHING",
        )?
        .execute(params![
            event.id.as_str(),
            event.source.as_str(),
            event.key.as_str(),
            event.max_attempts,
            now,
            event.content_type,
            event.headers,
            &event.body[..],
            event.forward,
            EventStatus::Queued.as_str(),
        ])?;
    if inserted == 1 {
        return Ok(InsertOutcome::Accepted(event.id.clone()));
    }
    let first: String = conn
        .prepare_cached("SELECT id FROM events WHERE source = ?1 AND idempotency_key = ?2")?
        .query_row(params![event.source.as_str(), event.key.as_str()], |row| {
            row.get(0)
        })?;
    Ok(InsertOutcome::Duplicate(EventId::from_stored(first)))
}

pub fn get_event(conn: &Connection, id: &EventId) -> rusqlite::Result<Option<EventRecord>> {
    conn.prepare_cached(&format!("SELECT {EVENT_COLUMNS} FROM events WHERE id = ?1"))?
        .query_row([id.as_str()], event_from_row)
        .optional()
}

pub fn find_by_key(
    conn: &Connection,
    source: &str,
    key: &str,
) -> rusqlite::Result<Option<EventRecord>> {
    conn.prepare_cached(&format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE source = ?1 AND idempotency_key = ?2"
    ))?
    .query_row([source, key], event_from_row)
    .optional()
}

const EVENT_COLUMNS: &str = "seq, id, source, status, attempts, max_attempts, last_error, \
     next_attempt_at, created_at, updated_at, content_type, headers, body, idempotency_key";

/// The WHERE clause every filter shares; parameters ?1 to ?4.
const FILTER: &str = "(?1 IS NULL OR status = ?1) AND (?2 IS NULL OR source = ?2) \
     AND (?3 IS NULL OR created_at >= ?3) AND (?4 IS NULL OR created_at < ?4)";

pub fn list_events(
    conn: &Connection,
    filter: &EventFilter,
    limit: usize,
    before: Option<i64>,
) -> rusqlite::Result<EventPage> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {EVENT_COLUMNS} FROM events
         WHERE {FILTER} AND (?5 IS NULL OR seq < ?5)
         ORDER BY seq DESC LIMIT ?6"
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
            ],
            event_from_row,
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(EventPage::from_rows(events, limit))
}

pub fn replay(
    conn: &Connection,
    id: &EventId,
    fresh_attempts: u32,
) -> rusqlite::Result<ReplayOutcome> {
    let current = conn
        .prepare_cached("SELECT status, attempts FROM events WHERE id = ?1")?
        .query_row([id.as_str()], |row| {
            Ok((parse_status(row, 0)?, row.get(1)?))
        })
        .optional()?;
    let replay = match lifecycle::replay(current, fresh_attempts) {
        Ok(replay) => replay,
        Err(refused) => return Ok(refused.into()),
    };
    let (status, attempts) = current.expect("replay needs an event");
    apply_replay(conn, id, status, attempts, &replay)?;
    Ok(ReplayOutcome::Queued)
}

/// Writes a replay the domain decided, fenced on the status and attempts it saw (the
/// whole replay runs in one write transaction, so the fence always holds here).
fn apply_replay(
    conn: &Connection,
    id: &EventId,
    from: EventStatus,
    attempts: u32,
    replay: &Replay,
) -> rusqlite::Result<usize> {
    let now = Timestamp::now().0;
    conn.prepare_cached(
        "UPDATE events SET status = ?4, next_attempt_at = ?5, max_attempts = ?6,
                attempts_at_replay = ?7, updated_at = ?5
         WHERE id = ?1 AND status = ?2 AND attempts = ?3",
    )?
    .execute(params![
        id.as_str(),
        from.as_str(),
        attempts,
        replay.status.as_str(),
        now,
        replay.max_attempts,
        replay.attempts_at_replay,
    ])
}

/// One batch of a bulk replay: up to `limit` matching events with `after_seq < seq <=
/// upto_seq`, oldest first.
pub fn replay_matching(
    conn: &Connection,
    filter: &EventFilter,
    fresh_attempts: u32,
    after_seq: i64,
    upto_seq: i64,
    limit: usize,
) -> rusqlite::Result<ReplayBatch> {
    let candidates: Vec<(i64, String, EventStatus, u32)> = conn
        .prepare_cached(&format!(
            "SELECT seq, id, status, attempts FROM events
             WHERE seq > ?5 AND seq <= ?6 AND status IN {REPLAYABLE} AND {FILTER}
             ORDER BY seq LIMIT ?7"
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
            ],
            |row| Ok((row.get(0)?, row.get(1)?, parse_status(row, 2)?, row.get(3)?)),
        )?
        .collect::<rusqlite::Result<_>>()?;
    let mut replayed = 0;
    for (_, id, status, attempts) in &candidates {
        if let Ok(replay) = lifecycle::replay(Some((*status, *attempts)), fresh_attempts) {
            let id = EventId::from_stored(id.clone());
            replayed += apply_replay(conn, &id, *status, *attempts, &replay)? as u64;
        }
    }
    Ok(ReplayBatch {
        replayed,
        last_seq: candidates.last().map(|(seq, ..)| *seq),
        examined: candidates.len(),
    })
}

/// The newest event's `seq`: a bulk replay stops there, so events that arrive while it
/// runs are not part of it.
pub fn last_seq(conn: &Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM events")?
        .query_row([], |row| row.get(0))
}

fn event_from_row(row: &Row<'_>) -> rusqlite::Result<EventRecord> {
    let status = parse_status(row, 3)?;
    let next_attempt_at: Option<i64> = row.get(7)?;
    Ok(EventRecord {
        seq: row.get(0)?,
        id: EventId::from_stored(row.get(1)?),
        source: row.get(2)?,
        status,
        attempts: row.get(4)?,
        max_attempts: row.get(5)?,
        last_error: row.get(6)?,
        // Only a retrying event has a next retry; a queued one is due now.
        next_retry_at: next_attempt_at
            .filter(|_| status == EventStatus::Retrying)
            .map(Timestamp),
        created_at: Timestamp(row.get(8)?),
        updated_at: Timestamp(row.get(9)?),
        content_type: row.get(10)?,
        headers: row.get(11)?,
        body: row.get(12)?,
        idempotency_key: row.get(13)?,
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
        "SELECT attempt, started_at, duration_us, status_code, error, response_body
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
        })
    })?;
    rows.collect::<rusqlite::Result<Vec<_>>>().map(Some)
}

pub fn claim(conn: &Connection, limit: usize, lease: Duration) -> rusqlite::Result<Claim> {
    let now = Timestamp::now();
    let reclaimed = fail_expired_leases(conn, now)?;
    let lease_until = now.plus(lease);
    let mut statement = conn.prepare_cached(concat!(
        "UPDATE events
         SET status = ?4, attempts = attempts + 1, attempt_started_at = ?1,
             lease_until = ?2, updated_at = ?1
         WHERE id IN (SELECT id FROM events
                      WHERE status IN ",
        claimable!(),
        " AND next_attempt_at <= ?1
                      ORDER BY next_attempt_at LIMIT ?3)
         RETURNING id, source, attempts, max_attempts, content_type, headers, body, created_at,
                   attempts_at_replay, forward"
    ))?;
    let events = statement
        .query_map(
            params![now.0, lease_until.0, limit as i64, CLAIMED.as_str()],
            |row| {
                Ok(ClaimedEvent {
                    id: EventId::from_stored(row.get(0)?),
                    source: row.get(1)?,
                    attempt: row.get(2)?,
                    max_attempts: row.get(3)?,
                    content_type: row.get(4)?,
                    headers: row.get(5)?,
                    body: Bytes::from(row.get::<_, Vec<u8>>(6)?),
                    received_at: Timestamp(row.get(7)?),
                    attempts_at_replay: row.get(8)?,
                    forward: row.get(9)?,
                })
            },
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let next_due = next_due(conn)?;
    Ok(Claim {
        events,
        reclaimed,
        next_due,
    })
}

/// An attempt whose lease ran out counts as failed, so that an event which kills its
/// worker cannot loop forever; the event is due again at once, or dead-lettered.
fn fail_expired_leases(conn: &Connection, now: Timestamp) -> rusqlite::Result<Vec<ReclaimedEvent>> {
    let expired = conn
        .prepare_cached(concat!(
            "SELECT id, source, attempts, max_attempts, attempt_started_at FROM events
             WHERE lease_until <= ?1 AND status = ",
            claimed!(),
            "
             ORDER BY lease_until LIMIT ?2"
        ))?
        .query_map(params![now.0, RECLAIM_BATCH as i64], |row| {
            Ok((
                EventId::from_stored(row.get(0)?),
                row.get::<_, String>(1)?,
                row.get::<_, u32>(2)?,
                row.get::<_, u32>(3)?,
                row.get::<_, Option<i64>>(4)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut reclaimed = Vec::with_capacity(expired.len());
    for (id, source, attempt, max_attempts, started_at) in expired {
        let started_at = Timestamp(started_at.unwrap_or(now.0));
        let Expiry {
            status,
            error,
            next_attempt_at,
        } = lifecycle::expire(attempt, max_attempts, now);
        // Fenced on the attempt whose lease ran out.
        conn.prepare_cached(concat!(
            "UPDATE events SET status = ?2, last_error = ?3, next_attempt_at = ?4,
                    lease_until = NULL, attempt_started_at = NULL, updated_at = ?5
             WHERE id = ?1 AND attempts = ?6 AND status = ",
            claimed!()
        ))?
        .execute(params![
            id.as_str(),
            status.as_str(),
            error,
            next_attempt_at.map(|t| t.0),
            now.0,
            attempt,
        ])?;
        insert_attempt(
            conn,
            &id,
            &AttemptRecord {
                attempt,
                started_at,
                duration: started_at.until(now),
                status_code: None,
                error: Some(error),
                response_body: None,
            },
        )?;
        reclaimed.push(ReclaimedEvent {
            id,
            source,
            attempt,
            status,
        });
    }
    Ok(reclaimed)
}

fn next_due(conn: &Connection) -> rusqlite::Result<Option<Timestamp>> {
    let due: Option<i64> = conn
        .prepare_cached(concat!(
            "SELECT MIN(t) FROM (
                 SELECT MIN(next_attempt_at) AS t FROM events WHERE status IN ",
            claimable!(),
            "
                 UNION ALL
                 SELECT MIN(lease_until) FROM events WHERE lease_until IS NOT NULL)"
        ))?
        .query_row([], |row| row.get(0))?;
    Ok(due.map(Timestamp))
}

pub fn renew_leases(
    conn: &Connection,
    attempts: &[(EventId, u32)],
    lease: Duration,
) -> rusqlite::Result<usize> {
    let lease_until = Timestamp::now().plus(lease);
    let mut statement = conn.prepare_cached(concat!(
        "UPDATE events SET lease_until = ?3
         WHERE id = ?1 AND attempts = ?2 AND status = ",
        claimed!()
    ))?;
    let mut renewed = 0;
    for (id, attempt) in attempts {
        renewed += statement.execute(params![id.as_str(), attempt, lease_until.0,])?;
    }
    Ok(renewed)
}

pub fn finish_attempt(conn: &Connection, finished: &FinishedAttempt) -> rusqlite::Result<bool> {
    let now = Timestamp::now();
    // The attempt number fences out a worker whose lease was taken over.
    let updated = conn
        .prepare_cached(concat!(
            "UPDATE events SET status = ?3, last_error = ?4, next_attempt_at = ?5,
                    lease_until = NULL, attempt_started_at = NULL, updated_at = ?6
             WHERE id = ?1 AND attempts = ?2 AND status = ",
            claimed!()
        ))?
        .execute(params![
            finished.id.as_str(),
            finished.attempt,
            finished.status.as_str(),
            finished.record.error,
            finished.next_attempt_at.map(|t| t.0),
            now.0,
        ])?;
    if updated == 0 {
        return Ok(false);
    }
    insert_attempt(conn, &finished.id, &finished.record)?;
    Ok(true)
}

fn insert_attempt(conn: &Connection, id: &EventId, record: &AttemptRecord) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO attempts (event_id, attempt, started_at, duration_us, status_code,
                               error, response_body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        id.as_str(),
        record.attempt,
        record.started_at.0,
        record.duration.as_micros() as i64,
        record.status_code,
        record.error,
        record.response_body,
    ])?;
    Ok(())
}

pub fn release(conn: &Connection, id: &EventId, attempt: u32) -> rusqlite::Result<()> {
    let now = Timestamp::now().0;
    let release = lifecycle::release(attempt);
    conn.prepare_cached(concat!(
        "UPDATE events
         SET status = ?4, attempts = ?5, next_attempt_at = ?3, lease_until = NULL,
             attempt_started_at = NULL, updated_at = ?3
         WHERE id = ?1 AND attempts = ?2 AND status = ",
        claimed!()
    ))?
    .execute(params![
        id.as_str(),
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
    // Oldest first by arrival; undelivered rows are skipped, never touched.
    let ids: Vec<String> = conn
        .prepare_cached(
            "SELECT id FROM events
             WHERE (status = 'delivered' AND updated_at < ?1)
                OR (status = 'dead_lettered' AND ?2 IS NOT NULL AND updated_at < ?2)
             ORDER BY seq LIMIT ?3",
        )?
        .query_map(
            params![delivered_before.0, dead_before.map(|t| t.0), batch as i64],
            |row| row.get(0),
        )?
        .collect::<rusqlite::Result<_>>()?;
    let mut delete_attempts = conn.prepare_cached("DELETE FROM attempts WHERE event_id = ?1")?;
    let mut delete_event = conn.prepare_cached("DELETE FROM events WHERE id = ?1")?;
    for id in &ids {
        delete_attempts.execute([id])?;
        delete_event.execute([id])?;
    }
    Ok(ids.len() as u64)
}

pub fn gauges(conn: &Connection) -> rusqlite::Result<QueueGauges> {
    let now = Timestamp::now();
    // Each count reads one partial index; the history is never scanned.
    conn.prepare_cached(
        "SELECT
             (SELECT COUNT(*) FROM events WHERE status IN ('queued', 'retrying') AND status = 'queued'),
             (SELECT COUNT(*) FROM events WHERE status IN ('queued', 'retrying') AND status = 'retrying'),
             (SELECT COUNT(*) FROM events WHERE lease_until IS NOT NULL),
             (SELECT COUNT(*) FROM events WHERE status = 'dead_lettered'),
             (SELECT MIN(next_attempt_at) FROM events WHERE status IN ('queued', 'retrying'))",
    )?
    .query_row([], |row| {
        let oldest_due: Option<i64> = row.get(4)?;
        Ok(QueueGauges {
            queued: row.get(0)?,
            retrying: row.get(1)?,
            processing: row.get(2)?,
            dead_lettered: row.get(3)?,
            queue_lag: oldest_due
                .map(|due| Timestamp(due).until(now))
                .unwrap_or_default(),
        })
    })
}

/// Most of the history is delivered, so the capped scan stops after about `cap` rows.
pub fn count_delivered(conn: &Connection, cap: u64) -> rusqlite::Result<u64> {
    conn.prepare_cached(
        "SELECT COUNT(*) FROM (SELECT 1 FROM events WHERE status = 'delivered' LIMIT ?1)",
    )?
    .query_row([cap as i64], |row| row.get::<_, i64>(0))
    .map(|n| n as u64)
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
