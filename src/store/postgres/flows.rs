//! Each destination's flow state (pause, breaker, tokens) as its row keeps it.
//! (postgres)

use deadpool_postgres::{Client, GenericClient};
use tokio_postgres::Row;

use super::column::Column;
use super::events::Result;
use crate::domain::protection::FlowState;
use crate::domain::time::Timestamp;
use crate::store::{FLOW_COLUMNS, flow_state, flow_values};

/// The destination's state; `lock`: its row is held until the transaction ends (and
/// made first if it has none, so that there is a row to hold).
pub(super) async fn read_flow<C: GenericClient>(
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

pub(super) fn flow_from_row(row: &Row) -> Result<FlowState> {
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

pub(super) async fn write_flow<C: GenericClient>(
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

pub(super) async fn in_flight_of<C: GenericClient>(client: &C, destination: &str) -> Result<u32> {
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
