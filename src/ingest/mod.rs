//! What happens to a webhook before it is stored: media type, body and key checks.

pub mod event_type;
pub mod key;
pub mod media;
pub mod signature;

use axum::http::HeaderMap;

/// The request headers as a JSON array of `[name, value]` pairs, in order, repeats kept.
pub fn headers_to_json(headers: &HeaderMap) -> String {
    let pairs: Vec<(&str, String)> = headers
        .iter()
        .map(|(name, value)| {
            let text = match value.to_str() {
                Ok(text) => text.to_owned(),
                Err(_) => String::from_utf8_lossy(value.as_bytes()).into_owned(),
            };
            (name.as_str(), text)
        })
        .collect();
    serde_json::to_string(&pairs).unwrap_or_else(|_| "[]".to_owned())
}

/// Builds a header map from name/value pairs, for tests.
#[cfg(test)]
pub(crate) fn test_headers(pairs: &[(&str, &str)]) -> HeaderMap {
    use axum::http::{HeaderName, HeaderValue};
    pairs
        .iter()
        .map(|(k, v)| {
            (
                HeaderName::from_bytes(k.as_bytes()).expect("header name"),
                HeaderValue::from_str(v).expect("header value"),
            )
        })
        .collect()
}
