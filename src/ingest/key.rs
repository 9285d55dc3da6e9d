//! Where the idempotency key comes from: the `Idempotency-Key` header.

use axum::http::HeaderMap;

use crate::domain::event::{IdempotencyKey, InvalidKey};

pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

#[derive(Debug, PartialEq, Eq)]
pub enum KeyError {
    Missing,
    Invalid(String),
}

pub fn from_headers(headers: &HeaderMap) -> Result<IdempotencyKey, KeyError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Err(KeyError::Missing);
    };
    let text = value
        .to_str()
        .map_err(|_| KeyError::Invalid("Idempotency-Key must be visible ASCII".into()))?;
    IdempotencyKey::parse(text).map_err(|e| match e {
        InvalidKey::Empty => KeyError::Missing,
        InvalidKey::TooLong(_) => KeyError::Invalid(e.to_string()),
    })
}
