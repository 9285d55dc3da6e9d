//! `hookrelay events list|show|replay` and `hookrelay destinations`: the operator's
//! API, on the database directly, for when the HTTP API is not at hand; and
//! `hookrelay routes test`, which needs only the config.

use std::io::Write;

use thiserror::Error;

use crate::cli::{DestinationsCommand, EventsCommand, FilterArgs, RoutesCommand};
use crate::config::Config;
use crate::domain::event::EventId;
use crate::ops::events::ReplayScope;
use crate::ops::ingest::body_as_routed;
use crate::ops::routing::{self, Routable};
use crate::ops::views::{AttemptView, DestinationView, EventView};
use crate::ops::{Operators, OpsError};
use crate::store::{self, EventFilter, OpenOptions, StoreError};

#[derive(Debug, Error)]
pub enum AdminError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Ops(#[from] OpsError),
    #[error("no event {0}")]
    NotFound(String),
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

/// What the command-line operator asked for.
pub enum AdminCommand {
    Events(EventsCommand),
    Destinations(Option<DestinationsCommand>),
}

pub async fn run(command: AdminCommand, config: &Config) -> Result<(), AdminError> {
    // An operator's command reads the database a server made; an empty new one would
    // answer "nothing here" about the wrong file.
    if let store::DatabaseUrl::Sqlite { path } = &config.database
        && !path.exists()
    {
        return Err(AdminError::Invalid(format!(
            "no database at {}: run this in the folder where `hookrelay serve` runs, or \
             name the database with --database (HOOKRELAY_DATABASE) or --config",
            path.display()
        )));
    }
    let options = OpenOptions {
        migrate: config.migrate_on_start,
        runs_api: false,
        runs_worker: false,
        pool_size: 2,
    };
    let store = store::open(&config.database, options).await?;
    let operators = Operators::new(
        store.clone(),
        config.sources.clone(),
        config.destinations.clone(),
        config.retry.max_attempts,
    );
    let result = match command {
        AdminCommand::Events(command) => execute(command, &operators).await,
        AdminCommand::Destinations(command) => destinations(command, &operators).await,
    };
    store.close().await;
    result
}

async fn destinations(
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

/// Text from a captured webhook as the terminal may show it: control characters
/// (escape sequences among them) written as escapes.
fn printable(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let shown: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            shown
        })
        .collect()
}

/// `routes test`: which destinations an event would go to, and why the others not.
pub fn routes(command: RoutesCommand, config: &Config) -> Result<(), AdminError> {
    let RoutesCommand::Test {
        source,
        headers,
        body,
    } = command;
    let Some((settings, configured)) = config.sources.resolve(&source) else {
        return Err(AdminError::Invalid(format!(
            "source {source:?} is not configured and unknown sources are refused"
        )));
    };
    let mut map = http::HeaderMap::new();
    for header in &headers {
        let (name, value) = header.split_once(':').ok_or_else(|| {
            AdminError::Invalid(format!("--header {header:?}: write it as 'Name: value'"))
        })?;
        let name = http::HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| AdminError::Invalid(format!("--header {header:?}: bad header name")))?;
        let value = http::HeaderValue::from_str(value.trim())
            .map_err(|_| AdminError::Invalid(format!("--header {header:?}: bad header value")))?;
        map.append(name, value);
    }
    // A captured JSON body is the common case: its content type need not be typed.
    if !map.contains_key(http::header::CONTENT_TYPE) {
        map.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
    }
    let raw = if body.as_os_str() == "-" {
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut raw)?;
        raw
    } else {
        std::fs::read(&body)
            .map_err(|e| AdminError::Invalid(format!("cannot read {}: {e}", body.display())))?
    };
    let mut out = std::io::stdout().lock();
    if !configured {
        writeln!(
            out,
            "source {source} is not configured: it is accepted as unknown"
        )?;
    }
    let tree = match body_as_routed(&settings, &map, &raw) {
        Ok(tree) => tree,
        Err(refused) => {
            writeln!(
                out,
                "refused at ingest ({} {}): {}",
                refused.code().http_status().as_u16(),
                refused.code(),
                printable(&refused.to_string())
            )?;
            return Ok(());
        }
    };
    let explanation = routing::explain(
        &settings,
        &Routable {
            headers: &map,
            body: tree.as_ref(),
            raw_body: &raw,
        },
    );
    if tree.is_none() {
        writeln!(
            out,
            "the body is not JSON by its content type: filters see it as a string"
        )?;
    }
    let event_type = match &explanation.event_type {
        Ok(event_type) => event_type,
        Err(refused) => {
            writeln!(out, "refused at ingest (400 invalid_event_type): {refused}")?;
            return Ok(());
        }
    };
    writeln!(
        out,
        "event type: {}",
        event_type.as_deref().map_or("(none)".into(), printable)
    )?;
    if explanation.built_in {
        writeln!(out, "no routes: the built-in processor takes every event")?;
        return Ok(());
    }
    let mut delivered_to: Vec<&str> = Vec::new();
    for (index, (destination, verdict, why)) in explanation.routes.iter().enumerate() {
        let matched = *verdict == crate::domain::routing::Verdict::Matched;
        let note = if matched && delivered_to.contains(&destination.as_str()) {
            " (already chosen by an earlier route: one delivery)"
        } else {
            ""
        };
        if matched {
            delivered_to.push(destination);
        }
        writeln!(
            out,
            "route {index} -> {destination}: {}{note}",
            if matched { "delivers" } else { "skips" }
        )?;
        if !matched {
            writeln!(out, "    because {}", verdict.describe())?;
            if let Some(why) = why {
                writeln!(out, "    {}", printable(why))?;
            }
        }
    }
    if delivered_to.is_empty() {
        writeln!(
            out,
            "no route matches: the event would be stored as filtered"
        )?;
    } else {
        delivered_to.dedup();
        writeln!(out, "deliveries: {}", delivered_to.join(", "))?;
    }
    Ok(())
}

async fn execute(command: EventsCommand, operators: &Operators) -> Result<(), AdminError> {
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
