//! Which content types a source accepts. By default: JSON only.

use axum::http::{HeaderMap, header};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaType {
    Json,
}

/// `application/json` or any `application/*+json`, with or without parameters
/// such as `charset`.
pub fn classify(headers: &HeaderMap) -> Option<MediaType> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = value.split(';').next()?.trim().to_ascii_lowercase();
    let is_json = essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"));
    is_json.then_some(MediaType::Json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with(content_type: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_str(content_type).unwrap(),
        );
        headers
    }

    #[test]
    fn json_types_are_recognised() {
        assert_eq!(classify(&with("application/json")), Some(MediaType::Json));
        assert_eq!(
            classify(&with("Application/JSON; charset=utf-8")),
            Some(MediaType::Json)
        );
        assert_eq!(
            classify(&with("application/cloudevents+json")),
            Some(MediaType::Json)
        );
        assert_eq!(classify(&with("text/plain")), None);
        assert_eq!(classify(&with("application/jsonx")), None);
        assert_eq!(classify(&HeaderMap::new()), None);
    }
}
