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
    ///
    /// Serves webhooks at /webhooks/{source}, the operators' API at /events and /metrics,
    /// the dashboard at /ui, and /health and /ready. With HOOKRELAY_ADMIN_TOKEN set, the
    /// operators' routes need `Authorization: Bearer <token>`; a browser opens
    /// /ui?token=<token> once. Without it they answer this machine only.
    Serve(ServerArgs),
    /// Run the HTTP API alone; pair it with one or more `worker` processes.
    ///
    /// Serves webhooks at /webhooks/{source}, the operators' API at /events and /metrics,
    /// the dashboard at /ui, and /health and /ready. With HOOKRELAY_ADMIN_TOKEN set, the
    /// operators' routes need `Authorization: Bearer <token>`; a browser opens
    /// /ui?token=<token> once. Without it they answer this machine only.
    Api(ServerArgs),
    /// Run the worker alone; any number may share one database.
    ///
    /// With --listen it serves its own /metrics (its attempt, delivery and latency
    /// figures), /health and /ready; without, it listens nowhere.
    Worker(WorkerArgs),
    /// Create or upgrade the database schema, then exit. Safe to run repeatedly.
    Migrate(CommonArgs),
    /// Inspect and replay events, working on the database directly.
    Events(EventsArgs),
    /// Show, pause and resume destinations (state, backlog, in flight, oldest due, last
    /// outcomes), working on the database directly.
    Destinations(DestinationsArgs),
    /// Try a source's routes on an event before relying on them.
    Routes(RoutesArgs),
}

#[derive(Debug, Args, Clone)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub common: CommonArgs,

    /// Serve this worker's /metrics, /health and /ready on this address, e.g.
    /// `0.0.0.0:9090` (off by default, so that several workers can share a host).
    #[arg(long, env = "HOOKRELAY_WORKER_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
}

#[derive(Debug, Args, Clone)]
pub struct DestinationsArgs {
    #[command(flatten)]
    pub common: CommonArgs,

    #[command(subcommand)]
    pub command: Option<DestinationsCommand>,
}

#[derive(Debug, Subcommand, Clone)]
pub enum DestinationsCommand {
    /// Every configured destination and any other with deliveries (the default).
    List {
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Stop delivering to a destination, in every worker sharing the database. Events
    /// keep being accepted and stored; their deliveries wait and use no attempts.
    Pause {
        /// The destination's name (`[destinations.NAME]`, or `built-in`).
        name: String,
    },
    /// Deliver to a paused destination again; its backlog drains at its `rate`.
    Resume {
        /// The destination's name.
        name: String,
    },
}

#[derive(Debug, Args, Clone)]
pub struct RoutesArgs {
    #[command(flatten)]
    pub common: CommonArgs,

    #[command(subcommand)]
    pub command: RoutesCommand,
}

#[derive(Debug, Subcommand, Clone)]
pub enum RoutesCommand {
    /// Show which destinations would receive an event and why the others would not.
    ///
    /// Reads the config file only (no database, no signature check), e.g.
    /// `hookrelay routes test --source github --header 'X-GitHub-Event: issues'
    /// --body issue.json`.
    Test {
        /// The source whose routes to try.
        #[arg(long)]
        source: String,
        /// A request header, `Name: value`; repeat for several. Without a
        /// `Content-Type` header the body is taken as `application/json`.
        #[arg(long = "header", value_name = "NAME: VALUE")]
        headers: Vec<String>,
        /// The request body; `-` reads standard input.
        #[arg(long, value_name = "FILE")]
        body: PathBuf,
    },
}

#[derive(Debug, Args, Clone)]
pub struct EventsArgs {
    #[command(flatten)]
    pub common: CommonArgs,

    #[command(subcommand)]
    pub command: EventsCommand,
}

#[derive(Debug, Subcommand, Clone)]
pub enum EventsCommand {
    /// List events, newest first.
    List {
        #[command(flatten)]
        filter: FilterArgs,
        /// How many events to show (1-500).
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one event and its attempts as JSON.
    Show {
        /// The event id, e.g. evt_0193...
        id: String,
    },
    /// Queue delivered or dead-lettered events again with a fresh set of attempts:
    /// one by id, or every one matching the filters.
    Replay {
        /// The event id; leave out to replay by filter.
        id: Option<String>,
        #[command(flatten)]
        filter: FilterArgs,
        /// Replay every delivered and dead-lettered event (a replay with no filter is
        /// refused without this).
        #[arg(long, conflicts_with_all = ["id", "status", "source", "destination", "since", "until"])]
        all: bool,
    },
}

#[derive(Debug, Args, Clone, Default)]
pub struct FilterArgs {
    /// queued, processing, retrying, delivered, dead_lettered or filtered (a
    /// delivery in this status; filtered: no delivery).
    #[arg(long)]
    pub status: Option<String>,
    /// Only this source.
    #[arg(long)]
    pub source: Option<String>,
    /// Only deliveries to this destination (replay: only that delivery of the event).
    #[arg(long)]
    pub destination: Option<String>,
    /// Received at or after this RFC 3339 time, e.g. 2026-11-30T12:00:00Z.
    #[arg(long)]
    pub since: Option<String>,
    /// Received before this RFC 3339 time.
    #[arg(long)]
    pub until: Option<String>,
}

#[derive(Debug, Args, Clone, Default)]
pub struct CommonArgs {
    /// TOML config file.
    #[arg(long, env = "HOOKRELAY_CONFIG", value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,

    /// Database URL: `sqlite://PATH` (default `sqlite://data/hookrelay.db`) or `postgres://…`.
    #[arg(long, env = "HOOKRELAY_DATABASE", value_name = "URL", global = true)]
    pub database: Option<String>,

    /// Do not create or upgrade the schema on start (run `hookrelay migrate` yourself).
    #[arg(long, global = true)]
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
