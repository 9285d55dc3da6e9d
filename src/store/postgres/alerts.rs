//! The SQL of alerts and per-minute figures on PostgreSQL.

use std::time::Duration;

use deadpool_postgres::{Client, GenericClient, Transaction};
use tokio_postgres::Row;

use super::column::Column;
use crate::domain::alert::{AlertDetails, AlertKind, AlertRules, LagChange};
use crate::domain::outcomes::{self, BreakerAlert};
use crate::domain::time::Timestamp;
use crate::store::sql::claimable;
use crate::store::{
    AlertOutcome, AlertRecord, DestinationSample, MinuteCount, MinuteRow, StoreError, minute_of,
};

type Result<T> = std::result::Result<T, StoreError>;

const ALERT_COLUMNS: &str = "id, kind, destination, created_at, episode, count, event_id,
     details, attempts, sent_at, last_error";

fn alert_from_row(row: &Row) -> Result<AlertRecord> {
    let kind: String = row.col(1)?;
    Ok(AlertRecord {
        id: row.col(0)?,
        kind: AlertKind::parse(&kind)
            .ok_or_else(|| StoreError::Internal(format!("unknown alert kind {kind:?}").into()))?,
        destination: row.col(2)?,
        created_at: Timestamp(row.col(3)?),
        episode: row.col::<Option<i64>>(4)?.map(Timestamp),
        count: row.col(5)?,
        event_id: row.col(6)?,
        details: row.col(7)?,
        attempts: row.col::<i32>(8)?.max(0) as u32,
        sent_at: row.col::<Option<i64>>(9)?.map(Timestamp),
        last_error: row.col(10)?,
    })
}

/// Raises an alert, due at once, unless one of its kind was raised for the same
/// episode already. Returns whether it was raised.
pub async fn raise<C: GenericClient>(
    client: &C,
    kind: AlertKind,
    destination: &str,
    episode: Option<Timestamp>,
    details: &AlertDetails,
    now: Timestamp,
    settle: Duration,
) -> Result<bool> {
    // Failing again while a recovery waits out `settle`: the recovery was premature,
    // and the failure continues the episode already announced.
    if kind == AlertKind::Failing {
        let fold = client
            .prepare_cached(
                "DELETE FROM alerts WHERE destination = $1 AND kind = $2 AND status = 'pending'
                   AND lease_until IS NULL AND attempts = 0 AND next_attempt_at > $3",
            )
            .await?;
        let folded = client
            .execute(
                &fold,
                &[&destination, &AlertKind::Recovered.as_str(), &now.0],
            )
            .await?;
        if folded > 0 {
            return Ok(false);
        }
    }
    let send_at = AlertRules::send_at(kind, now, settle);
    let statement = client
        .prepare_cached(
            "INSERT INTO alerts (kind, destination, created_at, episode, details,
                                 next_attempt_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (destination, kind, episode) WHERE episode IS NOT NULL DO NOTHING",
        )
        .await?;
    let raised = client
        .execute(
            &statement,
            &[
                &kind.as_str(),
                &destination,
                &now.0,
                &episode.map(|e| e.0),
                &details.to_json(),
                &send_at.0,
            ],
        )
        .await?;
    Ok(raised > 0)
}

/// Counts dead letters into the destination's digest for the window `now` falls in,
/// due when the window closes. A digest already being sent takes no more: they go to
/// the next window's.
/// Raises the alert a breaker's change decided, with the deliveries waiting now.
pub async fn raise_breaker_alert<C: GenericClient>(
    client: &C,
    alert: &BreakerAlert,
    now: Timestamp,
) -> Result<bool> {
    let details = AlertDetails {
        waiting: Some(waiting(client, &alert.destination).await?),
        ..alert.details.clone()
    };
    raise(
        client,
        alert.kind,
        &alert.destination,
        Some(alert.episode),
        &details,
        now,
        alert.settle,
    )
    .await
}

pub async fn add_dead_letters<C: GenericClient>(
    client: &C,
    destination: &str,
    count: i64,
    event_id: &str,
    rules: &AlertRules,
    now: Timestamp,
) -> Result<()> {
    let statement = client
        .prepare_cached(
            "INSERT INTO alerts (kind, destination, created_at, episode, count, event_id,
                                 next_attempt_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (destination, kind, episode) WHERE episode IS NOT NULL
             DO UPDATE SET count = alerts.count + excluded.count, event_id = excluded.event_id
             WHERE alerts.status = 'pending' AND alerts.lease_until IS NULL",
        )
        .await?;
    let mut window = rules.window(now);
    // Each window taken is being sent; a later one is free (a few at most, after a
    // clock step between processes).
    for _ in 0..10 {
        let end = rules.next_window(window);
        let written = client
            .execute(
                &statement,
                &[
                    &AlertKind::DeadLettered.as_str(),
                    &destination,
                    &now.0,
                    &window.0,
                    &count,
                    &event_id,
                    &end.0,
                ],
            )
            .await?;
        if written > 0 {
            break;
        }
        window = end;
    }
    Ok(())
}

/// Deliveries to the destination not yet finished.
pub async fn waiting<C: GenericClient>(client: &C, destination: &str) -> Result<i64> {
    let statement = client
        .prepare_cached(concat!(
            "SELECT COUNT(*) FROM deliveries WHERE destination = $1 AND (status IN ",
            claimable!(),
            " OR lease_until IS NOT NULL)"
        ))
        .await?;
    client.query_one(&statement, &[&destination]).await?.col(0)
}

pub async fn claim_alerts(
    client: &Client,
    limit: usize,
    lease: Duration,
) -> Result<Vec<AlertRecord>> {
    let now = Timestamp::now();
    let statement = client
        .prepare_cached(&format!(
            "UPDATE alerts SET lease_until = $2, attempts = attempts + 1
             WHERE id IN (SELECT id FROM alerts
                          WHERE status = 'pending' AND next_attempt_at <= $1
                            AND (lease_until IS NULL OR lease_until <= $1)
                          ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED)
             RETURNING {ALERT_COLUMNS}"
        ))
        .await?;
    let mut alerts = client
        .query(&statement, &[&now.0, &now.plus(lease).0, &(limit as i64)])
        .await?
        .iter()
        .map(alert_from_row)
        .collect::<Result<Vec<_>>>()?;
    alerts.sort_by_key(|a| a.id);
    Ok(alerts)
}

pub async fn finish_alert(
    client: &Client,
    id: i64,
    attempts: u32,
    outcome: &AlertOutcome,
) -> Result<bool> {
    let now = Timestamp::now().0;
    let attempts = attempts.min(i32::MAX as u32) as i32;
    let written = match outcome {
        AlertOutcome::Sent => {
            let statement = client
                .prepare_cached(
                    "UPDATE alerts SET status = 'sent', sent_at = $3, lease_until = NULL,
                            last_error = NULL
                     WHERE id = $1 AND attempts = $2 AND status = 'pending'",
                )
                .await?;
            client.execute(&statement, &[&id, &attempts, &now]).await?
        }
        AlertOutcome::Retry { at, error } => {
            let statement = client
                .prepare_cached(
                    "UPDATE alerts SET next_attempt_at = $3, last_error = $4, lease_until = NULL
                     WHERE id = $1 AND attempts = $2 AND status = 'pending'",
                )
                .await?;
            client
                .execute(&statement, &[&id, &attempts, &at.0, error])
                .await?
        }
    };
    Ok(written > 0)
}

pub async fn record_samples(
    client: &mut Client,
    samples: &[DestinationSample],
    counts: &[MinuteCount],
    now: Timestamp,
    settle: Duration,
) -> Result<usize> {
    let tx = client.transaction().await?;
    let outcomes = tx
        .prepare_cached(
            "INSERT INTO destination_minutes (destination, minute, delivered, failed)
             SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[])
             ORDER BY 1, 2
             ON CONFLICT (destination, minute) DO UPDATE SET
                 delivered = destination_minutes.delivered + excluded.delivered,
                 failed = destination_minutes.failed + excluded.failed",
        )
        .await?;
    let names: Vec<&str> = counts.iter().map(|c| c.destination.as_str()).collect();
    let minutes: Vec<i64> = counts.iter().map(|c| c.minute.0).collect();
    let delivered: Vec<i64> = counts.iter().map(|c| c.delivered).collect();
    let failed: Vec<i64> = counts.iter().map(|c| c.failed).collect();
    tx.execute(&outcomes, &[&names, &minutes, &delivered, &failed])
        .await?;
    let backlog = tx
        .prepare_cached(
            "INSERT INTO destination_minutes (destination, minute, backlog)
             SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[])
             ORDER BY 1
             ON CONFLICT (destination, minute) DO UPDATE SET
                 backlog = GREATEST(COALESCE(destination_minutes.backlog, 0), excluded.backlog)",
        )
        .await?;
    let names: Vec<&str> = samples.iter().map(|s| s.destination.as_str()).collect();
    let minutes = vec![minute_of(now).0; samples.len()];
    let waiting: Vec<i64> = samples.iter().map(|s| s.waiting).collect();
    tx.execute(&backlog, &[&names, &minutes, &waiting]).await?;
    let mut raised = raise_recoveries(&tx, now, settle).await?;
    for sample in samples {
        let Some(change) = sample.lag else { continue };
        // The episode's state fences the change: of several workers seeing it, one wins.
        let (kind, since) = match change {
            LagChange::Started { since } => {
                let statement = tx
                    .prepare_cached(
                        "INSERT INTO destinations (name, lagging_since) VALUES ($1, $2)
                         ON CONFLICT (name) DO UPDATE SET lagging_since = excluded.lagging_since
                         WHERE destinations.lagging_since IS NULL",
                    )
                    .await?;
                if tx
                    .execute(&statement, &[&sample.destination, &since.0])
                    .await?
                    == 0
                {
                    continue;
                }
                (AlertKind::Lagging, since)
            }
            LagChange::Ended => {
                let statement = tx
                    .prepare_cached(
                        "UPDATE destinations d SET lagging_since = NULL
                         FROM (SELECT name, lagging_since FROM destinations
                               WHERE name = $1 FOR UPDATE) before
                         WHERE d.name = before.name AND before.lagging_since IS NOT NULL
                         RETURNING before.lagging_since",
                    )
                    .await?;
                let Some(row) = tx.query_opt(&statement, &[&sample.destination]).await? else {
                    continue;
                };
                (AlertKind::CaughtUp, Timestamp(row.col(0)?))
            }
        };
        let details = AlertDetails {
            since: Some(since.to_rfc3339()),
            waiting: Some(sample.waiting),
            ..AlertDetails::default()
        };
        if raise(
            &tx,
            kind,
            &sample.destination,
            Some(since),
            &details,
            now,
            Duration::ZERO,
        )
        .await?
        {
            raised += 1;
        }
    }
    tx.commit().await?;
    Ok(raised)
}

/// Recovery alerts for the breakers that batches of successes closed since the last
/// look, each taken once under the destination's row lock.
async fn raise_recoveries(tx: &Transaction<'_>, now: Timestamp, settle: Duration) -> Result<usize> {
    let statement = tx
        .prepare_cached(
            "UPDATE destinations d SET recovered_from = NULL
             FROM (SELECT name, recovered_from FROM destinations
                   WHERE recovered_from IS NOT NULL ORDER BY name FOR UPDATE) closed
             WHERE d.name = closed.name AND closed.recovered_from IS NOT NULL
             RETURNING closed.name, closed.recovered_from",
        )
        .await?;
    let mut raised = 0;
    for row in tx.query(&statement, &[]).await? {
        let (name, since): (String, i64) = (row.col(0)?, row.col(1)?);
        let alert = outcomes::recovery_alert(&name, Timestamp(since), settle);
        if raise_breaker_alert(tx, &alert, now).await? {
            raised += 1;
        }
    }
    Ok(raised)
}

pub async fn destination_minutes(client: &Client, since: Timestamp) -> Result<Vec<MinuteRow>> {
    let statement = client
        .prepare_cached(
            "SELECT destination, minute, delivered, failed, backlog FROM destination_minutes
             WHERE minute >= $1 ORDER BY destination, minute",
        )
        .await?;
    client
        .query(&statement, &[&since.0])
        .await?
        .iter()
        .map(|row| {
            Ok(MinuteRow {
                destination: row.col(0)?,
                minute: Timestamp(row.col(1)?),
                delivered: row.col(2)?,
                failed: row.col(3)?,
                backlog: row.col(4)?,
            })
        })
        .collect()
}

/// The last alert raised about each destination.
pub async fn last_alerts(client: &Client) -> Result<Vec<AlertRecord>> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {ALERT_COLUMNS} FROM alerts
             WHERE id IN (SELECT MAX(id) FROM alerts GROUP BY destination)"
        ))
        .await?;
    client
        .query(&statement, &[])
        .await?
        .iter()
        .map(alert_from_row)
        .collect()
}

pub async fn prune_monitoring(
    client: &Client,
    minutes_before: Timestamp,
    alerts_before: Timestamp,
) -> Result<u64> {
    let minutes = client
        .prepare_cached("DELETE FROM destination_minutes WHERE minute < $1")
        .await?;
    let alerts = client
        .prepare_cached("DELETE FROM alerts WHERE status = 'sent' AND created_at < $1")
        .await?;
    let deleted = client.execute(&minutes, &[&minutes_before.0]).await?
        + client.execute(&alerts, &[&alerts_before.0]).await?;
    Ok(deleted)
}
