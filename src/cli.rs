//! Command-line interface: `serve`, `api`, `worker` and `migrate`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "hookrelay",
    version,
    about = "Reliable webhook ingestion: every 202 is durable, redeliveries are dropped, \
             events are delivered with retries and dead-lettering.",
    after_help = "Settings come from flags, then HOOKRELAY_* environment variables, then the \
                  config file, then defaults. See the README for the full table."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP API and the worker in one process (the default deployment).
    Serve(ServerArgs),
    /// Run the HTTP API alone; pair it with one or more `worker` processes.
    Api(ServerArgs),
    /// Run the worker alone; any number may share one database.
    Worker(CommonArgs),
    /// Create or upgrade the database schema, then exit. Safe to run repeatedly.
    Migrate(CommonArgs),
}

#[derive(Debug, Args, Clone, Default)]
pub struct CommonArgs {
    /// TOML config file.
    #[arg(long, env = "HOOKRELAY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Database URL: `sqlite://PATH` (default `sqlite://data/hookrelay.db`) or `postgres://…`.
    #[arg(long, env = "HOOKRELAY_DATABASE", value_name = "URL")]
    pub database: Option<String>,

    /// Do not create or upgrade the schema on start (run `hookrelay migrate` yourself).
    #[arg(long)]
    pub no_migrate: bool,
}

#[derive(Debug, Args, Clone, Default)]
pub struct ServerArgs {
    #[command(flatten)]
    pub common: CommonArgs,

    /// Address to listen on (default `0.0.0.0:8080`).
    #[arg(long, env = "HOOKRELAY_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
}
