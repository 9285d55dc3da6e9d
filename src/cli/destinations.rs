//! `hookrelay destinations [list|pause|resume]`.

use std::io::Write;

use super::args::DestinationsCommand;
use super::error::AdminError;
use crate::ops::Operators;
use crate::ops::views::DestinationView;

pub(super) async fn destinations(
    command: Option<DestinationsCommand>,
    operators: &Operators,
) -> Result<(), AdminError> {
    let mut out = std::io::stdout().lock();
    let (name, paused) = match command {
        None | Some(DestinationsCommand::List { json: false }) => {
            return list(&mut out, operators, false).await;
        }
        Some(DestinationsCommand::List { json: true }) => {
            return list(&mut out, operators, true).await;
        }
        Some(DestinationsCommand::Pause { name }) => (name, true),
        Some(DestinationsCommand::Resume { name }) => (name, false),
    };
    let (status, changed) = operators.set_paused(&name, paused).await?;
    let verb = if paused { "paused" } else { "resumed" };
    if changed {
        writeln!(out, "{name}: {verb}; backlog {}", status.stats.backlog)?;
    } else {
        writeln!(out, "{name}: already {}", status.state.as_str())?;
    }
    Ok(())
}

async fn list(out: &mut impl Write, operators: &Operators, json: bool) -> Result<(), AdminError> {
    let all = operators.destinations().await?;
    if !json {
        writeln!(
            out,
            "{:<24}  {:<8}  {:>8}  {:>9}  {:>9}  {:>11}  {:<20}  {:<20}",
            "DESTINATION",
            "STATE",
            "BACKLOG",
            "SCHEDULED",
            "IN FLIGHT",
            "OLDEST DUE",
            "LAST SUCCESS",
            "LAST FAILURE"
        )?;
    }
    for destination in all {
        if json {
            let view = DestinationView::from(destination);
            writeln!(out, "{}", serde_json::to_string(&view).unwrap_or_default())?;
            continue;
        }
        let when = |t: Option<crate::domain::time::Timestamp>| {
            t.map(|t| t.to_rfc3339()[..19].to_owned())
                .unwrap_or_else(|| "-".into())
        };
        writeln!(
            out,
            "{:<24}  {:<8}  {:>8}  {:>9}  {:>9}  {:>11}  {:<20}  {:<20}",
            destination.name,
            destination.state.as_str(),
            destination.stats.backlog,
            destination.stats.scheduled,
            destination.stats.in_flight,
            destination
                .oldest_due_age
                .map(|a| format!("{:.1}s", a.as_secs_f64()))
                .unwrap_or_else(|| "-".into()),
            when(destination.stats.last_success_at),
            when(destination.stats.last_failure_at),
        )?;
    }
    Ok(())
}
