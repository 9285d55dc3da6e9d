//! Which content types a source accepts. By default: JSON only.

use axum::http::{HeaderMap, header};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaType {
    /// `application/json` or any `application/*+json`: validated as JSON.
    Json,
    /// Another type the source allows (form posts, XML): stored as received.
    Other,
}

const JSON: &str = "application/json";

/// Classifies the request's content type against the source's allowed types
/// (lower-case essences; `application/json` stands for every JSON type).
pub fn classify(headers: &HeaderMap, allowed: &[String]) -> Option<MediaType> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = value.split(';').next()?.trim().to_ascii_lowercase();
    let is_json =
        essence == JSON || (essence.starts_with("application/") && essence.ends_with("+json"));
    if is_json && allowed.iter().any(|t| t == JSON || *t == essence) {
        return Some(MediaType::Json);
    }
    allowed.contains(&essence).then_some(MediaType::Other)
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
        let json = [JSON.to_string()];
        assert_eq!(
            classify(&with("application/json"), &json),
            Some(MediaType::Json)
        );
        assert_eq!(
            classify(&with("Application/JSON; charset=utf-8"), &json),
            Some(MediaType::Json)
        );
        assert_eq!(
            classify(&with("application/cloudevents+json"), &json),
            Some(MediaType::Json)
        );
        assert_eq!(classify(&with("text/plain"), &json), None);
        assert_eq!(classify(&with("application/jsonx"), &json), None);
        assert_eq!(classify(&HeaderMap::new(), &json), None);
    }

    #[test]
    fn sources_may_allow_other_types() {
        let form = ["application/x-www-form-urlencoded".to_string()];
        assert_eq!(
            classify(&with("application/x-www-form-urlencoded"), &form),
            Some(MediaType::Other)
        );
        assert_eq!(classify(&with("application/json"), &form), None);
    }
}
