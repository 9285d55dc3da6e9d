//! Names that depend on the event: a broker destination's topic, subject, routing key
//! or stream may say `{source}` and `{event_type}`, e.g. `webhooks.{source}`.

use std::fmt;

/// What a template may refer to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Source,
    EventType,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Field(Field),
}

/// A parsed template. Parsing refuses unknown or unclosed placeholders, so that a typo
/// stops the process at start rather than naming a topic `{sorce}`.
#[derive(Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
    text: String,
}

/// What an event without a type renders `{event_type}` as.
pub const UNTYPED: &str = "untyped";

impl Template {
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("must not be empty".into());
        }
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| format!("{text:?} has a `{{` without its `}}`"))?;
            let field = match &after[..close] {
                "source" => Field::Source,
                "event_type" => Field::EventType,
                other => {
                    return Err(format!(
                        "{{{other}}} is not a placeholder: use {{source}} or {{event_type}}"
                    ));
                }
            };
            parts.push(Part::Field(field));
            rest = &after[close + 1..];
        }
        if rest.contains('}') {
            return Err(format!("{text:?} has a `}}` without its `{{`"));
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Self {
            parts,
            text: text.to_owned(),
        })
    }

    /// The name for one event. What the event supplies is reduced to the characters
    /// every broker takes in a name (`A-Z a-z 0-9 . _ - :`; anything else becomes
    /// `_`), so that a sender cannot make a NATS wildcard or an invalid Kafka topic.
    pub fn render(&self, source: &str, event_type: Option<&str>) -> String {
        let mut out = String::with_capacity(self.text.len() + 16);
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Field(Field::Source) => push_safe(&mut out, source),
                Part::Field(Field::EventType) => push_safe(
                    &mut out,
                    event_type.filter(|t| !t.is_empty()).unwrap_or(UNTYPED),
                ),
            }
        }
        out
    }
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.text)
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn push_safe(out: &mut String, value: &str) {
    out.extend(value.chars().take(200).map(|c| {
        if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':') {
            c
        } else {
            '_'
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_take_the_events_values() {
        let template = Template::parse("webhooks.{source}.{event_type}").unwrap();
        assert_eq!(
            template.render("stripe", Some("invoice.paid")),
            "webhooks.stripe.invoice.paid"
        );
        assert_eq!(template.render("github", None), "webhooks.github.untyped");
        assert_eq!(
            Template::parse("orders").unwrap().render("s", None),
            "orders"
        );
    }

    #[test]
    fn event_values_cannot_make_wildcards_or_bad_names() {
        let template = Template::parse("{event_type}").unwrap();
        assert_eq!(template.render("s", Some("a b>*/é")), "a_b____");
        let long = "x".repeat(500);
        assert_eq!(template.render("s", Some(&long)).len(), 200);
    }

    #[test]
    fn typos_are_refused() {
        for bad in ["", "a.{sorce}", "a.{source", "a}", "{}"] {
            assert!(Template::parse(bad).is_err(), "{bad:?}");
        }
    }
}
