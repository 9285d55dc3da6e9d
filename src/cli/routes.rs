//! `hookrelay routes test`: which routes take an event, from the config alone.

use std::io::Write;

use super::args::RoutesCommand;
use super::error::AdminError;
use crate::config::Config;
use crate::ops::ingest::body_as_routed;
use crate::ops::routing::{self, Routable};

/// `routes test`: which destinations an event would go to, and why the others not.
pub fn routes(command: RoutesCommand, config: &Config) -> Result<(), AdminError> {
    let RoutesCommand::Test {
        source,
        headers,
        body,
    } = command;
    let Some((settings, configured)) = config.sources.resolve(&source) else {
        return Err(AdminError::Invalid(format!(
            "source {source:?} is not configured and unknown sources are refused"
        )));
    };
    let mut map = http::HeaderMap::new();
    for header in &headers {
        let (name, value) = header.split_once(':').ok_or_else(|| {
            AdminError::Invalid(format!("--header {header:?}: write it as 'Name: value'"))
        })?;
        let name = http::HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| AdminError::Invalid(format!("--header {header:?}: bad header name")))?;
        let value = http::HeaderValue::from_str(value.trim())
            .map_err(|_| AdminError::Invalid(format!("--header {header:?}: bad header value")))?;
        map.append(name, value);
    }
    // A captured JSON body is the common case: its content type need not be typed.
    if !map.contains_key(http::header::CONTENT_TYPE) {
        map.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
    }
    let raw = if body.as_os_str() == "-" {
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut raw)?;
        raw
    } else {
        std::fs::read(&body)
            .map_err(|e| AdminError::Invalid(format!("cannot read {}: {e}", body.display())))?
    };
    let mut out = std::io::stdout().lock();
    if !configured {
        writeln!(
            out,
            "source {source} is not configured: it is accepted as unknown"
        )?;
    }
    let tree = match body_as_routed(&settings, &map, &raw) {
        Ok(tree) => tree,
        Err(refused) => {
            writeln!(
                out,
                "refused at ingest ({} {}): {}",
                refused.code().http_status().as_u16(),
                refused.code(),
                printable(&refused.to_string())
            )?;
            return Ok(());
        }
    };
    let explanation = routing::explain(
        &settings,
        &Routable {
            headers: &map,
            body: tree.as_ref(),
            raw_body: &raw,
        },
    );
    if tree.is_none() {
        writeln!(
            out,
            "the body is not JSON by its content type: filters see it as a string"
        )?;
    }
    let event_type = match &explanation.event_type {
        Ok(event_type) => event_type,
        Err(refused) => {
            writeln!(out, "refused at ingest (400 invalid_event_type): {refused}")?;
            return Ok(());
        }
    };
    writeln!(
        out,
        "event type: {}",
        event_type.as_deref().map_or("(none)".into(), printable)
    )?;
    if explanation.built_in {
        writeln!(out, "no routes: the built-in processor takes every event")?;
        return Ok(());
    }
    let mut delivered_to: Vec<&str> = Vec::new();
    for (index, (destination, verdict, why)) in explanation.routes.iter().enumerate() {
        let matched = *verdict == crate::domain::routing::Verdict::Matched;
        let note = if matched && delivered_to.contains(&destination.as_str()) {
            " (already chosen by an earlier route: one delivery)"
        } else {
            ""
        };
        if matched {
            delivered_to.push(destination);
        }
        writeln!(
            out,
            "route {index} -> {destination}: {}{note}",
            if matched { "delivers" } else { "skips" }
        )?;
        // A broker destination: where the event would be published.
        if matched
            && let Some(configured) = config.destinations.get(destination)
            && configured.endpoint.kind() != crate::config::endpoints::Kind::Http
        {
            writeln!(
                out,
                "    as {} ({}) to {}",
                configured.endpoint.kind().as_str(),
                configured.format.as_str(),
                printable(
                    &configured
                        .endpoint
                        .target_for(&source, event_type.as_deref())
                )
            )?;
        }
        if !matched {
            writeln!(out, "    because {}", verdict.describe())?;
            if let Some(why) = why {
                writeln!(out, "    {}", printable(why))?;
            }
        }
    }
    if delivered_to.is_empty() {
        writeln!(
            out,
            "no route matches: the event would be stored as filtered"
        )?;
    } else {
        delivered_to.dedup();
        writeln!(out, "deliveries: {}", delivered_to.join(", "))?;
    }
    Ok(())
}

/// Text from a captured webhook as the terminal may show it: control characters
/// (escape sequences among them) written as escapes.
pub(super) fn printable(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let shown: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            shown
        })
        .collect()
}
