//! Replays: one event, or every event a filter matches, queued again. (sqlite)

use rusqlite::{Connection, params};

use super::events::{EVENT_FILTER, parse_status};
use crate::domain::event::EventId;
use crate::domain::lifecycle::{self, EventStatus, Replay};
use crate::domain::time::Timestamp;
use crate::store::sql::REPLAYABLE;
use crate::store::{AttemptBudget, EventFilter, ReplayBatch, ReplayOutcome};

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
pub(super) fn apply_replay(
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
