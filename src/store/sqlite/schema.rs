//! The SQLite schema's migrations, applied in order and recorded in
//! `PRAGMA user_version`.

use rusqlite::Connection;

use crate::store::StoreError;

/// Each schema version's SQL, applied in order; `PRAGMA user_version` records progress.
const MIGRATIONS: &[&str] = &[
    include_str!("../../../migrations/sqlite/0001_events.sql"),
    include_str!("../../../migrations/sqlite/0002_dead_letter_index.sql"),
    include_str!("../../../migrations/sqlite/0003_replay_round.sql"),
    include_str!("../../../migrations/sqlite/0004_forward.sql"),
    include_str!("../../../migrations/sqlite/0005_status_check.sql"),
    include_str!("../../../migrations/sqlite/0006_deliveries.sql"),
    include_str!("../../../migrations/sqlite/0007_protection.sql"),
    include_str!("../../../migrations/sqlite/0008_alerts.sql"),
    include_str!("../../../migrations/sqlite/0009_retrying_index.sql"),
    include_str!("../../../migrations/sqlite/0010_trace_context.sql"),
];

/// Applies the migrations not yet applied. Safe to run from several processes at once.
pub fn migrate(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = (|| -> rusqlite::Result<()> {
        let applied = schema_version(conn)?;
        for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
            conn.execute_batch(sql)?;
            conn.pragma_update(None, "user_version", (index + 1) as i64)?;
            tracing::info!(version = index + 1, "Applied schema migration");
        }
        Ok(())
    })();
    match result {
        Ok(()) => Ok(conn.execute_batch("COMMIT")?),
        Err(error) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(error.into())
        }
    }
}

fn schema_version(conn: &Connection) -> rusqlite::Result<usize> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    Ok(version.max(0) as usize)
}

pub fn check_schema(conn: &Connection) -> Result<(), StoreError> {
    let applied = schema_version(conn)?;
    if applied < MIGRATIONS.len() {
        return Err(StoreError::Schema(format!(
            "schema version {applied} is older than {}; run `hookrelay migrate`",
            MIGRATIONS.len()
        )));
    }
    Ok(())
}
