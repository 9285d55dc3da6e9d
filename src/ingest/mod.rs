//! What happens to a webhook before it is stored: media type, signature, key and
//! event-type checks. (The stored header format is `domain::stored_headers`.)

pub mod event_type;
pub mod key;
pub mod media;
pub mod signature;

/// Builds a header map from name/value pairs, for tests.
#[cfg(test)]
pub(crate) fn test_headers(pairs: &[(&str, &str)]) -> axum::http::HeaderMap {
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
