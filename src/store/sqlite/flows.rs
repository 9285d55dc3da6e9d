//! Each destination's flow state (pause, breaker, tokens) as its row keeps it. (sqlite)

use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::domain::protection::FlowState;
use crate::domain::time::Timestamp;
use crate::store::{FLOW_COLUMNS, flow_state, flow_values};

pub(super) fn read_flow(conn: &Connection, destination: &str) -> rusqlite::Result<FlowState> {
    conn.prepare_cached(&format!(
        "SELECT {FLOW_COLUMNS} FROM destinations WHERE name = ?1"
    ))?
    .query_row([destination], flow_from_row)
    .optional()
    .map(Option::unwrap_or_default)
}

pub(super) fn flow_from_row(row: &Row<'_>) -> rusqlite::Result<FlowState> {
    Ok(flow_state(
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
    ))
}

pub(super) fn write_flow(
    conn: &Connection,
    destination: &str,
    flow: &FlowState,
) -> rusqlite::Result<()> {
    let (failures, since, probe_at, pause, tokens, tokens_at) = flow_values(flow);
    conn.prepare_cached(
        "INSERT INTO destinations (name, failures, breaker_since, probe_at, probe_pause_us,
                                   tokens, tokens_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (name) DO UPDATE SET
             failures = excluded.failures, breaker_since = excluded.breaker_since,
             probe_at = excluded.probe_at, probe_pause_us = excluded.probe_pause_us,
             tokens = excluded.tokens, tokens_at = excluded.tokens_at",
    )?
    .execute(params![
        destination,
        failures,
        since,
        probe_at,
        pause,
        tokens,
        tokens_at
    ])?;
    Ok(())
}

pub(super) fn mark_throttled(
    conn: &Connection,
    destination: &str,
    now: Timestamp,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO destinations (name, throttled_at) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET throttled_at = excluded.throttled_at",
    )?
    .execute(params![destination, now.0])?;
    Ok(())
}

pub(super) fn in_flight_of(conn: &Connection, destination: &str) -> rusqlite::Result<u32> {
    conn.prepare_cached(
        "SELECT COUNT(*) FROM deliveries WHERE destination = ?1 AND lease_until IS NOT NULL",
    )?
    .query_row([destination], |row| row.get(0))
}

pub fn set_paused(conn: &Connection, destination: &str, paused: bool) -> rusqlite::Result<bool> {
    let changed = conn
        .prepare_cached(
            "INSERT INTO destinations (name, paused, paused_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (name) DO UPDATE SET paused = excluded.paused,
                 paused_at = excluded.paused_at
             WHERE destinations.paused <> excluded.paused",
        )?
        .execute(params![
            destination,
            paused,
            paused.then(|| Timestamp::now().0)
        ])?;
    Ok(changed > 0)
}
