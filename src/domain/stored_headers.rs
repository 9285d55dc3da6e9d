//! How a webhook's headers are stored: a JSON array of `[name, value]` pairs, read
//! back by the worker (to forward them) and by operators.

use http::{HeaderMap, HeaderName, HeaderValue};

/// The request headers as a JSON array of `[name, value]` pairs, in order, repeats kept.
/// A value that is not UTF-8 is kept byte for byte as `[name, base64, "base64"]`, so
/// that it is forwarded as it came.
pub fn headers_to_json(headers: &HeaderMap) -> String {
    let pairs: Vec<StoredHeader<'_>> = headers.iter().map(StoredHeader).collect();
    serde_json::to_string(&pairs).unwrap_or_else(|_| "[]".to_owned())
}

/// One header as [`headers_to_json`] writes it, without building the pair first.
struct StoredHeader<'a>((&'a HeaderName, &'a HeaderValue));

impl serde::Serialize for StoredHeader<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use base64::Engine as _;
        use serde::ser::SerializeSeq;
        let (name, value) = self.0;
        match std::str::from_utf8(value.as_bytes()) {
            Ok(text) => {
                let mut pair = serializer.serialize_seq(Some(2))?;
                pair.serialize_element(name.as_str())?;
                pair.serialize_element(text)?;
                pair.end()
            }
            Err(_) => {
                let mut pair = serializer.serialize_seq(Some(3))?;
                pair.serialize_element(name.as_str())?;
                pair.serialize_element(
                    &base64::engine::general_purpose::STANDARD.encode(value.as_bytes()),
                )?;
                pair.serialize_element("base64")?;
                pair.end()
            }
        }
    }
}

/// The stored headers as `(name, value bytes)` pairs, as [`headers_to_json`] wrote them.
pub fn headers_from_json(json: &str) -> Vec<(String, Vec<u8>)> {
    use base64::Engine as _;
    let pairs: Vec<Vec<String>> = serde_json::from_str(json).unwrap_or_default();
    pairs
        .into_iter()
        .filter_map(|mut pair| {
            let encoding = (pair.len() == 3).then(|| pair.pop()).flatten();
            let (name, value) = match <[String; 2]>::try_from(pair) {
                Ok([name, value]) => (name, value),
                Err(_) => return None,
            };
            let bytes = match encoding.as_deref() {
                None => value.into_bytes(),
                Some("base64") => base64::engine::general_purpose::STANDARD
                    .decode(value)
                    .ok()?,
                Some(_) => return None,
            };
            Some((name, bytes))
        })
        .collect()
}

#[cfg(test)]
mod stored_tests {
    use super::*;
    use axum::http::{HeaderName, HeaderValue};

    #[test]
    fn header_values_come_back_byte_for_byte() {
        let mut headers = HeaderMap::new();
        headers.append("x-plain", HeaderValue::from_static("a b"));
        headers.append(
            "x-utf8",
            HeaderValue::from_bytes("café".as_bytes()).unwrap(),
        );
        headers.append(
            HeaderName::from_static("x-latin1"),
            HeaderValue::from_bytes(b"caf\xe9").unwrap(),
        );
        headers.append("x-plain", HeaderValue::from_static("again"));
        let back = headers_from_json(&headers_to_json(&headers));
        assert_eq!(
            back,
            vec![
                ("x-plain".to_owned(), b"a b".to_vec()),
                ("x-plain".to_owned(), b"again".to_vec()),
                ("x-utf8".to_owned(), "café".as_bytes().to_vec()),
                ("x-latin1".to_owned(), b"caf\xe9".to_vec()),
            ]
        );
        // Rows written before the encoding existed read as they are.
        assert_eq!(
            headers_from_json(r#"[["a","b"]]"#),
            vec![("a".to_owned(), b"b".to_vec())]
        );
    }
}
