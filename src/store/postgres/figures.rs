//! Figures for operators and housekeeping: gauges, per-destination stats, pruning, the
//! write probe. (postgres)

use deadpool_postgres::{Client, GenericClient};

use super::column::Column;
use super::events::Result;
use super::flows::flow_from_row;
use crate::domain::time::Timestamp;
use crate::store::sql::{
    DEAD_LETTERED, RETRYING, WAITING, WAITING_DESTINATIONS, dead_lettered, delivered,
};
use crate::store::{
    DestinationRow, DestinationStats, FLOW_COLUMNS, QueueGauges, WAITING_COUNT_CAP,
};

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
        .prepare_cached(concat!(
            "WITH doomed AS (
                 SELECT e.seq, e.id FROM events e
                 WHERE e.created_at < GREATEST($1, COALESCE($2::bigint, $1))
                   AND NOT EXISTS (
                       SELECT 1 FROM deliveries d WHERE d.event_id = e.id
                       AND NOT ((d.status = ",
            delivered!(),
            " AND d.updated_at < $1)
                                OR (d.status = ",
            dead_lettered!(),
            " AND $2::bigint IS NOT NULL
                                    AND d.updated_at < $2)))
                   AND (e.created_at < $1
                        OR EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id))
                 ORDER BY e.seq LIMIT $3
                 FOR UPDATE SKIP LOCKED),
             gone_attempts AS (
                 DELETE FROM attempts WHERE event_id IN (SELECT id FROM doomed)),
             gone_deliveries AS (
                 DELETE FROM deliveries WHERE event_id IN (SELECT id FROM doomed))
             DELETE FROM events WHERE seq IN (SELECT seq FROM doomed)"
        ))
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
                     WHERE status IN {WAITING} LIMIT $1 + (SELECT COUNT(*) FROM
                         (SELECT 1 FROM deliveries WHERE status = {RETRYING} LIMIT $1) r1)) w),
                 (SELECT COUNT(*) FROM (SELECT 1 FROM deliveries
                     WHERE status = {RETRYING} LIMIT $1) r),
                 (SELECT COUNT(*) FROM deliveries WHERE lease_until IS NOT NULL),
                 (SELECT COUNT(*) FROM (SELECT 1 FROM deliveries
                     WHERE status = {DEAD_LETTERED} LIMIT $1) d),
                 (SELECT MIN((SELECT MIN(next_attempt_at) FROM deliveries
                              WHERE destination = waiting.name
                                AND status IN {WAITING}))
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
        .prepare_cached(concat!(
            "SELECT COUNT(*) FROM (SELECT 1 FROM (SELECT status FROM deliveries
                                                  ORDER BY seq DESC LIMIT $1::bigint * 10) newest
                                   WHERE status = ",
            delivered!(),
            " LIMIT $1::bigint) AS capped"
        ))
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
