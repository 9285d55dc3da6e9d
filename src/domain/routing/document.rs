//! The document a filter reads: `{"event_type", "headers", "body"}`.

use serde_json::Value;

use super::filter::Filter;

/// What a filter reads, `{"event_type", "headers", "body"}`, without copying the body:
/// a filter over those fields reads each one where it is; headers are turned into a
/// JSON object only when a filter asks for them.
pub struct Document<'a> {
    pub event_type: Option<&'a str>,
    pub body: Option<&'a Value>,
    headers: &'a dyn Fn() -> Value,
    built_headers: std::cell::OnceCell<Value>,
}

impl<'a> Document<'a> {
    pub fn new(
        event_type: Option<&'a str>,
        body: Option<&'a Value>,
        headers: &'a dyn Fn() -> Value,
    ) -> Self {
        Self {
            event_type,
            body,
            headers,
            built_headers: std::cell::OnceCell::new(),
        }
    }

    fn headers(&self) -> &Value {
        self.built_headers.get_or_init(|| (self.headers)())
    }

    /// The whole document as one value (for a filter with operators at its top).
    pub fn to_value(&self) -> Value {
        serde_json::json!({
            "event_type": self.event_type,
            "headers": self.headers(),
            "body": self.body,
        })
    }
}

impl Filter {
    /// Whether the event's document matches.
    pub fn matches_document(&self, document: &Document<'_>) -> bool {
        let Self::Fields(fields) = self else {
            return self.matches(Some(&document.to_value()));
        };
        fields.iter().all(|(name, filter)| match name.as_str() {
            "event_type" => {
                let event_type = document.event_type.map(|t| Value::String(t.to_owned()));
                filter.matches(event_type.as_ref())
            }
            "headers" => filter.matches(Some(document.headers())),
            "body" => filter.matches(document.body),
            _ => filter.matches(None),
        })
    }
}
