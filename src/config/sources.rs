//! Per-source settings from the config file's `[sources.NAME]` tables: how a sender
//! signs, where its idempotency key and event type are, which content types it may
//! send, and its routes (`[[sources.NAME.routes]]`, or its own `destination = "URL"`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::destinations::{BUILT_IN, DestinationSettings, Destinations};
use super::routes::{RouteTable, build_route};
use super::values::{
    Secret, TableError, expand_env, non_empty, parse_duration, parse_positive,
    parse_signing_secret, parse_url,
};
use crate::domain::body_reads::BodyReads;
use crate::domain::routing::Route;
use crate::domain::scheme::{KeyLocation, Scheme};
use crate::ingest::event_type;

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
    /// A destination of its routes is ordered, or keyed, by a key in the body.
    pub ordering_key_in_body: bool,
    /// What ingest reads of a JSON body: all of it until [`Sources::build`] has
    /// worked it out from the settings and the destinations.
    pub body_reads: BodyReads,
    /// Continue the sender's `traceparent` rather than start a trace linked to it.
    pub trust_trace_context: bool,
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
            trust_trace_context: false,
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
    /// keys, the event type, the routes' filters and ordered or keyed destinations' keys.
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

/// Every configured source, and what to do with the others.
#[derive(Debug, Clone)]
pub struct Sources {
    pub accept_unknown: bool,
    configured: HashMap<String, Arc<SourceSettings>>,
}

impl Default for Sources {
    fn default() -> Self {
        Self {
            accept_unknown: true,
            configured: HashMap::new(),
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
        }
    }

    /// Sources and destinations together, checked against each other: every route
    /// names a destination that exists. The destinations include the sources' own.
    pub fn build(
        accept_unknown: bool,
        parsed: ParsedSources,
        destinations: Vec<DestinationSettings>,
    ) -> Result<(Self, Destinations), TableError> {
        let mut all = Destinations::new(destinations);
        for own in parsed.own_destinations {
            if all.contains(&own.name) {
                return Err(TableError {
                    table: format!("sources.{}", own.name),
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
                all.get(&route.destination)
                    .is_some_and(|d| matches!(d.ordering_key, Some(KeyLocation::Json(_))))
            });
            source.body_reads = source.body_reads_with(&all);
        }
        for source in &sources {
            for (index, route) in source.routes.iter().enumerate() {
                if !all.contains(&route.destination) {
                    return Err(TableError {
                        table: format!("sources.{}", source.name),
                        field: format!("routes[{index}].destination"),
                        reason: format!(
                            "no destination is named {:?}; define [destinations.{}]",
                            route.destination, route.destination
                        ),
                    });
                }
            }
        }
        Ok((Self::new(accept_unknown, sources), all))
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
    trust_trace_context: bool,
    #[serde(default)]
    routes: Vec<RouteTable>,
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
) -> Result<ParsedSources, TableError> {
    let mut parsed = ParsedSources::default();
    for (name, value) in table {
        let invalid =
            |field: &str, reason: String| TableError::new(format!("sources.{name}"), field, reason);
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
    invalid: &dyn Fn(&str, String) -> TableError,
) -> Result<(SourceSettings, Option<DestinationSettings>), TableError> {
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
            let url = parse_url(&text, env).map_err(|e| invalid("destination", e))?;
            let mut own = DestinationSettings::new(name, super::endpoints::Endpoint::Http(url));
            if let Some(text) = &raw.timeout {
                own.timeout = parse_positive(text).map_err(|e| invalid("timeout", e))?;
            }
            own.signing_secret = raw
                .signing_secret
                .as_deref()
                .map(|text| parse_signing_secret(text, env))
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
        trust_trace_context: raw.trust_trace_context,
    };
    Ok((settings, own))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, env: &[(&str, &str)]) -> Result<Vec<SourceSettings>, TableError> {
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
            vec![KeyLocation::Header(axum::http::HeaderName::from_static(
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

    fn build_all(text: &str) -> Result<(Sources, Destinations), TableError> {
        let mut table: toml::Table = text.parse().unwrap();
        let destinations = match table.remove("destinations") {
            Some(toml::Value::Table(t)) => {
                crate::config::destinations::parse_table(t, &|_| None).unwrap()
            }
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
        let (sources, destinations) = build_all(
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
        let own = destinations.get("legacy").unwrap();
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
