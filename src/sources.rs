//! Per-source settings from the config file's `[sources.NAME]` tables: how a sender
//! signs, where its idempotency key and event type are, which content types it may
//! send, and its routes (`[[sources.NAME.routes]]`, or its own `destination = "URL"`).

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderName;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;

use crate::destinations::{self, BUILT_IN, DestinationSettings, Destinations};
use crate::domain::body_reads::BodyReads;
use crate::domain::routing::{Filter, Route, TypeGlob};
use crate::ingest::event_type;
use crate::units::parse_duration;

/// A `[sources.NAME]` table that cannot be used: which source, which field, why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("[sources.{source_name}] {field}: {reason}")]
pub struct SourceError {
    pub source_name: String,
    pub field: String,
    pub reason: String,
}

/// How a sender signs its requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    None,
    Github,
    Stripe,
    Shopify,
    Slack,
    StandardWebhooks,
    Svix,
}

impl FromStr for Scheme {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "none" => Self::None,
            "github" => Self::Github,
            "stripe" => Self::Stripe,
            "shopify" => Self::Shopify,
            "slack" => Self::Slack,
            "standard-webhooks" => Self::StandardWebhooks,
            "svix" => Self::Svix,
            other => {
                return Err(format!(
                    "unknown scheme {other:?}; expected github, stripe, shopify, slack, \
                     standard-webhooks, svix or none"
                ));
            }
        })
    }
}

impl Scheme {
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Github => "github",
            Self::Stripe => "stripe",
            Self::Shopify => "shopify",
            Self::Slack => "slack",
            Self::StandardWebhooks => "standard-webhooks",
            Self::Svix => "svix",
        }
    }

    /// Where each provider puts a delivery's unique id, in order of preference.
    fn default_keys(self) -> Vec<KeyLocation> {
        let header = |name: &'static str| KeyLocation::Header(HeaderName::from_static(name));
        let json = |pointer: &str| KeyLocation::Json(pointer.to_owned());
        match self {
            Self::None => vec![],
            Self::Github => vec![header("x-github-delivery")],
            Self::Stripe => vec![json("/id")],
            // The X- names, and the unprefixed ones of Shopify's Events webhooks.
            Self::Shopify => vec![
                header("x-shopify-event-id"),
                header("shopify-event-id"),
                header("x-shopify-webhook-id"),
                header("shopify-webhook-id"),
            ],
            // Events API bodies carry event_id; a slash command's exact replay has the
            // same signature.
            Self::Slack => vec![json("/event_id"), header("x-slack-signature")],
            Self::StandardWebhooks => vec![header("webhook-id")],
            Self::Svix => vec![header("svix-id"), header("webhook-id")],
        }
    }

    /// Standard Webhooks and Svix secrets are base64, usually with a `whsec_` prefix.
    fn decodes_secrets(self) -> bool {
        matches!(self, Self::StandardWebhooks | Self::Svix)
    }

    pub fn signs_timestamps(self) -> bool {
        matches!(
            self,
            Self::Stripe | Self::Slack | Self::StandardWebhooks | Self::Svix
        )
    }
}

/// Where an idempotency key is found when there is no `Idempotency-Key` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyLocation {
    Header(HeaderName),
    /// A JSON pointer into the body, e.g. `/id`.
    Json(String),
}

impl FromStr for KeyLocation {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(name) = s.strip_prefix("header:") {
            let name = HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|_| format!("{name:?} is not a valid header name"))?;
            Ok(Self::Header(name))
        } else if let Some(pointer) = s.strip_prefix("json:") {
            if !pointer.starts_with('/') {
                return Err("a JSON pointer starts with /, e.g. json:/id".into());
            }
            Ok(Self::Json(pointer.to_owned()))
        } else {
            Err("expected \"header:NAME\" or \"json:/pointer\"".into())
        }
    }
}

/// Key material; its `Debug` never shows the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// A Standard Webhooks secret: base64, with or without the `whsec_` prefix.
    pub fn from_whsec(text: &str) -> Result<Self, String> {
        let encoded = text.strip_prefix("whsec_").unwrap_or(text);
        BASE64
            .decode(encoded)
            .map(Self)
            .map_err(|_| "must be base64, usually written whsec_<base64>".to_string())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

#[derive(Debug, Clone)]
pub struct SourceSettings {
    pub name: String,
    pub verify: Scheme,
    /// Any of these verifies (rotation).
    pub secrets: Vec<Secret>,
    pub tolerance: Duration,
    /// Tried in order after the `Idempotency-Key` header.
    pub keys: Vec<KeyLocation>,
    /// Where the event type is, when not where the scheme puts it.
    pub event_type: Option<KeyLocation>,
    /// Accepted media types (lower-case essences). `application/json` stands for every
    /// JSON type, `application/*+json` included.
    pub content_types: Vec<String>,
    /// In the order written; none: the built-in processor.
    pub routes: Vec<Route>,
    /// A destination of its routes is ordered by a key in the body.
    pub ordering_key_in_body: bool,
    /// What ingest reads of a JSON body: all of it until [`Sources::build`] has
    /// worked it out from the settings and the destinations.
    pub body_reads: BodyReads,
}

const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

impl SourceSettings {
    /// A source that is not configured: no signature, JSON only, the built-in processor.
    pub fn unconfigured(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            verify: Scheme::None,
            secrets: Vec::new(),
            tolerance: DEFAULT_TOLERANCE,
            keys: Vec::new(),
            event_type: None,
            content_types: vec!["application/json".into()],
            routes: Vec::new(),
            ordering_key_in_body: false,
            body_reads: BodyReads::Whole,
        }
    }

    /// Whether routing reads the event's type or document, so the body must be parsed.
    pub fn routes_read_the_event(&self) -> bool {
        self.routes
            .iter()
            .any(|r| r.reads_document() || !r.event_types.is_empty())
            || self.ordering_key_in_body
    }

    /// Every part of a JSON body that ingest reads for this source: Slack's handshake,
    /// keys, the event type, the routes' filters and ordered destinations' keys.
    fn body_reads_with(&self, destinations: &Destinations) -> BodyReads {
        let mut pointers: Vec<&str> = Vec::new();
        if self.verify == Scheme::Slack {
            pointers.extend(["/type", "/challenge"]);
        }
        for location in self.keys.iter().chain(&self.event_type) {
            if let KeyLocation::Json(p) = location {
                pointers.push(p);
            }
        }
        if self.event_type.is_none() {
            pointers.extend(event_type::body_pointers(self.verify));
        }
        let mut reads = BodyReads::nothing();
        for route in &self.routes {
            if let Some(KeyLocation::Json(p)) = destinations
                .get(&route.destination)
                .filter(|d| d.limits.ordered.is_some())
                .and_then(|d| d.ordering_key.as_ref())
            {
                pointers.push(p);
            }
            if let Some(filter) = &route.filter {
                reads.merge(filter.body_reads());
            }
        }
        for pointer in pointers {
            reads.merge(BodyReads::at_pointer(pointer));
        }
        reads
    }
}

/// Every configured source, what to do with the others, and every destination.
#[derive(Debug, Clone)]
pub struct Sources {
    pub accept_unknown: bool,
    configured: HashMap<String, Arc<SourceSettings>>,
    pub destinations: Destinations,
}

impl Default for Sources {
    fn default() -> Self {
        Self {
            accept_unknown: true,
            configured: HashMap::new(),
            destinations: Destinations::default(),
        }
    }
}

impl Sources {
    pub fn new(accept_unknown: bool, sources: Vec<SourceSettings>) -> Self {
        Self {
            accept_unknown,
            configured: sources
                .into_iter()
                .map(|s| (s.name.clone(), Arc::new(s)))
                .collect(),
            destinations: Destinations::default(),
        }
    }

    /// Sources and destinations together, checked against each other: every route
    /// names a destination that exists.
    pub fn build(
        accept_unknown: bool,
        parsed: ParsedSources,
        destinations: Vec<DestinationSettings>,
    ) -> Result<Self, SourceError> {
        let mut all = Destinations::new(destinations);
        for own in parsed.own_destinations {
            if all.contains(&own.name) {
                return Err(SourceError {
                    source_name: own.name.clone(),
                    field: "destination".into(),
                    reason: format!(
                        "the source's own destination is named {:?}, like [destinations.{}]; \
                         route to [destinations.{}] instead",
                        own.name, own.name, own.name
                    ),
                });
            }
            all.insert(own);
        }
        let mut sources = parsed.sources;
        for source in &mut sources {
            source.ordering_key_in_body = source.routes.iter().any(|route| {
                all.get(&route.destination).is_some_and(|d| {
                    d.limits.ordered.is_some()
                        && matches!(d.ordering_key, Some(KeyLocation::Json(_)))
                })
            });
            source.body_reads = source.body_reads_with(&all);
        }
        for source in &sources {
            for (index, route) in source.routes.iter().enumerate() {
                if !all.contains(&route.destination) {
                    return Err(SourceError {
                        source_name: source.name.clone(),
                        field: format!("routes[{index}].destination"),
                        reason: format!(
                            "no destination is named {:?}; define [destinations.{}]",
                            route.destination, route.destination
                        ),
                    });
                }
            }
        }
        Ok(Self {
            destinations: all,
            ..Self::new(accept_unknown, sources)
        })
    }

    /// Every configured source, in name order.
    pub fn configured(&self) -> Vec<Arc<SourceSettings>> {
        let mut all: Vec<_> = self.configured.values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    pub fn get(&self, name: &str) -> Option<Arc<SourceSettings>> {
        self.configured.get(name).cloned()
    }

    /// The settings for `name` and whether they are configured (rather than those of
    /// an unknown source that is accepted), or `None` when unknown sources are refused.
    pub fn resolve(&self, name: &str) -> Option<(Arc<SourceSettings>, bool)> {
        match self.get(name) {
            Some(settings) => Some((settings, true)),
            None if self.accept_unknown => {
                Some((Arc::new(SourceSettings::unconfigured(name)), false))
            }
            None => None,
        }
    }

    pub fn len(&self) -> usize {
        self.configured.len()
    }

    pub fn is_empty(&self) -> bool {
        self.configured.is_empty()
    }
}

/// One `[sources.NAME]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceTable {
    verify: Option<String>,
    secret: Option<String>,
    secrets: Option<Vec<String>>,
    tolerance: Option<String>,
    key: Option<String>,
    event_type: Option<String>,
    destination: Option<String>,
    timeout: Option<String>,
    content_types: Option<Vec<String>>,
    signing_secret: Option<String>,
    #[serde(default)]
    routes: Vec<RouteTable>,
}

/// One `[[sources.NAME.routes]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteTable {
    destination: String,
    event_types: Option<Vec<String>>,
    filter: Option<toml::Value>,
}

/// The sources of the config file, and the destinations that their own
/// `destination = "URL"` settings make (each named after its source).
#[derive(Debug, Default)]
pub struct ParsedSources {
    pub sources: Vec<SourceSettings>,
    pub own_destinations: Vec<DestinationSettings>,
}

/// Parses the `sources` table of the config file.
pub fn parse_table(
    table: toml::Table,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ParsedSources, SourceError> {
    let mut parsed = ParsedSources::default();
    for (name, value) in table {
        let invalid = |field: &str, reason: String| SourceError {
            source_name: name.clone(),
            field: field.to_owned(),
            reason,
        };
        crate::domain::event::SourceName::parse(&name)
            .map_err(|e| invalid("name", e.to_string()))?;
        let raw: SourceTable = value
            .try_into()
            .map_err(|e: toml::de::Error| invalid("table", e.message().to_owned()))?;
        let (source, own) = build(&name, raw, env, &invalid)?;
        parsed.sources.push(source);
        parsed.own_destinations.extend(own);
    }
    Ok(parsed)
}

fn build(
    name: &str,
    raw: SourceTable,
    env: &dyn Fn(&str) -> Option<String>,
    invalid: &dyn Fn(&str, String) -> SourceError,
) -> Result<(SourceSettings, Option<DestinationSettings>), SourceError> {
    let verify: Scheme = raw
        .verify
        .as_deref()
        .unwrap_or("none")
        .parse()
        .map_err(|e| invalid("verify", e))?;

    let mut texts = Vec::new();
    if let Some(secret) = raw.secret {
        texts.push(secret);
    }
    texts.extend(raw.secrets.unwrap_or_default());
    let mut secrets = Vec::new();
    for text in texts {
        let field = "secret";
        let text = expand_env(&text, env).map_err(|e| invalid(field, e))?;
        if text.is_empty() {
            return Err(invalid(field, "is empty".into()));
        }
        let secret = if verify.decodes_secrets() {
            Secret::from_whsec(&text).map_err(|e| invalid(field, e))?
        } else {
            Secret::new(text.into_bytes())
        };
        secrets.push(non_empty(secret).map_err(|e| invalid(field, e))?);
    }
    if verify != Scheme::None && secrets.is_empty() {
        return Err(invalid(
            "secret",
            format!("verify = \"{}\" needs `secret` or `secrets`", verify.name()),
        ));
    }
    if verify == Scheme::None && !secrets.is_empty() {
        return Err(invalid(
            "verify",
            "a secret is set but verify is \"none\"; name the scheme".into(),
        ));
    }

    let tolerance = match raw.tolerance {
        Some(text) => parse_duration(&text).map_err(|e| invalid("tolerance", e))?,
        None => DEFAULT_TOLERANCE,
    };
    let keys = match raw.key {
        Some(text) => vec![text.parse().map_err(|e| invalid("key", e))?],
        None => verify.default_keys(),
    };
    let event_type = raw
        .event_type
        .map(|text| text.parse::<KeyLocation>())
        .transpose()
        .map_err(|e| invalid("event_type", e))?;
    // The source's own destination: one route, to a destination named after it.
    let own = match raw.destination {
        Some(text) => {
            let url = destinations::parse_url(&text, env).map_err(|e| invalid("destination", e))?;
            let mut own = DestinationSettings::new(name, url);
            if let Some(text) = &raw.timeout {
                own.timeout =
                    destinations::parse_positive(text).map_err(|e| invalid("timeout", e))?;
            }
            own.signing_secret = raw
                .signing_secret
                .as_deref()
                .map(|text| destinations::parse_signing_secret(text, env))
                .transpose()
                .map_err(|e| invalid("signing_secret", e))?;
            Some(own)
        }
        None => {
            for (field, set) in [
                ("timeout", raw.timeout.is_some()),
                ("signing_secret", raw.signing_secret.is_some()),
            ] {
                if set {
                    return Err(invalid(
                        field,
                        "applies to the source's own `destination`; for routes, set it in \
                         [destinations.NAME]"
                            .into(),
                    ));
                }
            }
            None
        }
    };
    if name == BUILT_IN && own.is_some() {
        return Err(invalid(
            "destination",
            format!("{BUILT_IN:?} is the built-in processor's name; rename the source or route it"),
        ));
    }
    let mut routes: Vec<Route> = own.iter().map(|d| Route::catch_all(&d.name)).collect();
    for (index, route) in raw.routes.into_iter().enumerate() {
        routes.push(
            build_route(route)
                .map_err(|(field, reason)| invalid(&format!("routes[{index}].{field}"), reason))?,
        );
    }
    let content_types = match raw.content_types {
        Some(types) if types.is_empty() => {
            return Err(invalid("content_types", "needs at least one type".into()));
        }
        Some(types) => types
            .into_iter()
            .map(|t| {
                let essence = t
                    .split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_ascii_lowercase();
                if essence.contains('/') {
                    Ok(essence)
                } else {
                    Err(invalid(
                        "content_types",
                        format!("{t:?} is not a media type"),
                    ))
                }
            })
            .collect::<Result<_, _>>()?,
        None => vec!["application/json".into()],
    };
    let settings = SourceSettings {
        name: name.to_owned(),
        verify,
        secrets,
        tolerance,
        keys,
        event_type,
        content_types,
        routes,
        // Known once the destinations are ([`Sources::build`]).
        ordering_key_in_body: false,
        body_reads: BodyReads::Whole,
    };
    Ok((settings, own))
}

/// A route as written, or the field at fault and why.
fn build_route(raw: RouteTable) -> Result<Route, (&'static str, String)> {
    let event_types = match raw.event_types {
        Some(types) if types.is_empty() => {
            return Err((
                "event_types",
                "is empty, so it would match nothing; leave it out to match every type".into(),
            ));
        }
        Some(types) => types.iter().map(|t| TypeGlob::new(t)).collect(),
        None => Vec::new(),
    };
    let filter = match raw.filter {
        Some(value) => {
            let json = serde_json::to_value(value).map_err(|e| ("filter", e.to_string()))?;
            if !json.is_object() {
                return Err((
                    "filter",
                    "must be a table such as { body = { type = \"invoice.paid\" } }".into(),
                ));
            }
            Some(Filter::parse(&json).map_err(|e| ("filter", e.to_string()))?)
        }
        None => None,
    };
    Ok(Route {
        destination: raw.destination,
        event_types,
        filter,
    })
}

/// A zero-length key would make every signature trivially computable: verification
/// silently off. `whsec_` alone (or `whsec_${VAR}` with `VAR` empty) decodes to that.
pub fn non_empty(secret: Secret) -> Result<Secret, String> {
    if secret.bytes().is_empty() {
        Err("decodes to an empty key; a signing key must not be empty".into())
    } else {
        Ok(secret)
    }
}

/// Replaces every `${NAME}` with the environment variable's value.
pub fn expand_env(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| "unclosed ${ in value".to_string())?;
        let name = &after[..end];
        let value = env(name).ok_or_else(|| format!("environment variable {name} is not set"))?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, env: &[(&str, &str)]) -> Result<Vec<SourceSettings>, SourceError> {
        let table: toml::Table = text.parse().unwrap();
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse_table(table, &|name| env.get(name).cloned()).map(|parsed| parsed.sources)
    }

    #[test]
    fn schemes_bring_their_default_keys() {
        let sources = parse(
            "[github]\nverify = \"github\"\nsecret = \"${GH}\"\n",
            &[("GH", "s3cret")],
        )
        .unwrap();
        let github = &sources[0];
        assert_eq!(github.verify, Scheme::Github);
        assert_eq!(github.secrets, vec![Secret::new(b"s3cret".to_vec())]);
        assert_eq!(
            github.keys,
            vec![KeyLocation::Header(HeaderName::from_static(
                "x-github-delivery"
            ))]
        );
        assert_eq!(github.tolerance, Duration::from_secs(300));
    }

    #[test]
    fn whsec_secrets_are_decoded() {
        let sources = parse(
            "[sw]\nverify = \"standard-webhooks\"\nsecrets = [\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\", \"c2Vjb25k\"]\n",
            &[],
        )
        .unwrap();
        assert_eq!(sources[0].secrets.len(), 2);
        assert_eq!(sources[0].secrets[1].bytes(), b"second");
    }

    #[test]
    fn errors_name_the_file_source_and_field() {
        let cases = [
            ("[a]\nverify = \"gitlab\"\n", "verify"),
            ("[a]\nverify = \"github\"\n", "secret"),
            (
                "[a]\nverify = \"github\"\nsecret = \"${MISSING}\"\n",
                "MISSING",
            ),
            ("[a]\ndestination = \"ftp://x\"\n", "destination"),
            ("[a]\ntimeout = \"forever\"\n", "timeout"),
            ("[a]\nkey = \"body:id\"\n", "key"),
            ("[a]\nverfy = \"github\"\n", "verfy"),
            (
                "[a]\nverify = \"svix\"\nsecret = \"not base64!\"\n",
                "secret",
            ),
            // Empty keys, however they are written, for every scheme.
            ("[a]\nverify = \"svix\"\nsecret = \"whsec_\"\n", "secret"),
            (
                "[a]\nverify = \"standard-webhooks\"\nsecret = \"whsec_${EMPTY}\"\n",
                "secret",
            ),
            (
                "[a]\nverify = \"standard-webhooks\"\nsecrets = [\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\", \"whsec_\"]\n",
                "secret",
            ),
            (
                "[a]\nverify = \"stripe\"\nsecret = \"${EMPTY}\"\n",
                "secret",
            ),
            ("[a]\nverify = \"github\"\nsecret = \"\"\n", "secret"),
            ("[a]\nsigning_secret = \"whsec_\"\n", "signing_secret"),
            (
                "[a]\nsigning_secret = \"whsec_${EMPTY}\"\n",
                "signing_secret",
            ),
        ];
        for (text, field) in cases {
            let error = parse(text, &[("EMPTY", "")]).unwrap_err().to_string();
            assert!(error.contains("sources.a"), "{error}");
            assert!(error.contains(field), "{field}: {error}");
        }
    }

    #[test]
    fn unknown_sources_follow_the_switch() {
        let open = Sources::new(true, vec![]);
        let (anything, configured) = open.resolve("anything").unwrap();
        assert_eq!((anything.verify, configured), (Scheme::None, false));
        let closed = Sources::new(false, vec![SourceSettings::unconfigured("known")]);
        assert!(
            closed
                .resolve("known")
                .is_some_and(|(_, configured)| configured)
        );
        assert!(closed.resolve("other").is_none());
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let settings = SourceSettings {
            secrets: vec![Secret::new(b"hunter2".to_vec())],
            ..SourceSettings::unconfigured("x")
        };
        assert!(!format!("{settings:?}").contains("hunter2"));
    }

    fn build_all(text: &str) -> Result<Sources, SourceError> {
        let mut table: toml::Table = text.parse().unwrap();
        let destinations = match table.remove("destinations") {
            Some(toml::Value::Table(t)) => destinations::parse_table(t, &|_| None).unwrap(),
            _ => Vec::new(),
        };
        let sources = match table.remove("sources") {
            Some(toml::Value::Table(t)) => parse_table(t, &|_| None)?,
            _ => ParsedSources::default(),
        };
        Sources::build(true, sources, destinations)
    }

    #[test]
    fn routes_are_parsed_and_checked_against_the_destinations() {
        let sources = build_all(
            "[destinations.billing]\nurl = \"http://127.0.0.1:1/b\"\n\
             [sources.stripe]\nevent_type = \"json:/type\"\n\
             [[sources.stripe.routes]]\ndestination = \"billing\"\nevent_types = [\"invoice.*\"]\n\
             [[sources.stripe.routes]]\ndestination = \"billing\"\n\
             filter = { body = { data = { object = { amount = { \"$gte\" = 10000 } } } } }\n\
             [sources.legacy]\ndestination = \"http://127.0.0.1:1/l\"\ntimeout = \"3s\"\n",
        )
        .unwrap();
        let stripe = sources.get("stripe").unwrap();
        assert_eq!(stripe.routes.len(), 2);
        assert!(stripe.routes_read_the_event());
        assert_eq!(stripe.event_type, Some(KeyLocation::Json("/type".into())));
        // The source's own destination is a route to a destination named after it.
        let legacy = sources.get("legacy").unwrap();
        assert_eq!(legacy.routes[0].destination, "legacy");
        assert!(!legacy.routes_read_the_event());
        let own = sources.destinations.get("legacy").unwrap();
        assert_eq!(own.timeout, Duration::from_secs(3));
    }

    #[test]
    fn bad_routes_are_refused_with_the_source_route_and_reason() {
        let cases = [
            (
                "[sources.s]\n[[sources.s.routes]]\ndestination = \"nowhere\"\n",
                "routes[0].destination",
                "nowhere",
            ),
            (
                "[destinations.d]\nurl = \"http://x\"\n[sources.s]\n[[sources.s.routes]]\ndestination = \"d\"\nfilter = { body = { \"$gt\" = [1] } }\n",
                "routes[0].filter",
                "$gt",
            ),
            (
                "[destinations.d]\nurl = \"http://x\"\n[sources.s]\n[[sources.s.routes]]\ndestination = \"d\"\n[[sources.s.routes]]\ndestination = \"d\"\nfilter = { body = { \"$regex\" = \"(\" } }\n",
                "routes[1].filter",
                "regex",
            ),
            (
                "[destinations.d]\nurl = \"http://x\"\n[sources.s]\n[[sources.s.routes]]\ndestination = \"d\"\nevent_types = []\n",
                "routes[0].event_types",
                "empty",
            ),
            (
                "[destinations.d]\nurl = \"http://x\"\n[sources.s]\n[[sources.s.routes]]\ndestination = \"d\"\nfilter = { body = { \"$bogus\" = 1 } }\n",
                "routes[0].filter",
                "$bogus",
            ),
            (
                "[destinations.d]\nurl = \"http://x\"\n[sources.d]\ndestination = \"http://y\"\n",
                "destination",
                "destinations.d",
            ),
            ("[sources.s]\ntimeout = \"5s\"\n", "timeout", "destination"),
            (
                "[sources.s]\nevent_type = \"body:type\"\n",
                "event_type",
                "json:",
            ),
        ];
        for (text, field, reason) in cases {
            let error = build_all(text).unwrap_err();
            assert_eq!(error.field, field, "{error}");
            assert!(error.to_string().contains(reason), "{reason}: {error}");
        }
    }
}
