use std::process::ExitCode;

/// glibc's allocator showed up at ~10 % of CPU under load (many small, short-lived
/// allocations across threads); mimalloc handles that pattern better.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use tokio_util::sync::CancellationToken;

use hookrelay::app::{Application, Role};
use hookrelay::cli::{self, AdminCommand, Cli, Command, CommonArgs, RoutesCommand};
use hookrelay::config::{Config, Overrides};
use hookrelay::telemetry::LogTarget;
use hookrelay::{shutdown, telemetry};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut worker_listen = None;
    let (task, common, listen) = match cli.command {
        Command::Serve(args) => (Task::Run(Role::Serve), args.common, args.listen),
        Command::Api(args) => (Task::Run(Role::Api), args.common, args.listen),
        Command::Worker(args) => {
            worker_listen = args.listen;
            (Task::Run(Role::Worker), args.common, None)
        }
        Command::Migrate(common) => (Task::Migrate, common, None),
        Command::Events(args) => (
            Task::Admin(AdminCommand::Events(args.command)),
            args.common,
            None,
        ),
        Command::Destinations(args) => (
            Task::Admin(AdminCommand::Destinations(args.command)),
            args.common,
            None,
        ),
        Command::Routes(args) => (Task::Routes(args.command), args.common, None),
    };
    let overrides = Overrides {
        worker_listen,
        ..overrides(common, listen)
    };
    let config = match Config::load(&overrides) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("hookrelay: {error}");
            return ExitCode::from(2);
        }
    };
    let log_target = match task {
        Task::Admin(_) | Task::Routes(_) => LogTarget::Stderr,
        _ => LogTarget::Stdout,
    };
    let log_format = match std::env::var("HOOKRELAY_LOG_FORMAT")
        .unwrap_or_default()
        .parse::<telemetry::LogFormat>()
    {
        Ok(format) => format,
        Err(error) => {
            eprintln!("hookrelay: {error}");
            return ExitCode::from(2);
        }
    };
    // An operator's command prints its answer; its log shows only what went wrong,
    // unless HOOKRELAY_LOG asks for more.
    let log_filter =
        if log_target == LogTarget::Stderr && std::env::var_os("HOOKRELAY_LOG").is_none() {
            "warn"
        } else {
            &config.log_filter
        };
    // Only the services export traces; an operator's command is not part of one.
    let tracing = match task {
        Task::Run(_) => config.telemetry.clone(),
        _ => None,
    };
    let mut telemetry =
        match telemetry::init(log_filter, log_target, log_format, tracing.as_deref()) {
            Ok(telemetry) => telemetry,
            Err(error) => {
                eprintln!("hookrelay: {error}");
                return ExitCode::from(2);
            }
        };
    for warning in hookrelay::config::unknown_variables(std::env::vars().map(|(name, _)| name)) {
        tracing::warn!("{warning}");
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("hookrelay: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    // An operator's command says what went wrong once, as text; a service logs it too.
    let logs_failure = matches!(task, Task::Run(_) | Task::Migrate);
    let traces = telemetry.traces.take().map(|export| {
        let stop = CancellationToken::new();
        let counters = export.counters.clone();
        let task = runtime.spawn(export.run(stop.clone()));
        (stop, task, counters)
    });
    let counters = traces.as_ref().map(|(_, _, counters)| counters.clone());
    let outcome = runtime.block_on(run(task, config, counters));
    if let Some((stop, task, _)) = traces {
        // The spans of the last moments, exported or given up after a few seconds.
        stop.cancel();
        runtime.block_on(async {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), task).await;
        });
    }
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            if logs_failure {
                tracing::error!(error = %format!("{error:#}"), "hookrelay failed");
            }
            eprintln!("hookrelay: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn overrides(common: CommonArgs, listen: Option<String>) -> Overrides {
    Overrides {
        config_file: common.config,
        database: common.database,
        listen,
        worker_listen: None,
        no_migrate: common.no_migrate,
    }
}

/// What this invocation does.
enum Task {
    Run(Role),
    Migrate,
    Admin(AdminCommand),
    Routes(RoutesCommand),
}

async fn run(
    task: Task,
    config: Config,
    traces: Option<std::sync::Arc<telemetry::TraceCounters>>,
) -> anyhow::Result<()> {
    let role = match task {
        Task::Run(role) => role,
        Task::Migrate => return Ok(cli::migrate(&config).await?),
        Task::Admin(command) => return Ok(cli::run(command, &config).await?),
        Task::Routes(command) => return Ok(cli::routes(command, &config)?),
    };
    let token = CancellationToken::new();
    shutdown::cancel_on_signal(token.clone());
    let mut application = Application::build(config, role).await?;
    if let Some(counters) = traces {
        application = application.count_traces(counters);
    }
    application.run(token).await?;
    Ok(())
}
