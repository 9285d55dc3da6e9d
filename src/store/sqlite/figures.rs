//! Figures for operators and housekeeping: gauges, per-destination stats, pruning, the
//! write probe. (sqlite)

use rusqlite::{Connection, params};

use super::flows::flow_from_row;
use crate::domain::time::Timestamp;
use crate::store::sql::{
    DEAD_LETTERED, RETRYING, WAITING, WAITING_DESTINATIONS, claimable, dead_lettered, delivered,
};
use crate::store::{
    DestinationRow, DestinationStats, FLOW_COLUMNS, QueueGauges, WAITING_COUNT_CAP,
};

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
        .prepare_cached(concat!(
            "SELECT e.id FROM events e
             WHERE e.created_at < max(?1, COALESCE(?2, ?1))
               AND NOT EXISTS (
                   SELECT 1 FROM deliveries d WHERE d.event_id = e.id
                   AND NOT ((d.status = ",
            delivered!(),
            " AND d.updated_at < ?1)
                            OR (d.status = ",
            dead_lettered!(),
            " AND ?2 IS NOT NULL
                                AND d.updated_at < ?2)))
               AND (e.created_at < ?1
                    OR EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id))
             ORDER BY e.seq LIMIT ?3"
        ))?
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
                 WHERE status IN {WAITING} LIMIT ?1 + (SELECT COUNT(*) FROM
                     (SELECT 1 FROM deliveries WHERE status = {RETRYING} LIMIT ?1)))),
             (SELECT COUNT(*) FROM (SELECT 1 FROM deliveries
                 WHERE status = {RETRYING} LIMIT ?1)),
             (SELECT COUNT(*) FROM deliveries WHERE lease_until IS NOT NULL),
             (SELECT COUNT(*) FROM (SELECT 1 FROM deliveries
                 WHERE status = {DEAD_LETTERED} LIMIT ?1)),
             (SELECT MIN((SELECT MIN(next_attempt_at) FROM deliveries
                          WHERE destination = waiting.name AND status IN {WAITING}))
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
    conn.prepare_cached(concat!(
        "SELECT COUNT(*) FROM (SELECT 1 FROM (SELECT status FROM deliveries
                                              ORDER BY seq DESC LIMIT ?1 * 10)
                               WHERE status = ",
        delivered!(),
        " LIMIT ?1)"
    ))?
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
