//! Trace export: the `[telemetry]` table and the standard `OTEL_*` variables (which
//! win over the file, as `HOOKRELAY_*` variables do). Tracing is on when an OTLP
//! endpoint is named, off otherwise.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::values::{TableError, expand_env, parse_duration};

/// Which traces are kept.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// The share of new traces kept, 0 to 1.
    pub ratio: f64,
    /// A trace continued from a sender (`trust_trace_context`) follows the sender's
    /// decision rather than the ratio.
    pub parent_based: bool,
}

/// How spans travel to the endpoint (`OTEL_EXPORTER_OTLP_PROTOCOL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `http/protobuf`: OTLP over HTTP (a collector's port 4318), the default.
    HttpProtobuf,
    /// `grpc`: OTLP over gRPC (port 4317).
    Grpc,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TelemetrySettings {
    pub protocol: Protocol,
    /// Over HTTP the full traces URL (`…/v1/traces`); over gRPC the collector's URL.
    pub endpoint: String,
    pub service_name: String,
    pub sampling: Sampling,
    /// Extra headers on each export request (an API key, say).
    pub headers: BTreeMap<String, String>,
    /// Spans waiting for export at most; more are dropped and counted.
    pub queue_size: usize,
    pub batch_size: usize,
    /// How often waiting spans are exported.
    pub export_interval: Duration,
    pub export_timeout: Duration,
}

/// `[telemetry]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TelemetryTable {
    endpoint: Option<String>,
    protocol: Option<String>,
    service_name: Option<String>,
    sampler: Option<String>,
    sampler_arg: Option<toml::Value>,
    headers: Option<BTreeMap<String, String>>,
    queue_size: Option<u32>,
    batch_size: Option<u32>,
    export_interval: Option<String>,
    export_timeout: Option<String>,
    trace_url: Option<String>,
}

/// What the dashboard links a trace id to: `trace_url` with `{trace_id}` replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceLink(String);

impl TraceLink {
    pub fn to(&self, trace_id: &str) -> String {
        self.0.replace("{trace_id}", trace_id)
    }
}

/// The telemetry settings from the file's table (if any) and the environment; `None`
/// when no endpoint is named or `OTEL_SDK_DISABLED=true`.
pub fn parse(
    table: Option<toml::Value>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Option<TelemetrySettings>, Option<TraceLink>), TableError> {
    let invalid = |field: &str, reason: String| TableError::new("telemetry", field, reason);
    let raw: TelemetryTable = match table {
        Some(value) => value
            .try_into()
            .map_err(|e: toml::de::Error| invalid("table", e.message().to_owned()))?,
        None => TelemetryTable::default(),
    };
    let trace_url = match raw.trace_url {
        Some(url) if !url.contains("{trace_id}") => {
            return Err(invalid(
                "trace_url",
                format!("{url:?} has no {{trace_id}} to put the trace id in"),
            ));
        }
        url => url.map(TraceLink),
    };
    let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    if var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return Ok((None, trace_url));
    }
    let protocol = var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .or(raw.protocol)
        .unwrap_or_else(|| "http/protobuf".into());
    let protocol = match protocol.trim() {
        "http/protobuf" => Protocol::HttpProtobuf,
        "grpc" => Protocol::Grpc,
        other => {
            return Err(invalid(
                "protocol",
                format!(
                    "{other:?} is not supported: write \"http/protobuf\" (the default, port \
                     4318) or \"grpc\" (port 4317)"
                ),
            ));
        }
    };
    // A signal's own URL is taken as it is; over HTTP a base URL gets `/v1/traces`.
    let endpoint = match var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
        Some(url) => Some(url),
        None => var("OTEL_EXPORTER_OTLP_ENDPOINT")
            .or(raw
                .endpoint
                .map(|e| expand_env(&e, env))
                .transpose()
                .map_err(|e| invalid("endpoint", e))?)
            .map(|base| match protocol {
                Protocol::HttpProtobuf => format!("{}/v1/traces", base.trim_end_matches('/')),
                Protocol::Grpc => base,
            }),
    };
    let Some(endpoint) = endpoint else {
        return Ok((None, trace_url));
    };
    let parsed = reqwest::Url::parse(endpoint.trim())
        .map_err(|e| invalid("endpoint", format!("{endpoint:?} is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid(
            "endpoint",
            format!("{endpoint:?} is not an http:// or https:// URL"),
        ));
    }
    let sampler = var("OTEL_TRACES_SAMPLER")
        .or(raw.sampler)
        .unwrap_or_else(|| "parentbased_always_on".into());
    let argument = var("OTEL_TRACES_SAMPLER_ARG").or(raw.sampler_arg.map(|v| match v {
        toml::Value::String(s) => s,
        other => other.to_string(),
    }));
    let sampling = sampling(&sampler, argument.as_deref()).map_err(|e| invalid("sampler", e))?;
    let number = |name: &str, file: Option<u32>, default: u32| -> Result<usize, TableError> {
        match var(name) {
            Some(text) => text
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|n| *n > 0)
                .map(|n| n as usize)
                .ok_or_else(|| invalid(name, format!("{text:?} is not a positive number"))),
            None => Ok(file.filter(|n| *n > 0).unwrap_or(default) as usize),
        }
    };
    let millis = |name: &str,
                  file: Option<String>,
                  default: Duration|
     -> Result<Duration, TableError> {
        match var(name) {
            Some(text) => text
                .trim()
                .parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|_| invalid(name, format!("{text:?} is not a number of milliseconds"))),
            None => file.map_or(Ok(default), |text| {
                parse_duration(&text).map_err(|e| invalid("export_interval", e))
            }),
        }
    };
    let queue_size = number("OTEL_BSP_MAX_QUEUE_SIZE", raw.queue_size, 2048)?;
    Ok((
        Some(TelemetrySettings {
            protocol,
            endpoint: parsed.to_string(),
            service_name: var("OTEL_SERVICE_NAME")
                .or(raw.service_name)
                .unwrap_or_else(|| "hookrelay".into()),
            sampling,
            headers: raw
                .headers
                .unwrap_or_default()
                .into_iter()
                .map(|(name, value)| Ok((name, expand_env(&value, env)?)))
                .collect::<Result<_, String>>()
                .map_err(|e| invalid("headers", e))?,
            queue_size,
            batch_size: number("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", raw.batch_size, 512)?
                .min(queue_size),
            export_interval: millis(
                "OTEL_BSP_SCHEDULE_DELAY",
                raw.export_interval,
                Duration::from_secs(5),
            )?,
            export_timeout: millis(
                "OTEL_BSP_EXPORT_TIMEOUT",
                raw.export_timeout,
                Duration::from_secs(10),
            )?,
        }),
        trace_url,
    ))
}

/// The standard sampler names (`OTEL_TRACES_SAMPLER`) and their argument.
fn sampling(name: &str, argument: Option<&str>) -> Result<Sampling, String> {
    let ratio = || -> Result<f64, String> {
        match argument {
            None => Ok(1.0),
            Some(text) => text
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|r| (0.0..=1.0).contains(r))
                .ok_or_else(|| format!("the sampler argument {text:?} is not a ratio from 0 to 1")),
        }
    };
    let (parent_based, ratio) = match name.trim() {
        "always_on" => (false, 1.0),
        "always_off" => (false, 0.0),
        "traceidratio" => (false, ratio()?),
        "parentbased_always_on" => (true, 1.0),
        "parentbased_always_off" => (true, 0.0),
        "parentbased_traceidratio" => (true, ratio()?),
        other => {
            return Err(format!(
                "{other:?} is not one of always_on, always_off, traceidratio, \
                 parentbased_always_on, parentbased_always_off, parentbased_traceidratio"
            ));
        }
    };
    Ok(Sampling {
        ratio,
        parent_based,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(table: &str, vars: &[(&str, &str)]) -> Result<Option<TelemetrySettings>, TableError> {
        let value: Option<toml::Value> =
            (!table.is_empty()).then(|| toml::from_str(table).unwrap());
        let env = |name: &str| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        };
        parse(value, &env).map(|(settings, _)| settings)
    }

    #[test]
    fn off_unless_an_endpoint_is_named() {
        assert_eq!(from("", &[]).unwrap(), None);
        assert_eq!(from("service_name = \"x\"", &[]).unwrap(), None);
        let on = from(
            "",
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")],
        )
        .unwrap()
        .unwrap();
        assert_eq!(on.endpoint, "http://collector:4318/v1/traces");
        assert_eq!(on.service_name, "hookrelay");
        assert_eq!(
            on.sampling,
            Sampling {
                ratio: 1.0,
                parent_based: true
            }
        );
        let disabled = from(
            "endpoint = \"http://c:4318\"",
            &[("OTEL_SDK_DISABLED", "true")],
        );
        assert_eq!(disabled.unwrap(), None);
    }

    #[test]
    fn grpc_takes_the_collectors_url_as_it_is() {
        let settings = from(
            "endpoint = \"http://collector:4317\"",
            &[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")],
        )
        .unwrap()
        .unwrap();
        assert_eq!(settings.protocol, Protocol::Grpc);
        assert_eq!(settings.endpoint, "http://collector:4317/");
    }

    #[test]
    fn the_environment_wins_over_the_file() {
        let settings = from(
            "endpoint = \"http://file:4318\"\nsampler = \"traceidratio\"\nsampler_arg = 0.5\n\
             service_name = \"file\"\nexport_interval = \"2s\"",
            &[
                (
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    "http://env:4318/custom",
                ),
                ("OTEL_SERVICE_NAME", "env"),
                ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ],
        )
        .unwrap()
        .unwrap();
        assert_eq!(settings.endpoint, "http://env:4318/custom");
        assert_eq!(settings.service_name, "env");
        assert_eq!(
            settings.sampling,
            Sampling {
                ratio: 0.5,
                parent_based: false
            }
        );
        assert_eq!(settings.export_interval, Duration::from_millis(100));
    }

    #[test]
    fn bad_values_name_what_is_wrong() {
        let json = from(
            "endpoint = \"http://c:4318\"\nprotocol = \"http/json\"",
            &[],
        )
        .unwrap_err();
        assert!(json.to_string().contains("http/protobuf"), "{json}");
        let ratio = from(
            "endpoint = \"http://c:4318\"",
            &[
                ("OTEL_TRACES_SAMPLER", "traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "2"),
            ],
        )
        .unwrap_err();
        assert!(ratio.to_string().contains("ratio from 0 to 1"), "{ratio}");
        let sampler = from("endpoint = \"http://c:4318\"\nsampler = \"sometimes\"", &[]);
        assert!(sampler.unwrap_err().to_string().contains("always_on"));
        let link = parse(
            Some(toml::from_str("trace_url = \"https://traces/\"").unwrap()),
            &|_| None,
        );
        assert!(link.unwrap_err().to_string().contains("{trace_id}"));
        let scheme = from("endpoint = \"ftp://c\"", &[]).unwrap_err();
        assert!(scheme.to_string().contains("http://"), "{scheme}");
    }
}
