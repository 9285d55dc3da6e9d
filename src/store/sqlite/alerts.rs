//! The SQL of alerts and per-minute figures on SQLite.

use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::domain::alert::{AlertDetails, AlertKind, AlertRules, LagChange};
use crate::domain::outcomes::BreakerAlert;
use crate::domain::time::Timestamp;
use crate::store::sql::claimable;
use crate::store::{
    AlertOutcome, AlertRecord, DestinationSample, MinuteCount, MinuteRow, minute_of,
};

const ALERT_COLUMNS: &str = "id, kind, destination, created_at, episode, count, event_id,
     details, attempts, sent_at, last_error";

fn alert_from_row(row: &Row<'_>) -> rusqlite::Result<AlertRecord> {
    let kind: String = row.get(1)?;
    Ok(AlertRecord {
        id: row.get(0)?,
        kind: AlertKind::parse(&kind).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                1,
                rusqlite::types::Type::Text,
                format!("unknown alert kind {kind:?}").into(),
            )
        })?,
        destination: row.get(2)?,
        created_at: Timestamp(row.get(3)?),
        episode: row.get::<_, Option<i64>>(4)?.map(Timestamp),
        count: row.get(5)?,
        event_id: row.get(6)?,
        details: row.get(7)?,
        attempts: row.get(8)?,
        sent_at: row.get::<_, Option<i64>>(9)?.map(Timestamp),
        last_error: row.get(10)?,
    })
}

/// Raises an alert, due at once, unless one of its kind was raised for the same
/// episode already. Returns whether it was raised.
pub fn raise(
    conn: &Connection,
    kind: AlertKind,
    destination: &str,
    episode: Option<Timestamp>,
    details: &AlertDetails,
    now: Timestamp,
    settle: Duration,
) -> rusqlite::Result<bool> {
    // Failing again while a recovery waits out `settle`: the recovery was premature,
    // and the failure continues the episode already announced.
    if kind == AlertKind::Failing {
        let folded = conn
            .prepare_cached(
                "DELETE FROM alerts WHERE destination = ?1 AND kind = ?2 AND status = 'pending'
                   AND lease_until IS NULL AND attempts = 0 AND next_attempt_at > ?3",
            )?
            .execute(params![destination, AlertKind::Recovered.as_str(), now.0])?;
        if folded > 0 {
            return Ok(false);
        }
    }
    let send_at = AlertRules::send_at(kind, now, settle);
    let raised = conn
        .prepare_cached(
            "INSERT INTO alerts (kind, destination, created_at, episode, details,
                                 next_attempt_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (destination, kind, episode) WHERE episode IS NOT NULL DO NOTHING",
        )?
        .execute(params![
            kind.as_str(),
            destination,
            now.0,
            episode.map(|e| e.0),
            details.to_json(),
            send_at.0
        ])?;
    Ok(raised > 0)
}

/// Counts dead letters into the destination's digest for the window `now` falls in,
/// due when the window closes. A digest already being sent takes no more: they go to
/// the next window's.
/// Raises the alert a breaker's change decided, with the deliveries waiting now.
pub fn raise_breaker_alert(
    conn: &Connection,
    alert: &BreakerAlert,
    now: Timestamp,
) -> rusqlite::Result<bool> {
    let details = AlertDetails {
        waiting: Some(waiting(conn, &alert.destination)?),
        ..alert.details.clone()
    };
    raise(
        conn,
        alert.kind,
        &alert.destination,
        Some(alert.episode),
        &details,
        now,
        alert.settle,
    )
}

pub fn add_dead_letters(
    conn: &Connection,
    destination: &str,
    count: i64,
    event_id: &str,
    rules: &AlertRules,
    now: Timestamp,
) -> rusqlite::Result<()> {
    let mut window = rules.window(now);
    let mut statement = conn.prepare_cached(
        "INSERT INTO alerts (kind, destination, created_at, episode, count, event_id,
                             next_attempt_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (destination, kind, episode) WHERE episode IS NOT NULL
         DO UPDATE SET count = count + excluded.count, event_id = excluded.event_id
         WHERE status = 'pending' AND lease_until IS NULL",
    )?;
    // Each window taken is being sent; a later one is free (a few at most, after a
    // clock step between processes).
    for _ in 0..10 {
        let end = rules.next_window(window);
        let written = statement.execute(params![
            AlertKind::DeadLettered.as_str(),
            destination,
            now.0,
            window.0,
            count,
            event_id,
            end.0,
        ])?;
        if written > 0 {
            break;
        }
        window = end;
    }
    Ok(())
}

/// Adds a worker's counted outcomes to their minute.
fn count_minute(conn: &Connection, count: &MinuteCount) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO destination_minutes (destination, minute, delivered, failed)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (destination, minute) DO UPDATE SET
             delivered = delivered + excluded.delivered, failed = failed + excluded.failed",
    )?
    .execute(params![
        count.destination,
        count.minute.0,
        count.delivered,
        count.failed
    ])?;
    Ok(())
}

/// Deliveries to the destination not yet finished.
pub fn waiting(conn: &Connection, destination: &str) -> rusqlite::Result<i64> {
    conn.prepare_cached(concat!(
        "SELECT COUNT(*) FROM deliveries WHERE destination = ?1 AND (status IN ",
        claimable!(),
        " OR lease_until IS NOT NULL)"
    ))?
    .query_row([destination], |row| row.get(0))
}

pub fn claim_alerts(
    conn: &Connection,
    limit: usize,
    lease: Duration,
) -> rusqlite::Result<Vec<AlertRecord>> {
    let now = Timestamp::now();
    conn.prepare_cached(&format!(
        "UPDATE alerts SET lease_until = ?2, attempts = attempts + 1
         WHERE id IN (SELECT id FROM alerts
                      WHERE status = 'pending' AND next_attempt_at <= ?1
                        AND (lease_until IS NULL OR lease_until <= ?1)
                      ORDER BY id LIMIT ?3)
         RETURNING {ALERT_COLUMNS}"
    ))?
    .query_map(
        params![now.0, now.plus(lease).0, limit as i64],
        alert_from_row,
    )?
    .collect()
}

pub fn finish_alert(
    conn: &Connection,
    id: i64,
    attempts: u32,
    outcome: &AlertOutcome,
) -> rusqlite::Result<bool> {
    let now = Timestamp::now().0;
    let written = match outcome {
        AlertOutcome::Sent => conn
            .prepare_cached(
                "UPDATE alerts SET status = 'sent', sent_at = ?3, lease_until = NULL,
                        last_error = NULL
                 WHERE id = ?1 AND attempts = ?2 AND status = 'pending'",
            )?
            .execute(params![id, attempts, now])?,
        AlertOutcome::Retry { at, error } => conn
            .prepare_cached(
                "UPDATE alerts SET next_attempt_at = ?3, last_error = ?4, lease_until = NULL
                 WHERE id = ?1 AND attempts = ?2 AND status = 'pending'",
            )?
            .execute(params![id, attempts, at.0, error])?,
    };
    Ok(written > 0)
}

pub fn record_samples(
    conn: &Connection,
    samples: &[DestinationSample],
    counts: &[MinuteCount],
    now: Timestamp,
) -> rusqlite::Result<usize> {
    for count in counts {
        count_minute(conn, count)?;
    }
    let mut raised = 0;
    for sample in samples {
        conn.prepare_cached(
            "INSERT INTO destination_minutes (destination, minute, backlog) VALUES (?1, ?2, ?3)
             ON CONFLICT (destination, minute) DO UPDATE SET
                 backlog = MAX(COALESCE(backlog, 0), excluded.backlog)",
        )?
        .execute(params![
            sample.destination,
            minute_of(now).0,
            sample.waiting
        ])?;
        let Some(change) = sample.lag else { continue };
        // The episode's state fences the change: of several workers seeing it, one wins.
        let (kind, since) = match change {
            LagChange::Started { since } => {
                conn.prepare_cached(
                    "INSERT INTO destinations (name) VALUES (?1) ON CONFLICT (name) DO NOTHING",
                )?
                .execute([&sample.destination])?;
                let changed = conn
                    .prepare_cached(
                        "UPDATE destinations SET lagging_since = ?2
                         WHERE name = ?1 AND lagging_since IS NULL",
                    )?
                    .execute(params![sample.destination, since.0])?;
                if changed == 0 {
                    continue;
                }
                (AlertKind::Lagging, since)
            }
            LagChange::Ended => {
                let since: Option<i64> = conn
                    .prepare_cached("SELECT lagging_since FROM destinations WHERE name = ?1")?
                    .query_row([&sample.destination], |row| row.get(0))
                    .optional()?
                    .flatten();
                let Some(since) = since else { continue };
                let changed = conn
                    .prepare_cached(
                        "UPDATE destinations SET lagging_since = NULL
                         WHERE name = ?1 AND lagging_since = ?2",
                    )?
                    .execute(params![sample.destination, since])?;
                if changed == 0 {
                    continue;
                }
                (AlertKind::CaughtUp, Timestamp(since))
            }
        };
        let details = AlertDetails {
            since: Some(since.to_rfc3339()),
            waiting: Some(sample.waiting),
            ..AlertDetails::default()
        };
        if raise(
            conn,
            kind,
            &sample.destination,
            Some(since),
            &details,
            now,
            Duration::ZERO,
        )? {
            raised += 1;
        }
    }
    Ok(raised)
}

pub fn destination_minutes(
    conn: &Connection,
    since: Timestamp,
) -> rusqlite::Result<Vec<MinuteRow>> {
    conn.prepare_cached(
        "SELECT destination, minute, delivered, failed, backlog FROM destination_minutes
         WHERE minute >= ?1 ORDER BY destination, minute",
    )?
    .query_map([since.0], |row| {
        Ok(MinuteRow {
            destination: row.get(0)?,
            minute: Timestamp(row.get(1)?),
            delivered: row.get(2)?,
            failed: row.get(3)?,
            backlog: row.get(4)?,
        })
    })?
    .collect()
}

/// The last alert raised about each destination.
pub fn last_alerts(conn: &Connection) -> rusqlite::Result<Vec<AlertRecord>> {
    conn.prepare_cached(&format!(
        "SELECT {ALERT_COLUMNS} FROM alerts
         WHERE id IN (SELECT MAX(id) FROM alerts GROUP BY destination)"
    ))?
    .query_map([], alert_from_row)?
    .collect()
}

pub fn prune_monitoring(
    conn: &Connection,
    minutes_before: Timestamp,
    alerts_before: Timestamp,
) -> rusqlite::Result<u64> {
    let minutes = conn
        .prepare_cached("DELETE FROM destination_minutes WHERE minute < ?1")?
        .execute([minutes_before.0])?;
    let alerts = conn
        .prepare_cached("DELETE FROM alerts WHERE status = 'sent' AND created_at < ?1")?
        .execute([alerts_before.0])?;
    Ok((minutes + alerts) as u64)
}
