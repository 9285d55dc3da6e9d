//! The SQL of the PostgreSQL backend. Every function is one short transaction (or one
//! statement); none is held across a delivery.

use std::time::Duration;

use bytes::Bytes;
use deadpool_postgres::{Client, GenericClient, Transaction};
use tokio_postgres::Row;

use super::column::Column;
use crate::domain::event::EventId;
use crate::domain::lifecycle::DeliveryState;
use crate::domain::lifecycle::{self, CLAIMED, EventStatus, Expiry, Replay};
use crate::domain::outcomes::{self, Observed, Settled};
use crate::domain::protection::{self, BreakerChange, FlowState, OnDeadLetter, Wait};
use crate::domain::time::Timestamp;
use crate::store::sql::{REPLAYABLE, WAITING, WAITING_DESTINATIONS, claimable, claimed};
use crate::store::{
    AttemptBudget, AttemptRecord, Claim, ClaimRequest, ClaimedDelivery, DeliveryId, DeliveryRecord,
    DestinationRow, DestinationStats, EventFilter, EventPage, EventRecord, FLOW_COLUMNS,
    FinishedAttempt, InsertOutcome, NewDelivery, NewEvent, QueueGauges, ReclaimedDelivery,
    Recorded, ReplayBatch, ReplayOutcome, StoreError, WAITING_COUNT_CAP, Want, flow_state,
    flow_values,
};

/// Expired leases handled per claim; the rest wait for the next one.
const RECLAIM_BATCH: i64 = 100;

type Result<T> = std::result::Result<T, StoreError>;

/// Inserts events and their deliveries in one statement (one commit). Rows go in in
/// key order, so that two groups holding the same keys take their index locks in the
/// same order and cannot deadlock. Returns each event's outcome, in input order.
pub async fn insert_events(client: &Client, events: &[NewEvent]) -> Result<Vec<InsertOutcome>> {
    let statement = client
        .prepare_cached(
            "WITH input AS (
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],
                                      $5::bigint[], $6::text[], $7::text[], $8::bytea[])
                      AS i(id, source, key, event_type, created_at, content_type, headers, body)),
             inserted AS (
                 INSERT INTO events (id, source, idempotency_key, event_type, created_at,
                                     content_type, headers, body)
                 SELECT id, source, key, event_type, created_at, content_type, headers, body
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
fn delivery_arrays(deliveries: &[NewDelivery]) -> (Vec<&str>, Vec<i32>, Vec<Option<&str>>) {
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

const EVENT_COLUMNS: &str = "e.seq, e.id, e.source, e.event_type, e.created_at, e.content_type, \
     e.headers, e.body, e.idempotency_key";

/// [`EVENT_COLUMNS`] with the body only when $8 asks for it.
const LIST_COLUMNS: &str = "e.seq, e.id, e.source, e.event_type, e.created_at, e.content_type, \
     e.headers, CASE WHEN $8::boolean THEN e.body ELSE ''::bytea END, e.idempotency_key";

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
async fn with_deliveries(
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
const EVENT_FILTER: &str = "($2::text IS NULL OR e.source = $2) \
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
                   WHEN $1::text = 'filtered' THEN $7::text IS NULL
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

pub async fn replay(
    client: &Client,
    id: &EventId,
    destination: Option<&str>,
    budget: &AttemptBudget,
) -> Result<ReplayOutcome> {
    let exists = client
        .prepare_cached("SELECT 1 FROM events WHERE id = $1")
        .await?;
    if client.query_opt(&exists, &[&id.as_str()]).await?.is_none() {
        return Ok(ReplayOutcome::NotFound);
    }
    let read = client
        .prepare_cached(
            "SELECT seq, destination, status, attempts FROM deliveries
             WHERE event_id = $1 AND ($2::text IS NULL OR destination = $2) ORDER BY seq",
        )
        .await?;
    // Each write is fenced on what was read; should a worker change a delivery in
    // between, read and decide again.
    let mut refused = None;
    for _ in 0..3 {
        let rows = client.query(&read, &[&id.as_str(), &destination]).await?;
        if rows.is_empty() {
            return Ok(match destination {
                Some(_) => ReplayOutcome::NoDelivery,
                None => ReplayOutcome::NotReplayable(EventStatus::Filtered),
            });
        }
        let mut replays = Vec::new();
        refused = None;
        for row in &rows {
            let (status, attempts) = (parse_status(row.col(2)?)?, row.col::<i32>(3)? as u32);
            let fresh = budget.of(row.col(1)?);
            match lifecycle::replay(Some((status, attempts)), fresh) {
                Ok(replay) => replays.push((row.col::<i64>(0)?, status, attempts, replay)),
                Err(why) => refused = refused.or(Some(why)),
            }
        }
        if replays.is_empty() {
            break;
        }
        let applied = apply_replays(client, &replays).await?;
        if !applied.is_empty() {
            return Ok(ReplayOutcome::Queued(applied.len() as u64));
        }
    }
    Ok(match refused {
        Some(why) => why.into(),
        None => ReplayOutcome::NotReplayable(EventStatus::Processing),
    })
}

/// Writes replays the domain decided, in one statement, each fenced on the status and
/// attempts it was decided from. Returns the `seq` of each delivery replayed.
async fn apply_replays(
    client: &Client,
    replays: &[(i64, EventStatus, u32, Replay)],
) -> Result<Vec<i64>> {
    let statement = client
        .prepare_cached(
            "UPDATE deliveries AS d
             SET status = r.status, next_attempt_at = $1, updated_at = $1,
                 max_attempts = r.max_attempts, attempts_at_replay = r.attempts_at_replay
             FROM unnest($2::bigint[], $3::text[], $4::int[], $5::text[], $6::int[], $7::int[])
                  AS r(seq, from_status, from_attempts, status, max_attempts, attempts_at_replay)
             WHERE d.seq = r.seq AND d.status = r.from_status AND d.attempts = r.from_attempts
             RETURNING d.seq",
        )
        .await?;
    let seqs: Vec<i64> = replays.iter().map(|r| r.0).collect();
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
                &seqs,
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

/// One batch of a bulk replay: up to `limit` matching deliveries with `after_seq < seq
/// <= upto_seq`, oldest first.
pub async fn replay_matching(
    client: &Client,
    filter: &EventFilter,
    budget: &AttemptBudget,
    after_seq: i64,
    upto_seq: i64,
    limit: usize,
) -> Result<ReplayBatch> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT d.seq, d.destination, d.status, d.attempts
             FROM deliveries d JOIN events e ON e.id = d.event_id
             WHERE d.seq > $5 AND d.seq <= $6 AND d.status IN {REPLAYABLE}
               AND ($1::text IS NULL OR d.status = $1)
               AND ($8::text IS NULL OR d.destination = $8)
               AND {EVENT_FILTER}
             ORDER BY d.seq LIMIT $7"
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
                &filter.destination,
            ],
        )
        .await?;
    let mut last_seq = None;
    let mut replays = Vec::with_capacity(rows.len());
    for row in &rows {
        let seq = row.col::<i64>(0)?;
        last_seq = Some(seq);
        let (status, attempts) = (parse_status(row.col(2)?)?, row.col::<i32>(3)? as u32);
        let fresh = budget.of(row.col(1)?);
        if let Ok(replay) = lifecycle::replay(Some((status, attempts)), fresh) {
            replays.push((seq, status, attempts, replay));
        }
    }
    let replayed = apply_replays(client, &replays).await?.len() as u64;
    Ok(ReplayBatch {
        replayed,
        last_seq,
        examined: rows.len(),
    })
}

/// The newest delivery's `seq`: a bulk replay stops there, so deliveries made while it
/// runs are not part of it.
pub async fn last_seq(client: &Client) -> Result<i64> {
    let statement = client
        .prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM deliveries")
        .await?;
    client.query_one(&statement, &[]).await?.col(0)
}

fn event_from_row(row: &Row) -> Result<EventRecord> {
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
        deliveries: Vec::new(),
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

fn earliest(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

async fn next_due_for(
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
async fn claim_for(
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

/// The destination's state; `lock`: its row is held until the transaction ends (and
/// made first if it has none, so that there is a row to hold).
async fn read_flow<C: GenericClient>(
    client: &C,
    destination: &str,
    lock: bool,
) -> Result<FlowState> {
    if lock {
        let create = client
            .prepare_cached("INSERT INTO destinations (name) VALUES ($1) ON CONFLICT DO NOTHING")
            .await?;
        client.execute(&create, &[&destination]).await?;
    }
    let text = if lock {
        format!("SELECT {FLOW_COLUMNS} FROM destinations WHERE name = $1 FOR UPDATE")
    } else {
        format!("SELECT {FLOW_COLUMNS} FROM destinations WHERE name = $1")
    };
    let statement = client.prepare_cached(&text).await?;
    client
        .query_opt(&statement, &[&destination])
        .await?
        .map(|row| flow_from_row(&row))
        .transpose()
        .map(Option::unwrap_or_default)
}

fn flow_from_row(row: &Row) -> Result<FlowState> {
    Ok(flow_state(
        row.col(0)?,
        i64::from(row.col::<i32>(1)?),
        row.col(2)?,
        row.col(3)?,
        row.col(4)?,
        row.col(5)?,
        row.col(6)?,
    ))
}

async fn write_flow<C: GenericClient>(
    client: &C,
    destination: &str,
    flow: &FlowState,
) -> Result<()> {
    let (failures, since, probe_at, pause, tokens, tokens_at) = flow_values(flow);
    let statement = client
        .prepare_cached(
            "INSERT INTO destinations (name, failures, breaker_since, probe_at, probe_pause_us,
                                       tokens, tokens_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (name) DO UPDATE SET
                 failures = excluded.failures, breaker_since = excluded.breaker_since,
                 probe_at = excluded.probe_at, probe_pause_us = excluded.probe_pause_us,
                 tokens = excluded.tokens, tokens_at = excluded.tokens_at",
        )
        .await?;
    client
        .execute(
            &statement,
            &[
                &destination,
                &(failures.min(i64::from(i32::MAX)) as i32),
                &since,
                &probe_at,
                &pause,
                &tokens,
                &tokens_at,
            ],
        )
        .await?;
    Ok(())
}

async fn in_flight_of<C: GenericClient>(client: &C, destination: &str) -> Result<u32> {
    let statement = client
        .prepare_cached(
            "SELECT COUNT(*) FROM deliveries WHERE destination = $1 AND lease_until IS NOT NULL",
        )
        .await?;
    let count: i64 = client
        .query_one(&statement, &[&destination])
        .await?
        .col(0)?;
    Ok(count.clamp(0, i64::from(u32::MAX)) as u32)
}

pub async fn set_paused(client: &Client, destination: &str, paused: bool) -> Result<bool> {
    let statement = client
        .prepare_cached(
            "INSERT INTO destinations (name, paused, paused_at) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET paused = excluded.paused,
                 paused_at = excluded.paused_at
             WHERE destinations.paused <> excluded.paused",
        )
        .await?;
    let changed = client
        .execute(
            &statement,
            &[&destination, &paused, &paused.then(|| Timestamp::now().0)],
        )
        .await?;
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
         WHERE name = $5 AND (paused OR breaker_since IS NOT NULL))";

/// One statement: lease due deliveries of one destination and read their events.
async fn lease_due<C: GenericClient>(
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
                           attempts_at_replay)
             SELECT l.seq, l.event_id, l.destination, l.attempts, l.max_attempts,
                    l.attempts_at_replay, e.source, e.content_type, e.headers, e.body,
                    e.created_at
             FROM leased l JOIN events e ON e.id = l.event_id",
            claimable!(),
            ordering_clause(want),
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
                probe: false,
            })
        })
        .collect()
}

/// An attempt whose lease ran out counts as failed, so that a delivery which kills its
/// worker cannot loop forever; it is due again at once, or dead-lettered.
async fn fail_expired_leases(
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

async fn insert_attempt(
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
async fn write_outcomes<C: GenericClient>(
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
                        MAX(CASE WHEN f.status = 'delivered' THEN $12 END),
                        MAX(CASE WHEN f.status <> 'delivered' THEN $12 END)
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

pub async fn prune(
    client: &Client,
    delivered_before: Timestamp,
    dead_before: Option<Timestamp>,
    batch: usize,
) -> Result<u64> {
    // One statement: the chosen events, their deliveries and attempts go together. An
    // event goes only when every delivery is finished and old enough; SKIP LOCKED
    // keeps several workers' pruners out of each other's way.
    let statement = client
        .prepare_cached(
            "WITH doomed AS (
                 SELECT e.seq, e.id FROM events e
                 WHERE e.created_at < GREATEST($1, COALESCE($2::bigint, $1))
                   AND NOT EXISTS (
                       SELECT 1 FROM deliveries d WHERE d.event_id = e.id
                       AND NOT ((d.status = 'delivered' AND d.updated_at < $1)
                                OR (d.status = 'dead_lettered' AND $2::bigint IS NOT NULL
                                    AND d.updated_at < $2)))
                   AND (e.created_at < $1
                        OR EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id))
                 ORDER BY e.seq LIMIT $3
                 FOR UPDATE SKIP LOCKED),
             gone_attempts AS (
                 DELETE FROM attempts WHERE event_id IN (SELECT id FROM doomed)),
             gone_deliveries AS (
                 DELETE FROM deliveries WHERE event_id IN (SELECT id FROM doomed))
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
    // Each count reads one partial index, and stops at the cap: the history is never
    // scanned, nor a day's backlog.
    let statement = client
        .prepare_cached(&format!(
            "{WAITING_DESTINATIONS}
             SELECT
                 (SELECT COUNT(*) FROM (SELECT 1 FROM deliveries
                     WHERE status IN ('queued', 'retrying') LIMIT $1 + (SELECT COUNT(*) FROM
                         (SELECT 1 FROM deliveries WHERE status = 'retrying' LIMIT $1) r1)) w),
                 (SELECT COUNT(*) FROM (SELECT 1 FROM deliveries
                     WHERE status = 'retrying' LIMIT $1) r),
                 (SELECT COUNT(*) FROM deliveries WHERE lease_until IS NOT NULL),
                 (SELECT COUNT(*) FROM (SELECT 1 FROM deliveries
                     WHERE status = 'dead_lettered' LIMIT $1) d),
                 (SELECT MIN((SELECT MIN(next_attempt_at) FROM deliveries
                              WHERE destination = waiting.name
                                AND status IN ('queued', 'retrying')))
                  FROM waiting WHERE waiting.name IS NOT NULL)",
        ))
        .await?;
    let row = client.query_one(&statement, &[&WAITING_COUNT_CAP]).await?;
    let oldest_due: Option<i64> = row.col(4)?;
    Ok(QueueGauges {
        // Waiting less retrying, with no look at the rows themselves: the due index
        // alone counts the waiting ones.
        queued: (row.col::<i64>(0)? - row.col::<i64>(1)?).min(WAITING_COUNT_CAP),
        retrying: row.col(1)?,
        processing: row.col(2)?,
        dead_lettered: row.col(3)?,
        queue_lag: oldest_due
            .map(|due| Timestamp(due).until(now))
            .unwrap_or_default(),
    })
}

/// Among the newest `10 × cap` deliveries only: most of the history is delivered, so
/// the scan usually stops after about `cap` rows, and a day's backlog of waiting ones
/// cannot make it read everything.
pub async fn count_delivered(client: &Client, cap: u64) -> Result<u64> {
    let statement = client
        .prepare_cached(
            "SELECT COUNT(*) FROM (SELECT 1 FROM (SELECT status FROM deliveries
                                                  ORDER BY seq DESC LIMIT $1::bigint * 10) newest
                                   WHERE status = 'delivered' LIMIT $1::bigint) AS capped",
        )
        .await?;
    let row = client.query_one(&statement, &[&(cap as i64)]).await?;
    Ok(row.col::<i64>(0)? as u64)
}

pub async fn destination_stats(client: &Client) -> Result<Vec<DestinationStats>> {
    let now = Timestamp::now().0;
    // Each destination with waiting deliveries, one index seek apiece (a loose index
    // scan); then its counts, each stopping at the cap, and its oldest due delivery
    // from the index's front.
    let waiting = client
        .prepare_cached(&format!(
            "{WAITING_DESTINATIONS}
             SELECT w.name,
                 (SELECT COUNT(*) FROM (SELECT 1 FROM deliveries WHERE destination = w.name
                     AND status IN {WAITING} AND next_attempt_at <= $1 LIMIT $2) due),
                 (SELECT COUNT(*) FROM (SELECT 1 FROM deliveries WHERE destination = w.name
                     AND status IN {WAITING} AND next_attempt_at > $1 LIMIT $2) later),
                 (SELECT MIN(next_attempt_at) FROM deliveries WHERE destination = w.name
                     AND status IN {WAITING} AND next_attempt_at <= $1)
             FROM waiting w WHERE w.name IS NOT NULL"
        ))
        .await?;
    let waiting = client
        .query(&waiting, &[&now, &WAITING_COUNT_CAP])
        .await?
        .iter()
        .map(|row| Ok((row.col(0)?, row.col(1)?, row.col(2)?, row.col(3)?)))
        .collect::<Result<_>>()?;
    let in_flight = client
        .prepare_cached(
            "SELECT destination, COUNT(*) FROM deliveries WHERE lease_until IS NOT NULL
             GROUP BY destination",
        )
        .await?;
    let in_flight = client
        .query(&in_flight, &[])
        .await?
        .iter()
        .map(|row| Ok((row.col(0)?, row.col(1)?)))
        .collect::<Result<_>>()?;
    let rows = client
        .prepare_cached(&format!(
            "SELECT {FLOW_COLUMNS}, name, last_success_at, last_failure_at, throttled_at,
                    paused_at, lagging_since
             FROM destinations"
        ))
        .await?;
    let rows = client
        .query(&rows, &[])
        .await?
        .iter()
        .map(|row| {
            Ok(DestinationRow {
                flow: flow_from_row(row)?,
                name: row.col(7)?,
                last_success_at: row.col::<Option<i64>>(8)?.map(Timestamp),
                last_failure_at: row.col::<Option<i64>>(9)?.map(Timestamp),
                throttled_at: row.col::<Option<i64>>(10)?.map(Timestamp),
                paused_at: row.col::<Option<i64>>(11)?.map(Timestamp),
                lagging_since: row.col::<Option<i64>>(12)?.map(Timestamp),
            })
        })
        .collect::<Result<_>>()?;
    let last_alerts = super::alerts::last_alerts(client).await?;
    Ok(DestinationStats::merge(
        waiting,
        in_flight,
        rows,
        last_alerts,
    ))
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
