//! The SQL of the PostgreSQL backend. Every function is one short transaction (or one
//! statement); none is held across a delivery.

use std::time::Duration;

use bytes::Bytes;
use deadpool_postgres::{Client, Transaction};
use tokio_postgres::Row;

use crate::domain::event::EventId;
use crate::domain::lifecycle::{self, CLAIMED, EventStatus, Expiry, Replay};
use crate::domain::time::Timestamp;
use crate::store::sql::{REPLAYABLE, claimable, claimed};
use crate::store::{
    AttemptRecord, Claim, ClaimedEvent, EventFilter, EventPage, EventRecord, FinishedAttempt,
    InsertOutcome, NewEvent, QueueGauges, ReclaimedEvent, ReplayBatch, ReplayOutcome, StoreError,
};

/// Expired leases handled per claim; the rest wait for the next one.
const RECLAIM_BATCH: i64 = 100;

type Result<T> = std::result::Result<T, StoreError>;

pub async fn insert_event(client: &Client, event: &NewEvent) -> Result<InsertOutcome> {
    let insert = client
        .prepare_cached(
            "INSERT INTO events (id, source, idempotency_key, status, max_attempts,
                                 next_attempt_at, created_at, updated_at,
                                 content_type, headers, body, forward)
             VALUES ($1, $2, $3, $10, $4, $5, $5, $5, $6, $7, $8, $9)
             ON CONFLICT (source, idempotency_key) DO NOTHING
             RETURNING id",
        )
        .await?;
    let inserted = client
        .query_opt(
            &insert,
            &[
                &event.id.as_str(),
                &event.source.as_str(),
                &event.key.as_str(),
                &(event.max_attempts as i32),
                &event.received_at.0,
                &event.content_type,
                &event.headers,
                &&event.body[..],
                &event.forward,
                &EventStatus::Queued.as_str(),
            ],
        )
        .await?;
    if inserted.is_some() {
        return Ok(InsertOutcome::Accepted(event.id.clone()));
    }
    // The conflict waited for the first insert to commit, so the row is visible now.
    let select = client
        .prepare_cached("SELECT id FROM events WHERE source = $1 AND idempotency_key = $2")
        .await?;
    let row = client
        .query_one(&select, &[&event.source.as_str(), &event.key.as_str()])
        .await?;
    Ok(InsertOutcome::Duplicate(EventId::from_stored(row.col(0)?)))
}

pub async fn get_event(client: &Client, id: &EventId) -> Result<Option<EventRecord>> {
    let statement = client
        .prepare_cached(&format!("SELECT {EVENT_COLUMNS} FROM events WHERE id = $1"))
        .await?;
    let row = client.query_opt(&statement, &[&id.as_str()]).await?;
    row.map(|row| event_from_row(&row)).transpose()
}

const EVENT_COLUMNS: &str = "seq, id, source, status, attempts, max_attempts, last_error, \
     next_attempt_at, created_at, updated_at, content_type, headers, body, idempotency_key";

/// The WHERE clause every filter shares; parameters $1 to $4.
pub async fn find_by_key(client: &Client, source: &str, key: &str) -> Result<Option<EventRecord>> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE source = $1 AND idempotency_key = $2"
        ))
        .await?;
    let row = client.query_opt(&statement, &[&source, &key]).await?;
    row.map(|row| event_from_row(&row)).transpose()
}

const FILTER: &str = "($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR source = $2) \
     AND ($3::bigint IS NULL OR created_at >= $3) AND ($4::bigint IS NULL OR created_at < $4)";

pub async fn list_events(
    client: &Client,
    filter: &EventFilter,
    limit: usize,
    before: Option<i64>,
) -> Result<EventPage> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS} FROM events
             WHERE {FILTER} AND ($5::bigint IS NULL OR seq < $5)
             ORDER BY seq DESC LIMIT $6"
        ))
        .await?;
    let rows = client
        .query(
            &statement,
            &[
                &filter.status.map(EventStatus::as_str),
                &filter.source,
                &filter.since.map(|t| t.0),
                &filter.until.map(|t| t.0),
                &before,
                &(limit as i64 + 1),
            ],
        )
        .await?;
    let events = rows
        .iter()
        .map(event_from_row)
        .collect::<Result<Vec<_>>>()?;
    Ok(EventPage::from_rows(events, limit))
}

pub async fn replay(client: &Client, id: &EventId, fresh_attempts: u32) -> Result<ReplayOutcome> {
    let read = client
        .prepare_cached("SELECT status, attempts FROM events WHERE id = $1")
        .await?;
    // The write is fenced on what was read; should a worker change the event in
    // between, read and decide again.
    for _ in 0..3 {
        let current = match client.query_opt(&read, &[&id.as_str()]).await? {
            Some(row) => Some((parse_status(row.col(0)?)?, row.col::<i32>(1)? as u32)),
            None => None,
        };
        let replay = match lifecycle::replay(current, fresh_attempts) {
            Ok(replay) => replay,
            Err(refused) => return Ok(refused.into()),
        };
        let (status, attempts) = current.expect("replay needs an event");
        let applied = apply_replays(
            client,
            &[(id.as_str().to_owned(), status, attempts, replay)],
        )
        .await?;
        if !applied.is_empty() {
            return Ok(ReplayOutcome::Queued);
        }
    }
    let current = client.query_opt(&read, &[&id.as_str()]).await?;
    Ok(match current {
        Some(row) => ReplayOutcome::NotReplayable(parse_status(row.col(0)?)?),
        None => ReplayOutcome::NotFound,
    })
}

/// Writes replays the domain decided, in one statement, each fenced on the status and
/// attempts it was decided from. Returns the `seq` of each event replayed.
async fn apply_replays(
    client: &Client,
    replays: &[(String, EventStatus, u32, Replay)],
) -> Result<Vec<i64>> {
    let statement = client
        .prepare_cached(
            "UPDATE events AS e
             SET status = d.status, next_attempt_at = $1, updated_at = $1,
                 max_attempts = d.max_attempts, attempts_at_replay = d.attempts_at_replay
             FROM unnest($2::text[], $3::text[], $4::int[], $5::text[], $6::int[], $7::int[])
                  AS d(id, from_status, from_attempts, status, max_attempts, attempts_at_replay)
             WHERE e.id = d.id AND e.status = d.from_status AND e.attempts = d.from_attempts
             RETURNING e.seq",
        )
        .await?;
    let ids: Vec<&str> = replays.iter().map(|r| r.0.as_str()).collect();
    let from: Vec<&str> = replays.iter().map(|r| r.1.as_str()).collect();
    let attempts: Vec<i32> = replays.iter().map(|r| r.2 as i32).collect();
    let to: Vec<&str> = replays.iter().map(|r| r.3.status.as_str()).collect();
    let max: Vec<i32> = replays
        .iter()
        .map(|r| r.3.max_attempts.min(i32::MAX as u32) as i32)
        .collect();
    let at_replay: Vec<i32> = replays
        .iter()
        .map(|r| r.3.attempts_at_replay as i32)
        .collect();
    let rows = client
        .query(
            &statement,
            &[
                &Timestamp::now().0,
                &ids,
                &from,
                &attempts,
                &to,
                &max,
                &at_replay,
            ],
        )
        .await?;
    rows.iter().map(|row| row.col(0)).collect()
}

/// One batch of a bulk replay: up to `limit` matching events with `after_seq < seq <=
/// upto_seq`, oldest first.
pub async fn replay_matching(
    client: &Client,
    filter: &EventFilter,
    fresh_attempts: u32,
    after_seq: i64,
    upto_seq: i64,
    limit: usize,
) -> Result<ReplayBatch> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT seq, id, status, attempts FROM events
             WHERE seq > $5 AND seq <= $6 AND status IN {REPLAYABLE} AND {FILTER}
             ORDER BY seq LIMIT $7"
        ))
        .await?;
    let rows = client
        .query(
            &statement,
            &[
                &filter.status.map(EventStatus::as_str),
                &filter.source,
                &filter.since.map(|t| t.0),
                &filter.until.map(|t| t.0),
                &after_seq,
                &upto_seq,
                &(limit as i64),
            ],
        )
        .await?;
    let mut last_seq = None;
    let mut replays = Vec::with_capacity(rows.len());
    for row in &rows {
        last_seq = Some(row.col::<i64>(0)?);
        let (status, attempts) = (parse_status(row.col(2)?)?, row.col::<i32>(3)? as u32);
        if let Ok(replay) = lifecycle::replay(Some((status, attempts)), fresh_attempts) {
            replays.push((row.col::<String>(1)?, status, attempts, replay));
        }
    }
    let replayed = apply_replays(client, &replays).await?.len() as u64;
    Ok(ReplayBatch {
        replayed,
        last_seq,
        examined: rows.len(),
    })
}

/// The newest event's `seq`: a bulk replay stops there, so events that arrive while it
/// runs are not part of it.
pub async fn last_seq(client: &Client) -> Result<i64> {
    let statement = client
        .prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM events")
        .await?;
    client.query_one(&statement, &[]).await?.col(0)
}

fn event_from_row(row: &Row) -> Result<EventRecord> {
    let status = parse_status(row.col(3)?)?;
    let next_attempt_at: Option<i64> = row.col(7)?;
    Ok(EventRecord {
        seq: row.col(0)?,
        id: EventId::from_stored(row.col(1)?),
        source: row.col(2)?,
        status,
        attempts: row.col::<i32>(4)? as u32,
        max_attempts: row.col::<i32>(5)? as u32,
        last_error: row.col(6)?,
        next_retry_at: next_attempt_at
            .filter(|_| status == EventStatus::Retrying)
            .map(Timestamp),
        created_at: Timestamp(row.col(8)?),
        updated_at: Timestamp(row.col(9)?),
        content_type: row.col(10)?,
        headers: row.col(11)?,
        body: row.col(12)?,
        idempotency_key: row.col(13)?,
    })
}

fn parse_status(text: &str) -> Result<EventStatus> {
    text.parse().map_err(StoreError::internal)
}

pub async fn list_attempts(client: &Client, id: &EventId) -> Result<Option<Vec<AttemptRecord>>> {
    let exists = client
        .prepare_cached("SELECT 1 FROM events WHERE id = $1")
        .await?;
    if client.query_opt(&exists, &[&id.as_str()]).await?.is_none() {
        return Ok(None);
    }
    let statement = client
        .prepare_cached(
            "SELECT attempt, started_at, duration_us, status_code, error, response_body
             FROM attempts WHERE event_id = $1 ORDER BY started_at, seq",
        )
        .await?;
    let rows = client.query(&statement, &[&id.as_str()]).await?;
    Ok(Some(
        rows.iter()
            .map(|row| {
                Ok(AttemptRecord {
                    attempt: row.col::<i32>(0)? as u32,
                    started_at: Timestamp(row.col(1)?),
                    duration: Duration::from_micros(row.col::<i64>(2)?.max(0) as u64),
                    status_code: row.col::<Option<i32>>(3)?.map(|c| c as u16),
                    error: row.col(4)?,
                    response_body: row.col(5)?,
                })
            })
            .collect::<Result<_>>()?,
    ))
}

pub async fn claim(client: &mut Client, limit: usize, lease: Duration) -> Result<Claim> {
    let now = Timestamp::now();
    let tx = client.transaction().await?;
    let reclaimed = fail_expired_leases(&tx, now).await?;
    let statement = tx
        .prepare_cached(concat!(
            "UPDATE events
             SET status = $4, attempts = attempts + 1, attempt_started_at = $1,
                 lease_until = $2, updated_at = $1
             WHERE id IN (SELECT id FROM events
                          WHERE status IN ",
            claimable!(),
            " AND next_attempt_at <= $1
                          ORDER BY next_attempt_at LIMIT $3
                          FOR UPDATE SKIP LOCKED)
             RETURNING id, source, attempts, max_attempts, content_type, headers, body, created_at,
                   attempts_at_replay, forward"
        ))
        .await?;
    let rows = tx
        .query(
            &statement,
            &[
                &now.0,
                &now.plus(lease).0,
                &(limit as i64),
                &CLAIMED.as_str(),
            ],
        )
        .await?;
    let events = rows
        .iter()
        .map(|row| {
            Ok(ClaimedEvent {
                id: EventId::from_stored(row.col(0)?),
                source: row.col(1)?,
                attempt: row.col::<i32>(2)? as u32,
                max_attempts: row.col::<i32>(3)? as u32,
                content_type: row.col(4)?,
                headers: row.col(5)?,
                body: Bytes::from(row.col::<Vec<u8>>(6)?),
                received_at: Timestamp(row.col(7)?),
                attempts_at_replay: row.col::<i32>(8)? as u32,
                forward: row.col(9)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let next_due = tx
        .prepare_cached(concat!(
            // ORDER BY … LIMIT 1 rather than MIN(): a cached generic plan may otherwise
            // aggregate over the whole queue instead of reading one index entry.
            "SELECT LEAST(
                 (SELECT next_attempt_at FROM events WHERE status IN ",
            claimable!(),
            "
                  ORDER BY next_attempt_at LIMIT 1),
                 (SELECT lease_until FROM events WHERE lease_until IS NOT NULL
                  ORDER BY lease_until LIMIT 1))"
        ))
        .await?;
    let next_due: Option<i64> = tx.query_one(&next_due, &[]).await?.col(0)?;
    tx.commit().await?;
    Ok(Claim {
        events,
        reclaimed,
        next_due: next_due.map(Timestamp),
    })
}

/// An attempt whose lease ran out counts as failed, so that an event which kills its
/// worker cannot loop forever; the event is due again at once, or dead-lettered.
async fn fail_expired_leases(tx: &Transaction<'_>, now: Timestamp) -> Result<Vec<ReclaimedEvent>> {
    let select = tx
        .prepare_cached(concat!(
            "SELECT id, source, attempts, max_attempts, attempt_started_at FROM events
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
        let id = EventId::from_stored(row.col(0)?);
        let source: String = row.col(1)?;
        let attempt = row.col::<i32>(2)? as u32;
        let max_attempts = row.col::<i32>(3)? as u32;
        let started_at = Timestamp(row.col::<Option<i64>>(4)?.unwrap_or(now.0));
        let Expiry {
            status,
            error,
            next_attempt_at,
        } = lifecycle::expire(attempt, max_attempts, now);
        // Fenced on the attempt whose lease ran out (the row is also locked).
        let update = tx
            .prepare_cached(concat!(
                "UPDATE events SET status = $2, last_error = $3, next_attempt_at = $4,
                        lease_until = NULL, attempt_started_at = NULL, updated_at = $5
                 WHERE id = $1 AND attempts = $6 AND status = ",
                claimed!()
            ))
            .await?;
        tx.execute(
            &update,
            &[
                &id.as_str(),
                &status.as_str(),
                &error,
                &next_attempt_at.map(|t| t.0),
                &now.0,
                &(attempt as i32),
            ],
        )
        .await?;
        let record = AttemptRecord {
            attempt,
            started_at,
            duration: started_at.until(now),
            status_code: None,
            error: Some(error),
            response_body: None,
        };
        insert_attempt(tx, &id, &record).await?;
        reclaimed.push(ReclaimedEvent {
            id,
            source,
            attempt,
            status,
        });
    }
    Ok(reclaimed)
}

async fn insert_attempt(tx: &Transaction<'_>, id: &EventId, record: &AttemptRecord) -> Result<()> {
    let statement = tx
        .prepare_cached(
            "INSERT INTO attempts (event_id, attempt, started_at, duration_us, status_code,
                                   error, response_body)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .await?;
    tx.execute(
        &statement,
        &[
            &id.as_str(),
            &(record.attempt as i32),
            &record.started_at.0,
            &(record.duration.as_micros() as i64),
            &record.status_code.map(i32::from),
            &record.error,
            &record.response_body,
        ],
    )
    .await?;
    Ok(())
}

pub async fn renew_leases(
    client: &Client,
    attempts: &[(EventId, u32)],
    lease: Duration,
) -> Result<usize> {
    let ids: Vec<&str> = attempts.iter().map(|(id, _)| id.as_str()).collect();
    let numbers: Vec<i32> = attempts.iter().map(|(_, n)| *n as i32).collect();
    let statement = client
        .prepare_cached(concat!(
            "UPDATE events e SET lease_until = $1
             FROM unnest($2::text[], $3::int[]) AS running(id, attempt)
             WHERE e.id = running.id AND e.attempts = running.attempt
               AND e.status = ",
            claimed!()
        ))
        .await?;
    let renewed = client
        .execute(
            &statement,
            &[&Timestamp::now().plus(lease).0, &ids, &numbers],
        )
        .await?;
    Ok(renewed as usize)
}

/// One statement (one round trip, one implicit transaction): the outcome and its
/// attempt record are written together or not at all.
pub async fn finish_attempt(client: &Client, finished: &FinishedAttempt) -> Result<bool> {
    let now = Timestamp::now();
    // The attempt number fences out a worker whose lease was taken over.
    let statement = client
        .prepare_cached(concat!(
            "WITH updated AS (
                 UPDATE events SET status = $3, last_error = $4, next_attempt_at = $5,
                        lease_until = NULL, attempt_started_at = NULL, updated_at = $6
                 WHERE id = $1 AND attempts = $2 AND status = ",
            claimed!(),
            "
                 RETURNING id)
             INSERT INTO attempts (event_id, attempt, started_at, duration_us, status_code,
                                   error, response_body)
             SELECT id, $2, $7, $8, $9, $4, $10 FROM updated"
        ))
        .await?;
    let record = &finished.record;
    let written = client
        .execute(
            &statement,
            &[
                &finished.id.as_str(),
                &(finished.attempt as i32),
                &finished.status.as_str(),
                &record.error,
                &finished.next_attempt_at.map(|t| t.0),
                &now.0,
                &record.started_at.0,
                &(record.duration.as_micros() as i64),
                &record.status_code.map(i32::from),
                &record.response_body,
            ],
        )
        .await?;
    Ok(written == 1)
}

pub async fn release(client: &Client, id: &EventId, attempt: u32) -> Result<()> {
    let now = Timestamp::now().0;
    let release = lifecycle::release(attempt);
    let statement = client
        .prepare_cached(concat!(
            "UPDATE events
             SET status = $4, attempts = $5, next_attempt_at = $3, lease_until = NULL,
                 attempt_started_at = NULL, updated_at = $3
             WHERE id = $1 AND attempts = $2 AND status = ",
            claimed!()
        ))
        .await?;
    client
        .execute(
            &statement,
            &[
                &id.as_str(),
                &(attempt as i32),
                &now,
                &release.status.as_str(),
                &(release.attempts as i32),
            ],
        )
        .await?;
    Ok(())
}

pub async fn prune(
    client: &Client,
    delivered_before: Timestamp,
    dead_before: Option<Timestamp>,
    batch: usize,
) -> Result<u64> {
    // One statement: the chosen events and their attempts go together. SKIP LOCKED
    // keeps several workers' pruners (and claims) out of each other's way.
    let statement = client
        .prepare_cached(
            "WITH doomed AS (
                 SELECT seq, id FROM events
                 WHERE (status = 'delivered' AND updated_at < $1)
                    OR (status = 'dead_lettered' AND $2::bigint IS NOT NULL AND updated_at < $2)
                 ORDER BY seq LIMIT $3
                 FOR UPDATE SKIP LOCKED),
             gone_attempts AS (
                 DELETE FROM attempts WHERE event_id IN (SELECT id FROM doomed))
             DELETE FROM events WHERE seq IN (SELECT seq FROM doomed)",
        )
        .await?;
    let deleted = client
        .execute(
            &statement,
            &[
                &delivered_before.0,
                &dead_before.map(|t| t.0),
                &(batch as i64),
            ],
        )
        .await?;
    Ok(deleted)
}

pub async fn gauges(client: &Client) -> Result<QueueGauges> {
    let now = Timestamp::now();
    // Each count reads one partial index; the history is never scanned.
    let statement = client
        .prepare_cached(
            "SELECT
                 (SELECT COUNT(*) FROM events WHERE status IN ('queued', 'retrying') AND status = 'queued'),
                 (SELECT COUNT(*) FROM events WHERE status IN ('queued', 'retrying') AND status = 'retrying'),
                 (SELECT COUNT(*) FROM events WHERE lease_until IS NOT NULL),
                 (SELECT COUNT(*) FROM events WHERE status = 'dead_lettered'),
                 (SELECT next_attempt_at FROM events WHERE status IN ('queued', 'retrying')
                  ORDER BY next_attempt_at LIMIT 1)",
        )
        .await?;
    let row = client.query_one(&statement, &[]).await?;
    let oldest_due: Option<i64> = row.col(4)?;
    Ok(QueueGauges {
        queued: row.col(0)?,
        retrying: row.col(1)?,
        processing: row.col(2)?,
        dead_lettered: row.col(3)?,
        queue_lag: oldest_due
            .map(|due| Timestamp(due).until(now))
            .unwrap_or_default(),
    })
}

/// Most of the history is delivered, so the capped scan stops after about `cap` rows.
pub async fn count_delivered(client: &Client, cap: u64) -> Result<u64> {
    let statement = client
        .prepare_cached(
            "SELECT COUNT(*) FROM (SELECT 1 FROM events WHERE status = 'delivered' LIMIT $1) AS capped",
        )
        .await?;
    let row = client.query_one(&statement, &[&(cap as i64)]).await?;
    Ok(row.col::<i64>(0)? as u64)
}

/// A real write, so that a read-only or unreachable database shows; and an insert
/// into `events` that adds no row but takes the lock every insert takes, so that a
/// lock held on the table shows too.
pub async fn probe_write(client: &Client) -> Result<()> {
    let events = client
        .prepare_cached("INSERT INTO events (id) SELECT NULL WHERE false")
        .await?;
    client.execute(&events, &[]).await?;
    let statement = client
        .prepare_cached(
            "INSERT INTO hookrelay_meta (key, value) VALUES ('ready_probe', $1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .await?;
    client
        .execute(&statement, &[&Timestamp::now().0.to_string()])
        .await?;
    Ok(())
}

/// Reads a column; a type that does not match the schema is a fault of ours
/// (`Internal`), never a panic.
pub trait Column {
    fn col<'a, T: tokio_postgres::types::FromSql<'a>>(&'a self, index: usize) -> Result<T>;
}

impl Column for Row {
    fn col<'a, T: tokio_postgres::types::FromSql<'a>>(&'a self, index: usize) -> Result<T> {
        self.try_get(index)
            .map_err(|e| StoreError::Internal(Box::new(e)))
    }
}
