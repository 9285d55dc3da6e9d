//! The operator's commands on the database directly, for when the HTTP API is not at
//! hand: opens the store, runs `events` or `destinations`, closes it.

use super::args::{DestinationsCommand, EventsCommand};
use super::destinations::destinations;
use super::error::AdminError;
use super::events::execute;
use crate::config::Config;
use crate::ops::Operators;
use crate::store::{self, OpenOptions};

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
