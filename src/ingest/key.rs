//! Where the idempotency key comes from: the `Idempotency-Key` header, else the places
//! the source's settings name (a provider header, or a field of the JSON body).

use axum::http::HeaderMap;
use serde_json::Value;

use crate::domain::event::{IdempotencyKey, InvalidKey};
use crate::domain::json_text::raw_at_pointer;
use crate::domain::scheme::KeyLocation;

pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

#[derive(Debug, PartialEq, Eq)]
pub enum KeyError {
    Missing,
    Invalid(String),
}

/// `json` is the parsed body when it is JSON; `raw_body` the bytes it was parsed
/// from, for a number's exact text.
pub fn extract(
    headers: &HeaderMap,
    locations: &[KeyLocation],
    json: Option<&Value>,
    raw_body: &[u8],
) -> Result<IdempotencyKey, KeyError> {
    if let Some(value) = headers.get(IDEMPOTENCY_KEY) {
        return parse(value.to_str().map_err(|_| not_ascii("Idempotency-Key"))?);
    }
    for location in locations {
        let found = match location {
            KeyLocation::Header(name) => match headers.get(name) {
                Some(value) => Some(
                    value
                        .to_str()
                        .map_err(|_| not_ascii(name.as_str()))?
                        .to_owned(),
                ),
                None => None,
            },
            KeyLocation::Json(pointer) => {
                json.and_then(|value| value.pointer(pointer))
                    .and_then(|value| match value {
                        Value::String(s) => Some(s.clone()),
                        // As written: `1.00` and `1.0`, or two integers beyond 64 bits,
                        // are different keys.
                        Value::Number(n) => Some(
                            std::str::from_utf8(raw_body)
                                .ok()
                                .and_then(|text| raw_at_pointer(text, pointer))
                                .map_or_else(|| n.to_string(), str::to_owned),
                        ),
                        _ => None,
                    })
            }
        };
        // An empty value is as good as absent: the next place is tried. Anything else
        // must pass the one key rule, whatever its origin.
        if let Some(text) = found.filter(|t| !t.is_empty()) {
            return parse(&text);
        }
    }
    Err(KeyError::Missing)
}

fn parse(text: &str) -> Result<IdempotencyKey, KeyError> {
    IdempotencyKey::parse(text).map_err(|e| match e {
        InvalidKey::Empty => KeyError::Missing,
        InvalidKey::TooLong(_) | InvalidKey::NotVisibleAscii => KeyError::Invalid(e.to_string()),
    })
}

fn not_ascii(header: &str) -> KeyError {
    KeyError::Invalid(format!("{header} must be visible ASCII"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::test_headers as headers;
    use axum::http::HeaderName;

    #[test]
    fn the_header_wins_then_locations_in_order() {
        let locations = [
            KeyLocation::Json("/id".into()),
            KeyLocation::Header(HeaderName::from_static("x-github-delivery")),
        ];
        let body = serde_json::json!({"id": "evt_body"});
        let explicit = headers(&[("idempotency-key", "chosen"), ("x-github-delivery", "d")]);
        assert_eq!(
            extract(&explicit, &locations, Some(&body), b"")
                .unwrap()
                .as_str(),
            "chosen"
        );
        let provider = headers(&[("x-github-delivery", "d")]);
        assert_eq!(
            extract(&provider, &locations, Some(&body), b"")
                .unwrap()
                .as_str(),
            "evt_body"
        );
        assert_eq!(
            extract(&provider, &locations, None, b"").unwrap().as_str(),
            "d"
        );
        assert_eq!(
            extract(&HeaderMap::new(), &locations, None, b""),
            Err(KeyError::Missing)
        );
    }

    #[test]
    fn numbers_are_keys_as_the_sender_wrote_them() {
        let locations = [KeyLocation::Json("/id".into())];
        let key = |raw: &str| {
            let tree: Value = serde_json::from_str(raw).unwrap();
            extract(&HeaderMap::new(), &locations, Some(&tree), raw.as_bytes())
                .unwrap()
                .as_str()
                .to_owned()
        };
        assert_ne!(
            key(r#"{"id": 100000000000000000000001}"#),
            key(r#"{"id": 100000000000000000000002}"#)
        );
        assert_ne!(
            key(r#"{"id": 18446744073709551616}"#),
            key(r#"{"id": 18446744073709551617}"#)
        );
        assert_eq!(key(r#"{"id": 1.00}"#), "1.00");
        assert_ne!(key(r#"{"id": 1.0}"#), key(r#"{"id": 1.00}"#));
        assert_eq!(key(r#"{"id": 1e2}"#), "1e2");
        assert_eq!(key(r#"{"id": 42}"#), "42");
    }

    #[test]
    fn numbers_count_and_long_keys_fail() {
        let locations = [KeyLocation::Json("/order/id".into())];
        let numeric = serde_json::json!({"order": {"id": 42}});
        assert_eq!(
            extract(&HeaderMap::new(), &locations, Some(&numeric), b"")
                .unwrap()
                .as_str(),
            "42"
        );
        for body in [
            serde_json::json!({"order": {"id": "a\u{1}b"}}),
            serde_json::json!({"order": {"id": "caf\u{e9}"}}),
            serde_json::json!({"order": {"id": "a b"}}),
        ] {
            assert!(
                matches!(
                    extract(&HeaderMap::new(), &locations, Some(&body), b""),
                    Err(KeyError::Invalid(_))
                ),
                "{body}"
            );
        }
        let tab = headers(&[("idempotency-key", "a\tb")]);
        assert!(matches!(
            extract(&tab, &locations, None, b""),
            Err(KeyError::Invalid(_))
        ));
        let long = headers(&[("idempotency-key", &"k".repeat(256))]);
        assert!(matches!(
            extract(&long, &locations, None, b""),
            Err(KeyError::Invalid(_))
        ));
    }
}
