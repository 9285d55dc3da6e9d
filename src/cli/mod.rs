//! The command line: its arguments (`args`), and the commands that are not a server:
//! `migrate`, the operator's `events` and `destinations`, and `routes test`.

mod admin;
mod args;
mod destinations;
mod error;
mod events;
mod migrate;
mod routes;

pub use admin::{AdminCommand, run};
pub use args::{
    Cli, Command, CommonArgs, DestinationsCommand, EventsCommand, FilterArgs, RoutesCommand,
};
pub use error::AdminError;
pub use migrate::migrate;
pub use routes::routes;
