//! `hookrelay events list|show|replay`: the operator's API on the database directly.

use std::io::Write;

use super::args::{EventsCommand, FilterArgs};
use super::error::AdminError;
use crate::domain::event::EventId;
use crate::ops::events::ReplayScope;
use crate::ops::views::{AttemptView, EventView};
use crate::ops::{Operators, OpsError};
use crate::store::EventFilter;

/// `events show`: the event as the API shows it, with every attempt.
#[derive(serde::Serialize)]
struct ShownEvent {
    event: EventView,
    attempts: Vec<AttemptView>,
}

pub(super) async fn execute(
    command: EventsCommand,
    operators: &Operators,
) -> Result<(), AdminError> {
    let mut out = std::io::stdout().lock();
    match command {
        EventsCommand::List {
            filter,
            limit,
            json,
        } => {
            let page = operators.list(&filter_of(filter)?, limit, None).await?;
            if !json {
                writeln!(
                    out,
                    "{:<40}  {:<16}  {:<13}  {:>10}  {:>8}  {:<24}  LAST ERROR",
                    "ID", "SOURCE", "STATUS", "DELIVERIES", "ATTEMPTS", "CREATED"
                )?;
            }
            for event in page.events {
                if json {
                    let view = EventView::from(event);
                    writeln!(out, "{}", serde_json::to_string(&view).unwrap_or_default())?;
                } else {
                    let summary = event.summary();
                    writeln!(
                        out,
                        "{:<40}  {:<16}  {:<13}  {:>10}  {:>8}  {:<24}  {}",
                        event.id.as_str(),
                        event.source,
                        event.status().as_str(),
                        event.deliveries.len(),
                        summary.map_or(0, |s| s.attempts),
                        event.created_at.to_rfc3339(),
                        summary.and_then(|s| s.last_error.as_deref()).unwrap_or("")
                    )?;
                }
            }
        }
        EventsCommand::Show { id } => {
            let event_id = EventId::from_stored(id.clone());
            let event = operators.show(&event_id).await.map_err(naming(&id))?;
            let attempts = operators.attempts(&event_id).await?;
            let shown = ShownEvent {
                event: EventView::from(event),
                attempts: attempts.into_iter().map(AttemptView::from).collect(),
            };
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&shown).unwrap_or_default()
            )?;
        }
        EventsCommand::Replay {
            id: Some(id),
            filter,
            ..
        } => {
            if filter.status.is_some()
                || filter.source.is_some()
                || filter.since.is_some()
                || filter.until.is_some()
            {
                return Err(AdminError::Invalid(
                    "give an event id (with --destination for one delivery) or filters, not both"
                        .into(),
                ));
            }
            let queued = operators
                .replay(
                    &EventId::from_stored(id.clone()),
                    filter.destination.as_deref(),
                )
                .await
                .map_err(naming(&id))?;
            writeln!(
                out,
                "queued {id} ({queued} deliver{})",
                if queued == 1 { "y" } else { "ies" }
            )?;
        }
        EventsCommand::Replay {
            id: None,
            filter,
            all,
        } => {
            let scope = ReplayScope::new(filter_of(filter)?, all)?;
            let replayed = operators.replay_matching(&scope).await?;
            writeln!(out, "replayed {replayed}")?;
        }
    }
    Ok(())
}

/// "No event ID" rather than a bare "no such event" when the id was given.
fn naming(id: &str) -> impl FnOnce(OpsError) -> AdminError + '_ {
    move |error| match error {
        OpsError::NotFound => AdminError::NotFound(id.to_owned()),
        other => other.into(),
    }
}

fn filter_of(args: FilterArgs) -> Result<EventFilter, OpsError> {
    Ok(EventFilter::parse(
        args.status.as_deref(),
        args.source,
        args.destination,
        args.since.as_deref(),
        args.until.as_deref(),
    )?)
}
