//! Events, their deliveries and attempt records: written and read. (postgres)

use std::time::Duration;

use deadpool_postgres::{Client, GenericClient, Transaction};
use tokio_postgres::Row;

use super::column::Column;
use crate::domain::event::EventId;
use crate::domain::lifecycle::DeliveryState;
use crate::domain::lifecycle::EventStatus;
use crate::domain::time::Timestamp;
use crate::store::sql::FILTERED;
use crate::store::{
    AttemptRecord, DeliveryRecord, EventFilter, EventPage, EventRecord, InsertOutcome, NewDelivery,
    NewEvent, StoreError,
};

pub(super) type Result<T> = std::result::Result<T, StoreError>;

/// Inserts events and their deliveries in one statement (one commit). Rows go in in
/// key order, so that two groups holding the same keys take their index locks in the
/// same order and cannot deadlock. Returns each event's outcome, in input order.
pub async fn insert_events(client: &Client, events: &[NewEvent]) -> Result<Vec<InsertOutcome>> {
    let statement = client
        .prepare_cached(
            "WITH input AS (
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],
                                      $5::bigint[], $6::text[], $7::text[], $8::bytea[],
                                      $15::text[])
                      AS i(id, source, key, event_type, created_at, content_type, headers, body,
                           trace_context)),
             inserted AS (
                 INSERT INTO events (id, source, idempotency_key, event_type, created_at,
                                     content_type, headers, body, trace_context)
                 SELECT id, source, key, event_type, created_at, content_type, headers, body,
                        trace_context
                 FROM input ORDER BY source, key
                 ON CONFLICT (source, idempotency_key) DO NOTHING
                 RETURNING id),
             delivered AS (
                 INSERT INTO deliveries (event_id, destination, status, max_attempts,
                                         next_attempt_at, updated_at, ordering_key)
                 SELECT d.event_id, d.destination, $9, d.max_attempts, d.at, d.at, d.key
                 FROM unnest($10::text[], $11::text[], $12::int[], $13::bigint[],
                             $14::text[])
                      WITH ORDINALITY AS d(event_id, destination, max_attempts, at, key, n)
                 JOIN inserted ON inserted.id = d.event_id
                 ORDER BY d.n)
             SELECT id FROM inserted",
        )
        .await?;
    let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    let sources: Vec<&str> = events.iter().map(|e| e.source.as_str()).collect();
    let keys: Vec<&str> = events.iter().map(|e| e.key.as_str()).collect();
    let types: Vec<Option<&str>> = events.iter().map(|e| e.event_type.as_deref()).collect();
    let created: Vec<i64> = events.iter().map(|e| e.received_at.0).collect();
    let content_types: Vec<Option<&str>> =
        events.iter().map(|e| e.content_type.as_deref()).collect();
    let headers: Vec<&str> = events.iter().map(|e| e.headers.as_str()).collect();
    let bodies: Vec<&[u8]> = events.iter().map(|e| &e.body[..]).collect();
    let traces: Vec<Option<&str>> = events.iter().map(|e| e.trace_context.as_deref()).collect();
    let mut delivery_events = Vec::new();
    let mut destinations = Vec::new();
    let mut max_attempts = Vec::new();
    let mut at = Vec::new();
    let mut ordering_keys = Vec::new();
    for event in events {
        for delivery in &event.deliveries {
            ordering_keys.push(delivery.ordering_key.as_deref());
            delivery_events.push(event.id.as_str());
            destinations.push(delivery.destination.as_str());
            max_attempts.push(delivery.max_attempts.min(i32::MAX as u32) as i32);
            at.push(event.received_at.0);
        }
    }
    let rows = client
        .query(
            &statement,
            &[
                &ids,
                &sources,
                &keys,
                &types,
                &created,
                &content_types,
                &headers,
                &bodies,
                &EventStatus::Queued.as_str(),
                &delivery_events,
                &destinations,
                &max_attempts,
                &at,
                &ordering_keys,
                &traces,
            ],
        )
        .await?;
    let inserted: std::collections::HashSet<String> =
        rows.iter().map(|row| row.col(0)).collect::<Result<_>>()?;
    let mut outcomes = Vec::with_capacity(events.len());
    for event in events {
        if inserted.contains(event.id.as_str()) {
            outcomes.push(InsertOutcome::Accepted(event.id.clone()));
            continue;
        }
        // A redelivery (of an earlier event, or of one earlier in this batch): the
        // conflict waited for that insert to commit, so its row is visible now.
        let select = client
            .prepare_cached("SELECT id FROM events WHERE source = $1 AND idempotency_key = $2")
            .await?;
        let row = client
            .query_one(&select, &[&event.source.as_str(), &event.key.as_str()])
            .await?;
        outcomes.push(InsertOutcome::Duplicate(EventId::from_stored(row.col(0)?)));
    }
    Ok(outcomes)
}

#[allow(clippy::type_complexity)]
pub(super) fn delivery_arrays(
    deliveries: &[NewDelivery],
) -> (Vec<&str>, Vec<i32>, Vec<Option<&str>>) {
    (
        deliveries.iter().map(|d| d.destination.as_str()).collect(),
        deliveries
            .iter()
            .map(|d| d.max_attempts.min(i32::MAX as u32) as i32)
            .collect(),
        deliveries
            .iter()
            .map(|d| d.ordering_key.as_deref())
            .collect(),
    )
}

pub async fn add_deliveries(
    client: &Client,
    id: &EventId,
    deliveries: &[NewDelivery],
) -> Result<bool> {
    // The event row is locked, so two replays of one filtered event cannot both add.
    let statement = client
        .prepare_cached(
            "WITH event AS (
                 SELECT e.id FROM events e WHERE e.id = $1
                 AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id)
                 FOR UPDATE),
             added AS (
                 INSERT INTO deliveries (event_id, destination, status, max_attempts,
                                         next_attempt_at, updated_at, ordering_key)
                 SELECT event.id, d.destination, $2, d.max_attempts, $3, $3, d.key
                 FROM event, unnest($4::text[], $5::int[], $6::text[]) WITH ORDINALITY
                      AS d(destination, max_attempts, key, n)
                 ORDER BY d.n
                 ON CONFLICT (event_id, destination) DO NOTHING)
             SELECT id FROM event",
        )
        .await?;
    let (destinations, max_attempts, keys) = delivery_arrays(deliveries);
    let row = client
        .query_opt(
            &statement,
            &[
                &id.as_str(),
                &EventStatus::Queued.as_str(),
                &Timestamp::now().0,
                &destinations,
                &max_attempts,
                &keys,
            ],
        )
        .await?;
    Ok(row.is_some())
}

pub async fn get_event(client: &Client, id: &EventId) -> Result<Option<EventRecord>> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS} FROM events e WHERE id = $1"
        ))
        .await?;
    let row = client.query_opt(&statement, &[&id.as_str()]).await?;
    let event = row.map(|row| event_from_row(&row)).transpose()?;
    with_deliveries(client, event.into_iter().collect())
        .await
        .map(|mut events| events.pop())
}

pub(super) const EVENT_COLUMNS: &str = "e.seq, e.id, e.source, e.event_type, e.created_at, e.content_type, \
     e.headers, e.body, e.idempotency_key, e.trace_context";

/// [`EVENT_COLUMNS`] with the body only when $8 asks for it.
pub(super) const LIST_COLUMNS: &str = "e.seq, e.id, e.source, e.event_type, e.created_at, e.content_type, \
     e.headers, CASE WHEN $8::boolean THEN e.body ELSE ''::bytea END, e.idempotency_key, e.trace_context";

pub async fn find_by_key(client: &Client, source: &str, key: &str) -> Result<Option<EventRecord>> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS} FROM events e WHERE source = $1 AND idempotency_key = $2"
        ))
        .await?;
    let row = client.query_opt(&statement, &[&source, &key]).await?;
    let event = row.map(|row| event_from_row(&row)).transpose()?;
    with_deliveries(client, event.into_iter().collect())
        .await
        .map(|mut events| events.pop())
}

/// Fills in the deliveries of `events`, in one query.
pub(super) async fn with_deliveries(
    client: &Client,
    mut events: Vec<EventRecord>,
) -> Result<Vec<EventRecord>> {
    if events.is_empty() {
        return Ok(events);
    }
    let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    let statement = client
        .prepare_cached(
            "SELECT event_id, destination, status, attempts, max_attempts, last_error,
                    next_attempt_at, updated_at
             FROM deliveries WHERE event_id = ANY($1) ORDER BY seq",
        )
        .await?;
    let rows = client.query(&statement, &[&ids]).await?;
    let mut by_event: std::collections::HashMap<String, Vec<DeliveryRecord>> =
        std::collections::HashMap::new();
    for row in rows {
        by_event
            .entry(row.col(0)?)
            .or_default()
            .push(DeliveryRecord {
                destination: row.col(1)?,
                state: DeliveryState {
                    status: parse_status(row.col(2)?)?,
                    attempts: row.col::<i32>(3)? as u32,
                    max_attempts: row.col::<i32>(4)? as u32,
                    last_error: row.col(5)?,
                    next_attempt_at: row.col::<Option<i64>>(6)?.map(Timestamp),
                    updated_at: Timestamp(row.col(7)?),
                },
            });
    }
    for event in &mut events {
        event.deliveries = by_event.remove(event.id.as_str()).unwrap_or_default();
    }
    Ok(events)
}

/// What every filter shares about the event `e`: parameters $2 (source), $3 and $4
/// (arrival).
pub(super) const EVENT_FILTER: &str = "($2::text IS NULL OR e.source = $2) \
     AND ($3::bigint IS NULL OR e.created_at >= $3) AND ($4::bigint IS NULL OR e.created_at < $4)";

pub async fn list_events(
    client: &Client,
    filter: &EventFilter,
    limit: usize,
    before: Option<i64>,
    bodies: bool,
) -> Result<EventPage> {
    // $1 status and $7 destination are about the deliveries: an event matches when one
    // of its deliveries does; `filtered` when it has none. $8: read the bodies.
    let statement = client
        .prepare_cached(&format!(
            "SELECT {LIST_COLUMNS} FROM events e
             WHERE {EVENT_FILTER} AND ($5::bigint IS NULL OR e.seq < $5)
               AND CASE
                   WHEN $1::text = {FILTERED} THEN $7::text IS NULL
                       AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id)
                   WHEN $1::text IS NULL AND $7::text IS NULL THEN true
                   ELSE EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id
                                AND ($1::text IS NULL OR d.status = $1)
                                AND ($7::text IS NULL OR d.destination = $7))
                   END
             ORDER BY e.seq DESC LIMIT $6"
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
                &filter.destination,
                &bodies,
            ],
        )
        .await?;
    let events = rows
        .iter()
        .map(event_from_row)
        .collect::<Result<Vec<_>>>()?;
    let mut page = EventPage::from_rows(events, limit);
    page.events = with_deliveries(client, page.events).await?;
    Ok(page)
}

/// The newest delivery's `seq`: a bulk replay stops there, so deliveries made while it
/// runs are not part of it.
pub async fn last_seq(client: &Client) -> Result<i64> {
    let statement = client
        .prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM deliveries")
        .await?;
    client.query_one(&statement, &[]).await?.col(0)
}

pub(super) fn event_from_row(row: &Row) -> Result<EventRecord> {
    Ok(EventRecord {
        seq: row.col(0)?,
        id: EventId::from_stored(row.col(1)?),
        source: row.col(2)?,
        event_type: row.col(3)?,
        created_at: Timestamp(row.col(4)?),
        content_type: row.col(5)?,
        headers: row.col(6)?,
        body: row.col(7)?,
        idempotency_key: row.col(8)?,
        trace_context: row.col(9)?,
        deliveries: Vec::new(),
    })
}

pub(super) fn parse_status(text: &str) -> Result<EventStatus> {
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
            "SELECT attempt, started_at, duration_us, status_code, error, response_body,
                    destination, probe
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
                    destination: row.col(6)?,
                    probe: row.col(7)?,
                })
            })
            .collect::<Result<_>>()?,
    ))
}

pub(super) async fn insert_attempt(
    tx: &Transaction<'_>,
    event_id: &EventId,
    record: &AttemptRecord,
) -> Result<()> {
    let statement = tx
        .prepare_cached(
            "INSERT INTO attempts (event_id, destination, attempt, started_at, duration_us,
                                   status_code, error, response_body, probe)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .await?;
    tx.execute(
        &statement,
        &[
            &event_id.as_str(),
            &record.destination,
            &(record.attempt as i32),
            &record.started_at.0,
            &(record.duration.as_micros() as i64),
            &record.status_code.map(i32::from),
            &record.error,
            &record.response_body,
            &record.probe,
        ],
    )
    .await?;
    Ok(())
}
