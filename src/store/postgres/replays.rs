//! Replays: one event, or every event a filter matches, queued again. (postgres)

use deadpool_postgres::{Client, GenericClient};

use super::column::Column;
use super::events::Result;
use super::events::{EVENT_FILTER, parse_status};
use crate::domain::event::EventId;
use crate::domain::lifecycle::{self, EventStatus, Replay};
use crate::domain::time::Timestamp;
use crate::store::sql::REPLAYABLE;
use crate::store::{AttemptBudget, EventFilter, ReplayBatch, ReplayOutcome};

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
pub(super) async fn apply_replays(
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
