//! Status lists that both backends write into their SQL text. They are the domain's
//! names (a test holds them to it), written as literals rather than bound because a
//! partial index is only used when the query's own text implies the index's
//! predicate, and a bound value cannot.

use crate::domain::protection::OnDeadLetter;

/// Due work: the statuses a claim takes from (`events_due` is over these). A macro as
/// well as a constant, so that the hot statements are `concat!`ed at compile time.
macro_rules! claimable {
    () => {
        "('queued', 'retrying')"
    };
}
pub(crate) use claimable;

/// The status a claim moves to: fences (`AND status = 'processing'`) are written
/// literally too. SQLite re-prepares a statement on every execution when a bound
/// value helped choose its plan, and a status compared in a WHERE clause does (the
/// partial indexes are over statuses); values set, not compared, stay bound.
macro_rules! claimed {
    () => {
        "'processing'"
    };
}
pub(crate) use claimed;
/// A finished delivery that holds no key: `delivered`.
macro_rules! delivered {
    () => {
        "'delivered'"
    };
}

pub(crate) use delivered;

macro_rules! retrying {
    () => {
        "'retrying'"
    };
}

macro_rules! dead_lettered {
    () => {
        "'dead_lettered'"
    };
}
pub(crate) use dead_lettered;

/// An event's status, never a delivery's: it has none.
macro_rules! filtered {
    () => {
        "'filtered'"
    };
}

/// The single statuses, as constants for statements built with `format!`.
pub const RETRYING: &str = retrying!();
pub const DEAD_LETTERED: &str = dead_lettered!();
pub const FILTERED: &str = filtered!();

/// Not yet delivered or dead-lettered.
macro_rules! unfinished {
    () => {
        "('queued', 'retrying', 'processing')"
    };
}

/// Per-key order (`ordering = "key"`): a delivery waits while an earlier one of its
/// key is unfinished; with `on_dead_letter = "block"` a dead-lettered one holds the
/// key too. The same SQL on both backends.
pub const ORDERED_SKIP: &str = concat!(
    "AND NOT EXISTS (SELECT 1 FROM deliveries p
         WHERE p.destination = d.destination AND p.ordering_key = d.ordering_key
           AND p.ordering_key IS NOT NULL AND p.status <> ",
    delivered!(),
    " AND p.seq < d.seq
           AND p.status IN ",
    unfinished!(),
    ")"
);
pub const ORDERED_BLOCK: &str = concat!(
    "AND NOT EXISTS (SELECT 1 FROM deliveries p
         WHERE p.destination = d.destination AND p.ordering_key = d.ordering_key
           AND p.ordering_key IS NOT NULL AND p.status <> ",
    delivered!(),
    " AND p.seq < d.seq)"
);

/// The ordering clause of a lease for a destination's `ordering`.
pub fn ordering_clause(ordered: Option<OnDeadLetter>) -> &'static str {
    match ordered {
        None => "",
        Some(OnDeadLetter::Skip) => ORDERED_SKIP,
        Some(OnDeadLetter::Block) => ORDERED_BLOCK,
    }
}

/// What a lease checks of the destination's state itself.
#[derive(Clone, Copy)]
pub enum Guard {
    /// The domain planned how many may start: lease that many.
    Planned,
    /// No limits: lease only while the destination is neither paused nor its breaker
    /// open (what the plan would say for a destination without limits).
    FlowOpen,
}

/// The waiting statuses, as a constant for statements built with `format!`.
pub const WAITING: &str = claimable!();

/// `waiting(name)`: each destination with waiting deliveries, found by one seek of
/// the due index per destination (a loose index scan), so that the cost follows the
/// number of destinations, not of deliveries. The same SQL on both backends; the last
/// row is a NULL.
pub const WAITING_DESTINATIONS: &str = concat!(
    "WITH RECURSIVE waiting(name) AS (
         SELECT MIN(destination) FROM deliveries WHERE status IN ",
    claimable!(),
    " UNION ALL
         SELECT (SELECT MIN(destination) FROM deliveries
                 WHERE status IN ",
    claimable!(),
    " AND destination > waiting.name)
         FROM waiting WHERE waiting.name IS NOT NULL)"
);

/// The statuses a replay starts from.
pub const REPLAYABLE: &str = "('delivered', 'dead_lettered')";

#[cfg(test)]
fn sql_list(statuses: &[crate::domain::lifecycle::EventStatus]) -> String {
    let names: Vec<String> = statuses
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect();
    format!("({})", names.join(", "))
}

/// Every delivery status, as the schema's `CHECK` lists them.
#[cfg(test)]
fn all_statuses() -> String {
    sql_list(&crate::domain::lifecycle::EventStatus::DELIVERY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::lifecycle::{
        CLAIMABLE as CLAIMABLE_STATUSES, CLAIMED, EventStatus, REPLAYABLE as REPLAYABLE_STATUSES,
    };

    #[test]
    fn the_sql_lists_are_the_domains() {
        assert_eq!(claimable!(), sql_list(&CLAIMABLE_STATUSES));
        assert_eq!(claimed!(), format!("'{}'", CLAIMED.as_str()));
        assert_eq!(REPLAYABLE, sql_list(&REPLAYABLE_STATUSES));
        assert_eq!(
            delivered!(),
            format!("'{}'", EventStatus::Delivered.as_str())
        );
        let mut unfinished: Vec<&str> = EventStatus::DELIVERY
            .into_iter()
            .filter(|s| crate::domain::waiting::is_unfinished(*s))
            .map(EventStatus::as_str)
            .collect();
        let mut listed: Vec<&str> = unfinished!()
            .trim_matches(|c| c == '(' || c == ')')
            .split(", ")
            .map(|name| name.trim_matches('\''))
            .collect();
        unfinished.sort_unstable();
        listed.sort_unstable();
        assert_eq!(listed, unfinished);
        for migration in [
            include_str!("../../migrations/sqlite/0006_deliveries.sql"),
            include_str!("../../migrations/postgres/0006_deliveries.sql"),
        ] {
            assert!(migration.contains(&format!("CHECK (status IN {})", all_statuses())));
        }
    }
}
