//! Events, their deliveries and attempt records: written and read. (sqlite)

use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::domain::event::EventId;
use crate::domain::lifecycle::DeliveryState;
use crate::domain::lifecycle::EventStatus;
use crate::domain::time::Timestamp;
use crate::store::sql::FILTERED;
use crate::store::{
    AttemptRecord, DeliveryRecord, EventFilter, EventPage, EventRecord, InsertOutcome, NewDelivery,
    NewEvent,
};

pub fn insert_event(conn: &Connection, event: &NewEvent) -> rusqlite::Result<InsertOutcome> {
    let inserted = conn
        .prepare_cached(
            "INSERT INTO events (id, source, idempotency_key, event_type, created_at,
                                 content_type, headers, body, trace_context)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
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
            event.trace_context,
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

pub(super) fn insert_deliveries(
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

pub(super) fn with_deliveries(
    conn: &Connection,
    event: Option<EventRecord>,
) -> rusqlite::Result<Option<EventRecord>> {
    let Some(mut event) = event else {
        return Ok(None);
    };
    event.deliveries = deliveries_of(conn, &event.id)?;
    Ok(Some(event))
}

pub(super) fn deliveries_of(
    conn: &Connection,
    id: &EventId,
) -> rusqlite::Result<Vec<DeliveryRecord>> {
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

pub(super) const EVENT_COLUMNS: &str = "e.seq, e.id, e.source, e.event_type, e.created_at, e.content_type, \
     e.headers, e.body, e.idempotency_key, e.trace_context";

/// [`EVENT_COLUMNS`] with the body only when ?8 asks for it.
pub(super) const LIST_COLUMNS: &str = "e.seq, e.id, e.source, e.event_type, e.created_at, e.content_type, \
     e.headers, CASE WHEN ?8 THEN e.body ELSE x'' END, e.idempotency_key, e.trace_context";

/// What every filter shares about the event `e`: parameters ?2 (source), ?3 and ?4
/// (arrival).
pub(super) const EVENT_FILTER: &str = "(?2 IS NULL OR e.source = ?2) \
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
               WHEN ?1 = {FILTERED} THEN ?7 IS NULL
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

/// The newest delivery's `seq`: a bulk replay stops there, so deliveries made while it
/// runs are not part of it.
pub fn last_seq(conn: &Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM deliveries")?
        .query_row([], |row| row.get(0))
}

pub(super) fn event_from_row(row: &Row<'_>) -> rusqlite::Result<EventRecord> {
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
        trace_context: row.get(9)?,
        deliveries: Vec::new(),
    })
}

pub(super) fn parse_status(row: &Row<'_>, index: usize) -> rusqlite::Result<EventStatus> {
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

pub(super) fn insert_attempt(
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
