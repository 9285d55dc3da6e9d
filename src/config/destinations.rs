//! The user's endpoints, from the config file's `[destinations.NAME]` tables (and each
//! source's own `destination = "URL"`): where deliveries go, how they are signed and
//! what headers they carry, and the retry policy each one overrides.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderName, HeaderValue};
use serde::Deserialize;

use super::endpoints::{BrokerOptions, Endpoint, Kind};
use super::values::{
    Secret, TableError, expand_env, parse_duration, parse_positive, parse_signing_secret,
};
use crate::domain::message::Format;
use crate::domain::protection::{BreakerPolicy, Limits, OnDeadLetter, Rate};
use crate::domain::retry::RetryPolicy;
use crate::domain::scheme::KeyLocation;

/// The destination of sources without a route: the built-in processor. Reserved: no
/// `[destinations.NAME]` may take it.
pub const BUILT_IN: &str = "built-in";

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct DestinationSettings {
    pub name: String,
    /// Where deliveries go; the url's scheme chose the kind.
    pub endpoint: Endpoint,
    /// How the event is put into what is sent.
    pub format: Format,
    pub timeout: Duration,
    /// Re-signs deliveries with Standard Webhooks headers.
    pub signing_secret: Option<Secret>,
    /// Added to every delivery; values are marked sensitive and never shown.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub max_attempts: Option<u32>,
    pub retry_base_delay: Option<Duration>,
    pub retry_factor: Option<f64>,
    /// Rate, attempts in flight, ordering and breaker.
    pub limits: Limits,
    /// Where an ordered destination's ordering key is; `None`: one stream.
    pub ordering_key: Option<KeyLocation>,
    /// Each delivery carries a `traceparent` whose parent is its attempt's span
    /// (when tracing is on); off for parties outside the trace.
    pub propagate_trace: bool,
    /// [`Endpoint::shown`], worked out once: every traced attempt names it.
    shown: String,
}

impl fmt::Debug for DestinationSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header_names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("DestinationSettings")
            .field("name", &self.name)
            .field("endpoint", &self.endpoint)
            .field("format", &self.format)
            .field("timeout", &self.timeout)
            .field("signing_secret", &self.signing_secret)
            .field("headers", &header_names)
            .field("max_attempts", &self.max_attempts)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl DestinationSettings {
    pub fn new(name: &str, endpoint: Endpoint) -> Self {
        Self {
            shown: endpoint.shown(),
            name: name.to_owned(),
            endpoint,
            format: Format::default(),
            timeout: DEFAULT_TIMEOUT,
            signing_secret: None,
            headers: Vec::new(),
            max_attempts: None,
            retry_base_delay: None,
            retry_factor: None,
            limits: Limits {
                breaker: Some(BreakerPolicy::default()),
                ..Limits::default()
            },
            ordering_key: None,
            propagate_trace: true,
        }
    }

    /// The global policy with this destination's overrides.
    pub fn retry(&self, global: &RetryPolicy) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.max_attempts.unwrap_or(global.max_attempts),
            base_delay: self.retry_base_delay.unwrap_or(global.base_delay),
            factor: self.retry_factor.unwrap_or(global.factor),
            jitter: global.jitter,
        }
    }

    /// The URL as operators may see it: no credentials, no query (either may hold a
    /// token).
    pub fn shown_url(&self) -> &str {
        &self.shown
    }
}

/// Every destination by name.
#[derive(Debug, Clone, Default)]
pub struct Destinations {
    by_name: BTreeMap<String, Arc<DestinationSettings>>,
}

impl Destinations {
    pub fn new(destinations: Vec<DestinationSettings>) -> Self {
        Self {
            by_name: destinations
                .into_iter()
                .map(|d| (d.name.clone(), Arc::new(d)))
                .collect(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&Arc<DestinationSettings>> {
        self.by_name.get(name)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// In name order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<DestinationSettings>> {
        self.by_name.values()
    }

    pub fn insert(&mut self, destination: DestinationSettings) {
        self.by_name
            .insert(destination.name.clone(), Arc::new(destination));
    }

    /// How many attempts a new delivery to `name` gets.
    pub fn max_attempts(&self, name: &str, global: u32) -> u32 {
        self.get(name)
            .and_then(|d| d.max_attempts)
            .unwrap_or(global)
    }
}

/// One `[destinations.NAME]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DestinationTable {
    url: String,
    timeout: Option<String>,
    signing_secret: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    max_attempts: Option<u32>,
    retry_base_delay: Option<String>,
    retry_factor: Option<f64>,
    rate: Option<String>,
    max_in_flight: Option<u32>,
    ordering: Option<String>,
    ordering_key: Option<String>,
    on_dead_letter: Option<String>,
    breaker_failures: Option<u32>,
    breaker_probe: Option<String>,
    breaker_probe_max: Option<String>,
    format: Option<String>,
    exchange: Option<String>,
    routing_key: Option<String>,
    region: Option<String>,
    aws_access_key_id: Option<String>,
    aws_secret_access_key: Option<String>,
    max_len: Option<u64>,
    /// Kafka producer properties (librdkafka's names), e.g. `"sasl.mechanism"`.
    #[serde(default)]
    kafka: BTreeMap<String, String>,
    propagate_trace: Option<bool>,
}

/// Parses the `destinations` table of the config file.
pub fn parse_table(
    table: toml::Table,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<DestinationSettings>, TableError> {
    let mut destinations = Vec::new();
    for (name, value) in table {
        let invalid = |field: &str, reason: String| {
            TableError::new(format!("destinations.{name}"), field, reason)
        };
        crate::domain::event::SourceName::parse(&name).map_err(|_| {
            invalid(
                "name",
                "must be 1-64 characters of A-Z a-z 0-9 _ - .".to_owned(),
            )
        })?;
        if name == BUILT_IN {
            return Err(invalid(
                "name",
                format!("{BUILT_IN:?} is the built-in processor's name"),
            ));
        }
        let raw: DestinationTable = value
            .try_into()
            .map_err(|e: toml::de::Error| invalid("table", e.message().to_owned()))?;
        destinations.push(build(&name, raw, env, &invalid)?);
    }
    Ok(destinations)
}

fn build(
    name: &str,
    raw: DestinationTable,
    env: &dyn Fn(&str) -> Option<String>,
    invalid: &dyn Fn(&str, String) -> TableError,
) -> Result<DestinationSettings, TableError> {
    let url = expand_env(&raw.url, env).map_err(|e| invalid("url", e))?;
    let mut kafka = Vec::with_capacity(raw.kafka.len());
    for (property, value) in &raw.kafka {
        let value = expand_env(value, env).map_err(|e| invalid(&format!("kafka.{property}"), e))?;
        kafka.push((property.clone(), value));
    }
    let aws_credentials = match (&raw.aws_access_key_id, &raw.aws_secret_access_key) {
        (None, None) => None,
        (Some(id), Some(secret)) => Some((
            expand_env(id, env).map_err(|e| invalid("aws_access_key_id", e))?,
            expand_env(secret, env).map_err(|e| invalid("aws_secret_access_key", e))?,
        )),
        _ => {
            return Err(invalid(
                "aws_access_key_id",
                "needs aws_secret_access_key with it (or neither, for the AWS chain)".into(),
            ));
        }
    };
    let options = BrokerOptions {
        aws_credentials,
        exchange: raw.exchange.clone(),
        routing_key: raw.routing_key.clone(),
        region: raw.region.clone(),
        max_len: raw.max_len,
        kafka,
    };
    let endpoint = Endpoint::parse(&url, options).map_err(|(field, e)| invalid(field, e))?;
    let mut destination = DestinationSettings::new(name, endpoint);
    if let Some(format) = &raw.format {
        destination.format = format.parse().map_err(|e| invalid("format", e))?;
    }
    protection(&mut destination, &raw, invalid)?;
    if let Some(text) = raw.timeout {
        destination.timeout = parse_positive(&text).map_err(|e| invalid("timeout", e))?;
    }
    destination.signing_secret = raw
        .signing_secret
        .map(|text| parse_signing_secret(&text, env))
        .transpose()
        .map_err(|e| invalid("signing_secret", e))?;
    for (header, value) in raw.headers {
        let field = format!("headers.{header}");
        let name = HeaderName::from_bytes(header.as_bytes())
            .map_err(|_| invalid(&field, "is not a valid header name".into()))?;
        if name.as_str().starts_with("x-hookrelay-") {
            return Err(invalid(
                &field,
                "X-Hookrelay-* headers are hookrelay's own".into(),
            ));
        }
        let value = expand_env(&value, env).map_err(|e| invalid(&field, e))?;
        let mut value = HeaderValue::from_str(&value)
            .map_err(|_| invalid(&field, "is not a valid header value".into()))?;
        value.set_sensitive(true);
        destination.headers.push((name, value));
    }
    if let Some(max) = raw.max_attempts {
        if max == 0 {
            return Err(invalid("max_attempts", "must be at least 1".into()));
        }
        destination.max_attempts = Some(max);
    }
    destination.retry_base_delay = raw
        .retry_base_delay
        .map(|t| parse_duration(&t))
        .transpose()
        .map_err(|e| invalid("retry_base_delay", e))?;
    if let Some(factor) = raw.retry_factor {
        if !(1.0..=1000.0).contains(&factor) {
            return Err(invalid("retry_factor", "must be between 1 and 1000".into()));
        }
        destination.retry_factor = Some(factor);
    }
    Ok(destination)
}

fn protection(
    destination: &mut DestinationSettings,
    raw: &DestinationTable,
    invalid: &dyn Fn(&str, String) -> TableError,
) -> Result<(), TableError> {
    let keyed = destination.endpoint.kind() != Kind::Http;
    let limits = &mut destination.limits;
    limits.rate = raw
        .rate
        .as_deref()
        .map(str::parse::<Rate>)
        .transpose()
        .map_err(|e| invalid("rate", e))?;
    if let Some(max) = raw.max_in_flight {
        if max == 0 {
            return Err(invalid(
                "max_in_flight",
                "must be at least 1 (use pause to stop a destination)".into(),
            ));
        }
        limits.max_in_flight = Some(max);
    }
    let ordered = match raw.ordering.as_deref() {
        None | Some("none") => false,
        Some("key") => true,
        Some(other) => {
            return Err(invalid(
                "ordering",
                format!("{other:?} is neither \"none\" nor \"key\""),
            ));
        }
    };
    let on_dead_letter = raw
        .on_dead_letter
        .as_deref()
        .map(str::parse::<OnDeadLetter>)
        .transpose()
        .map_err(|e| invalid("on_dead_letter", e))?;
    // A broker destination may have a message key without ordering.
    if !ordered && (on_dead_letter.is_some() || (raw.ordering_key.is_some() && !keyed)) {
        let field = if on_dead_letter.is_some() {
            "on_dead_letter"
        } else {
            "ordering_key"
        };
        return Err(invalid(
            field,
            "applies only with ordering = \"key\"".into(),
        ));
    }
    if ordered {
        limits.ordered = Some(on_dead_letter.unwrap_or_default());
    }
    destination.propagate_trace = raw.propagate_trace.unwrap_or(true);
    destination.ordering_key = raw
        .ordering_key
        .as_deref()
        .map(str::parse::<KeyLocation>)
        .transpose()
        .map_err(|e| invalid("ordering_key", e))?;
    let mut breaker = BreakerPolicy::default();
    if let Some(failures) = raw.breaker_failures {
        breaker.failures = failures;
    }
    if let Some(text) = &raw.breaker_probe {
        breaker.first_probe = parse_positive(text).map_err(|e| invalid("breaker_probe", e))?;
    }
    if let Some(text) = &raw.breaker_probe_max {
        breaker.max_probe = parse_positive(text).map_err(|e| invalid("breaker_probe_max", e))?;
    }
    if breaker.max_probe < breaker.first_probe {
        return Err(invalid(
            "breaker_probe_max",
            "must be at least breaker_probe".into(),
        ));
    }
    limits.breaker = (breaker.failures > 0).then_some(breaker);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, env: &[(&str, &str)]) -> Result<Vec<DestinationSettings>, TableError> {
        let table: toml::Table = text.parse().unwrap();
        let env: std::collections::HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse_table(table, &|name| env.get(name).cloned())
    }

    #[test]
    fn a_destination_with_every_setting() {
        let destinations = parse(
            "[billing]\nurl = \"http://user:pw@127.0.0.1:3000/hooks?token=abc\"\ntimeout = \"2s\"\n\
             signing_secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n\
             headers = { Authorization = \"Bearer ${TOKEN}\" }\nmax_attempts = 8\n\
             retry_base_delay = \"1s\"\nretry_factor = 2\n",
            &[("TOKEN", "t0ps3cret")],
        )
        .unwrap();
        let billing = &destinations[0];
        assert_eq!(billing.timeout, Duration::from_secs(2));
        assert_eq!(billing.headers[0].1.to_str().unwrap(), "Bearer t0ps3cret");
        assert!(billing.headers[0].1.is_sensitive());
        assert_eq!(billing.shown_url(), "http://127.0.0.1:3000/hooks");
        let shown = format!("{billing:?}");
        assert!(
            !shown.contains("t0ps3cret") && !shown.contains("pw"),
            "{shown}"
        );
        let global = RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_secs(10),
            factor: 3.0,
            jitter: 0.2,
        };
        let policy = billing.retry(&global);
        assert_eq!(
            (policy.max_attempts, policy.base_delay, policy.factor),
            (8, Duration::from_secs(1), 2.0)
        );
    }

    #[test]
    fn errors_name_the_destination_and_field() {
        let cases = [
            ("[a]\nurl = \"ftp://x\"\n", "url"),
            ("[a]\n", "url"),
            ("[a]\nurl = \"http://x\"\ntimeout = \"0s\"\n", "timeout"),
            (
                "[a]\nurl = \"http://x\"\nheaders = { \"bad name\" = \"v\" }\n",
                "headers",
            ),
            (
                "[a]\nurl = \"http://x\"\nheaders = { A = \"${NOPE}\" }\n",
                "NOPE",
            ),
            (
                "[a]\nurl = \"http://x\"\nmax_attempts = 0\n",
                "max_attempts",
            ),
            (
                "[a]\nurl = \"http://x\"\nretry_factor = 0.5\n",
                "retry_factor",
            ),
            (
                "[a]\nurl = \"http://x\"\nsigning_secret = \"whsec_\"\n",
                "signing_secret",
            ),
            ("[a]\nurl = \"http://x\"\nrtae = \"5/s\"\n", "rtae"),
        ];
        for (text, field) in cases {
            let error = parse(text, &[]).unwrap_err().to_string();
            assert!(error.contains("destinations.a"), "{error}");
            assert!(error.contains(field), "{field}: {error}");
        }
        let reserved = parse("[built-in]\nurl = \"http://x\"\n", &[]).unwrap_err();
        assert_eq!(reserved.field, "name");
    }
}
