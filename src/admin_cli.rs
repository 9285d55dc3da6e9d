//! `hookrelay events list|show|replay`: the operator's API, on the database directly,
//! for when the HTTP API is not at hand.

use std::io::Write;
use std::sync::Arc;

use thiserror::Error;

use crate::cli::{EventsCommand, FilterArgs};
use crate::config::Config;
use crate::domain::event::EventId;
use crate::http::events::{AttemptView, EventView};
use crate::store::{self, EventFilter, FilterError, OpenOptions, ReplayOutcome, Store, StoreError};

#[derive(Debug, Error)]
pub enum AdminError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Filter(#[from] FilterError),
    #[error("no event {0}")]
    NotFound(String),
    #[error("event {0} is {1}; only delivered or dead_lettered events can be replayed")]
    NotReplayable(String, &'static str),
    #[error("{0}")]
    Invalid(String),
    #[error("cannot write the output")]
    Output(#[from] std::io::Error),
}

/// `events show`: the event as the API shows it, with every attempt.
#[derive(serde::Serialize)]
struct ShownEvent {
    event: EventView,
    attempts: Vec<AttemptView>,
}

pub async fn run(command: EventsCommand, config: &Config) -> Result<(), AdminError> {
    let options = OpenOptions {
        migrate: config.migrate_on_start,
        runs_api: false,
        runs_worker: false,
        pool_size: 2,
    };
    let store = store::open(&config.database, options).await?;
    let result = execute(command, &store, config.retry.max_attempts).await;
    store.close().await;
    result
}

async fn execute(
    command: EventsCommand,
    store: &Arc<dyn Store>,
    fresh_attempts: u32,
) -> Result<(), AdminError> {
    let mut out = std::io::stdout().lock();
    match command {
        EventsCommand::List {
            filter,
            limit,
            json,
        } => {
            if !(1..=500).contains(&limit) {
                return Err(AdminError::Invalid("--limit must be 1 to 500".into()));
            }
            let page = store.list_events(&filter_of(filter)?, limit, None).await?;
            if !json {
                writeln!(
                    out,
                    "{:<40}  {:<16}  {:<13}  {:>8}  {:<24}  LAST ERROR",
                    "ID", "SOURCE", "STATUS", "ATTEMPTS", "CREATED"
                )?;
            }
            for event in page.events {
                if json {
                    let view = EventView::from(event);
                    writeln!(out, "{}", serde_json::to_string(&view).unwrap_or_default())?;
                } else {
                    writeln!(
                        out,
                        "{:<40}  {:<16}  {:<13}  {:>8}  {:<24}  {}",
                        event.id.as_str(),
                        event.source,
                        event.status.as_str(),
                        event.attempts,
                        event.created_at.to_rfc3339(),
                        event.last_error.as_deref().unwrap_or("")
                    )?;
                }
            }
        }
        EventsCommand::Show { id } => {
            let event_id = EventId::from_stored(id.clone());
            let event = store
                .get_event(&event_id)
                .await?
                .ok_or_else(|| AdminError::NotFound(id.clone()))?;
            let attempts = store.list_attempts(&event_id).await?.unwrap_or_default();
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
        } => {
            if filter.status.is_some()
                || filter.source.is_some()
                || filter.since.is_some()
                || filter.until.is_some()
            {
                return Err(AdminError::Invalid(
                    "give an event id or filters, not both".into(),
                ));
            }
            match store
                .replay(&EventId::from_stored(id.clone()), fresh_attempts)
                .await?
            {
                ReplayOutcome::Queued => writeln!(out, "queued {id}")?,
                ReplayOutcome::NotReplayable(status) => {
                    return Err(AdminError::NotReplayable(id, status.as_str()));
                }
                ReplayOutcome::NotFound => return Err(AdminError::NotFound(id)),
            }
        }
        EventsCommand::Replay { id: None, filter } => {
            let filter = filter_of(filter)?;
            if filter.status.is_some_and(|s| !s.is_replayable()) {
                return Err(AdminError::Invalid(
                    "only delivered or dead_lettered events can be replayed".into(),
                ));
            }
            if filter == EventFilter::default() {
                return Err(AdminError::Invalid(
                    "give an event id, or at least one of --status, --source, --since, --until"
                        .into(),
                ));
            }
            let replayed = store.replay_matching(&filter, fresh_attempts).await?;
            writeln!(out, "replayed {replayed}")?;
        }
    }
    Ok(())
}

fn filter_of(args: FilterArgs) -> Result<EventFilter, FilterError> {
    EventFilter::parse(
        args.status.as_deref(),
        args.source,
        args.since.as_deref(),
        args.until.as_deref(),
    )
}
