//! One typed `Config`: defaults, then the TOML file, then `HOOKRELAY_*` variables, then
//! flags. Every value is parsed and validated here, once; errors name the setting and
//! where its value came from.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

pub mod alerts;
pub mod destinations;
pub mod endpoints;
pub mod routes;
pub mod sources;
pub mod telemetry;
pub mod values;

use self::alerts::AlertSettings;
use self::destinations::Destinations;
use self::sources::Sources;
use self::telemetry::{TelemetrySettings, TraceLink};
use self::values::{
    Secret, TableError, parse_at_least, parse_duration, parse_float_in, parse_listen,
    parse_log_filter, parse_size,
};
use crate::domain::retry::RetryPolicy;
use crate::store::DatabaseUrl;

/// Read when no `--config` or `HOOKRELAY_CONFIG` names a file and it exists.
pub const DEFAULT_CONFIG_FILE: &str = "hookrelay.toml";

#[derive(Debug, Clone)]
pub struct Config {
    /// The file the settings were read from, if any.
    pub config_file: Option<PathBuf>,
    pub database: DatabaseUrl,
    pub listen: String,
    /// `hookrelay worker --listen`: where a worker serves its own `/metrics`,
    /// `/health` and `/ready`; `None`: it serves nothing.
    pub worker_listen: Option<String>,
    pub retry: RetryPolicy,
    pub lease: Duration,
    pub worker_concurrency: usize,
    pub max_body: usize,
    pub log_filter: String,
    /// Safety net for the worker's wake-up: it looks for due work at least this often.
    pub poll_interval: Duration,
    pub migrate_on_start: bool,
    /// Database connections per process (PostgreSQL).
    pub pool_size: usize,
    /// Delivered events older than this are deleted.
    pub retention: Duration,
    /// Dead-lettered events older than this are deleted; `None` keeps them.
    pub dead_retention: Option<Duration>,
    pub prune_interval: Duration,
    /// How long a stopping process waits for requests still in flight.
    pub shutdown_grace: Duration,
    /// How long a client may take to send a request's headers (and an idle
    /// connection may stay open waiting for its next request).
    pub header_read_timeout: Duration,
    /// How long a client may take to send a request's body.
    pub body_read_timeout: Duration,
    /// How long a request may take once its body is read.
    pub request_timeout: Duration,
    /// Bearer token for the operator's routes (`HOOKRELAY_ADMIN_TOKEN`).
    pub admin_token: Option<Secret>,
    pub sources: Arc<Sources>,
    /// Every destination: `[destinations.NAME]` and the sources' own.
    pub destinations: Arc<Destinations>,
    /// `[alerts]`: where alerts about destinations go; `None`: nowhere.
    pub alerts: Option<Arc<AlertSettings>>,
    /// `[telemetry]` and `OTEL_*`: where traces go; `None`: tracing is off.
    pub telemetry: Option<Arc<TelemetrySettings>>,
    /// `[telemetry] trace_url`: where the dashboard links a trace id.
    pub trace_link: Option<TraceLink>,
}

/// Values given on the command line; `None` means "not given".
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub config_file: Option<PathBuf>,
    pub database: Option<String>,
    pub listen: Option<String>,
    /// A worker's own listener (`--listen` of `hookrelay worker`).
    pub worker_listen: Option<String>,
    pub no_migrate: bool,
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {source}")]
    ParseFile {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("config file {path}: unknown setting `{key}`")]
    UnknownKey { path: PathBuf, key: String },
    #[error("config file {path}: `{key}` must be a string, number or boolean")]
    NotScalar { path: PathBuf, key: String },
    #[error("config file {path}: {source}")]
    Table { path: PathBuf, source: TableError },
    #[error("environment: {source}")]
    Environment { source: TableError },
    #[error("config file {path}: `{key}` must be {expected}")]
    WrongType {
        path: PathBuf,
        key: String,
        expected: &'static str,
    },
    #[error("invalid {setting} {value:?} (from {origin}): {reason}")]
    Invalid {
        setting: &'static str,
        value: String,
        origin: Origin,
        reason: String,
    },
}

#[derive(Debug, Clone)]
pub enum Origin {
    Default,
    File(PathBuf),
    Env(String),
    Flag(&'static str),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default => f.write_str("the default"),
            Self::File(path) => write!(f, "config file {}", path.display()),
            Self::Env(name) => write!(f, "environment variable {name}"),
            Self::Flag(name) => write!(f, "flag {name}"),
        }
    }
}

/// Every scalar setting with its default. The file key is the name; the variable is
/// `HOOKRELAY_` + the name in upper case.
const SETTINGS: &[(&str, &str)] = &[
    ("database", "sqlite://data/hookrelay.db"),
    ("listen", "0.0.0.0:8080"),
    ("max_attempts", "5"),
    ("retry_base_delay", "10s"),
    ("retry_factor", "3"),
    ("retry_jitter", "0.2"),
    ("lease", "30s"),
    ("worker_concurrency", "64"),
    ("max_body", "1MiB"),
    ("log", "info"),
    ("poll_interval", "1s"),
    ("pool_size", "16"),
    ("admin_token", ""),
    ("retention", "30days"),
    ("dead_retention", ""),
    ("prune_interval", "1m"),
    ("shutdown_grace", "20s"),
    ("header_read_timeout", "10s"),
    ("body_read_timeout", "30s"),
    ("request_timeout", "60s"),
];

struct Layered {
    values: BTreeMap<&'static str, (String, Origin)>,
}

impl Layered {
    fn get<T>(
        &self,
        setting: &'static str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        let (value, origin) = &self.values[setting];
        parse(value).map_err(|reason| ConfigError::Invalid {
            setting,
            value: value.clone(),
            origin: origin.clone(),
            reason,
        })
    }
}

impl Config {
    /// Builds the configuration from the process environment and the given flags.
    pub fn load(overrides: &Overrides) -> Result<Self, ConfigError> {
        Self::load_from(overrides, |name| std::env::var(name).ok())
    }

    pub fn load_from(
        overrides: &Overrides,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut values: BTreeMap<&'static str, (String, Origin)> = SETTINGS
            .iter()
            .map(|(name, default)| (*name, (default.to_string(), Origin::Default)))
            .collect();

        // `hookrelay.toml` in the working folder when no other is named: `serve` and
        // the operators' commands run there find the same configuration.
        let file = overrides
            .config_file
            .clone()
            .or_else(|| env("HOOKRELAY_CONFIG").map(PathBuf::from))
            .or_else(|| {
                let default = PathBuf::from(DEFAULT_CONFIG_FILE);
                default.is_file().then_some(default)
            });
        let config_file = file.clone();
        let mut sources = Sources::default();
        let mut destinations = Destinations::default();
        let mut alerts = None;
        let mut telemetry_table = None;
        let mut telemetry_origin = Origin::Default;
        if let Some(path) = file {
            let file = read_file(&path, &env)?;
            for (key, value) in file.settings {
                values.insert(key, (value, Origin::File(path.clone())));
            }
            sources = file.sources;
            destinations = file.destinations;
            alerts = file.alerts;
            if file.telemetry.is_some() {
                telemetry_table = file.telemetry;
                telemetry_origin = Origin::File(path.clone());
            }
        }
        let (telemetry, trace_link) =
            telemetry::parse(telemetry_table, &env).map_err(|source| match telemetry_origin {
                Origin::File(path) => ConfigError::Table { path, source },
                _ => ConfigError::Environment { source },
            })?;
        for (name, _) in SETTINGS {
            let var = format!("HOOKRELAY_{}", name.to_ascii_uppercase());
            if let Some(value) = env(&var) {
                values.insert(name, (value, Origin::Env(var)));
            }
        }
        if let Some(database) = &overrides.database {
            values.insert("database", (database.clone(), Origin::Flag("--database")));
        }
        if let Some(listen) = &overrides.listen {
            values.insert("listen", (listen.clone(), Origin::Flag("--listen")));
        }

        let layered = Layered { values };
        let retry = RetryPolicy {
            max_attempts: layered.get("max_attempts", |v| parse_at_least(v, 1))?,
            base_delay: layered.get("retry_base_delay", parse_duration)?,
            factor: layered.get("retry_factor", |v| parse_float_in(v, 1.0, 1000.0))?,
            jitter: layered.get("retry_jitter", |v| parse_float_in(v, 0.0, 0.99))?,
        };
        let body_read_timeout = layered.get("body_read_timeout", parse_duration)?;
        Ok(Self {
            config_file,
            database: layered.get("database", DatabaseUrl::parse)?,
            listen: layered.get("listen", parse_listen)?,
            worker_listen: overrides
                .worker_listen
                .as_deref()
                .map(|raw| {
                    parse_listen(raw).map_err(|reason| ConfigError::Invalid {
                        setting: "worker listen address",
                        value: raw.to_owned(),
                        origin: Origin::Flag("--listen"),
                        reason,
                    })
                })
                .transpose()?,
            retry,
            lease: layered.get("lease", parse_duration)?,
            worker_concurrency: layered
                .get("worker_concurrency", |v| parse_at_least(v, 1))?
                .min(10_000) as usize,
            max_body: layered.get("max_body", parse_size)?,
            log_filter: layered.get("log", parse_log_filter)?,
            poll_interval: layered.get("poll_interval", parse_duration)?,
            migrate_on_start: !overrides.no_migrate,
            pool_size: layered
                .get("pool_size", |v| parse_at_least(v, 1))?
                .min(1000) as usize,
            retention: layered.get("retention", parse_duration)?,
            dead_retention: layered.get("dead_retention", |v| {
                if v.trim().is_empty() {
                    Ok(None)
                } else {
                    parse_duration(v).map(Some)
                }
            })?,
            prune_interval: layered.get("prune_interval", parse_duration)?,
            shutdown_grace: layered.get("shutdown_grace", parse_duration)?,
            header_read_timeout: layered.get("header_read_timeout", parse_duration)?,
            body_read_timeout,
            request_timeout: layered.get("request_timeout", |v| {
                let timeout = parse_duration(v)?;
                if timeout <= body_read_timeout {
                    return Err(format!(
                        "must be longer than body_read_timeout ({}), so that a slow body \
                         gets its 408 first",
                        humantime::format_duration(body_read_timeout)
                    ));
                }
                Ok(timeout)
            })?,
            admin_token: layered.get("admin_token", |v| {
                Ok((!v.trim().is_empty()).then(|| Secret::new(v.trim().as_bytes().to_vec())))
            })?,
            sources: Arc::new(sources),
            destinations: Arc::new(destinations),
            alerts: alerts.map(Arc::new),
            telemetry: telemetry.map(Arc::new),
            trace_link,
        })
    }
}

struct FileContents {
    settings: Vec<(&'static str, String)>,
    sources: Sources,
    destinations: Destinations,
    alerts: Option<AlertSettings>,
    telemetry: Option<toml::Value>,
}

fn read_file(
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<FileContents, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
        path: path.to_owned(),
        source,
    })?;
    let table: toml::Table = text.parse().map_err(|source| ConfigError::ParseFile {
        path: path.to_owned(),
        source: Box::new(source),
    })?;
    let mut values = Vec::new();
    let mut accept_unknown = true;
    let mut configured = sources::ParsedSources::default();
    let mut destinations = Vec::new();
    let mut alerts = None;
    let mut telemetry = None;
    let in_file = |source| ConfigError::Table {
        path: path.to_owned(),
        source,
    };
    for (key, value) in table {
        let wrong_type = |expected| ConfigError::WrongType {
            path: path.to_owned(),
            key: key.clone(),
            expected,
        };
        match (key.as_str(), value) {
            ("accept_unknown_sources", toml::Value::Boolean(flag)) => {
                accept_unknown = flag;
                continue;
            }
            ("accept_unknown_sources", _) => return Err(wrong_type("true or false")),
            ("sources", toml::Value::Table(table)) => {
                configured = sources::parse_table(table, env).map_err(in_file)?;
                continue;
            }
            ("sources", _) => return Err(wrong_type("a table of [sources.NAME] sections")),
            ("destinations", toml::Value::Table(table)) => {
                destinations = destinations::parse_table(table, env).map_err(in_file)?;
                continue;
            }
            ("destinations", _) => {
                return Err(wrong_type("a table of [destinations.NAME] sections"));
            }
            ("alerts", value @ toml::Value::Table(_)) => {
                alerts = Some(alerts::parse_table(value, env).map_err(in_file)?);
                continue;
            }
            ("alerts", _) => return Err(wrong_type("an [alerts] table")),
            ("telemetry", value @ toml::Value::Table(_)) => {
                telemetry = Some(value);
                continue;
            }
            ("telemetry", _) => return Err(wrong_type("a [telemetry] table")),
            (_, value) => values.push((key, value)),
        }
    }
    let mut settings = Vec::new();
    for (key, value) in values {
        let Some((name, _)) = SETTINGS.iter().find(|(name, _)| *name == key) else {
            return Err(ConfigError::UnknownKey {
                path: path.to_owned(),
                key,
            });
        };
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            _ => {
                return Err(ConfigError::NotScalar {
                    path: path.to_owned(),
                    key,
                });
            }
        };
        settings.push((*name, text));
    }
    let (sources, destinations) =
        Sources::build(accept_unknown, configured, destinations).map_err(in_file)?;
    Ok(FileContents {
        settings,
        sources,
        destinations,
        alerts,
        telemetry,
    })
}

/// The `HOOKRELAY_*` variable names that mean something, besides the settings'.
const OTHER_VARIABLES: [&str; 3] = [
    "HOOKRELAY_CONFIG",
    "HOOKRELAY_WORKER_LISTEN",
    "HOOKRELAY_LOG_FORMAT",
];

/// A warning for each `HOOKRELAY_*` variable in `names` that hookrelay does not read
/// (a misspelling is otherwise ignored in silence), with the closest name it reads.
pub fn unknown_variables(names: impl Iterator<Item = String>) -> Vec<String> {
    let known: Vec<String> = SETTINGS
        .iter()
        .map(|(name, _)| format!("HOOKRELAY_{}", name.to_ascii_uppercase()))
        .chain(OTHER_VARIABLES.iter().map(|name| name.to_string()))
        .collect();
    names
        .filter(|name| name.starts_with("HOOKRELAY_"))
        // The test suite's and the benchmark's own variables.
        .filter(|name| !name.starts_with("HOOKRELAY_TEST_") && !name.starts_with("HOOKRELAY_BENCH"))
        .filter(|name| !known.contains(name))
        .map(|name| {
            let closest = known
                .iter()
                .map(|k| (strsim::levenshtein(k, &name), k))
                .min()
                .filter(|(distance, _)| *distance <= 3);
            match closest {
                Some((_, k)) => {
                    format!("{name} is not a hookrelay setting and is ignored (did you mean {k}?)")
                }
                None => format!("{name} is not a hookrelay setting and is ignored"),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
