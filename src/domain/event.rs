//! Identifiers that are validated once, when they are constructed.

use std::fmt;

use thiserror::Error;

/// `evt_<uuid>`: the id hookrelay gives every accepted event.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventId(String);

impl EventId {
    /// UUIDv7: time-ordered, so new ids append to the id index instead of landing on
    /// random pages (fewer pages written per commit, and ids sort by arrival).
    pub fn generate() -> Self {
        Self(format!("evt_{}", uuid::Uuid::now_v7()))
    }

    /// Accepts any string as a lookup key; an id that was never issued simply is not found.
    pub fn from_stored(id: String) -> Self {
        Self(id)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The `{source}` path segment: 1–64 characters of `A–Z a–z 0–9 _ - .`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SourceName(String);

#[derive(Debug, Error, PartialEq, Eq)]
#[error("source must be 1-64 characters of A-Z a-z 0-9 _ - .")]
pub struct InvalidSource;

impl SourceName {
    pub const MAX_LEN: usize = 64;

    pub fn parse(raw: &str) -> Result<Self, InvalidSource> {
        let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
        if raw.is_empty() || raw.len() > Self::MAX_LEN || !raw.chars().all(valid_char) {
            return Err(InvalidSource);
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SourceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The sender's idempotency key: 1–255 visible ASCII characters (`!` to `~`, no
/// spaces or control characters), unique per source. The same rule holds wherever
/// the key came from: the `Idempotency-Key` header, a provider's header or the body.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

#[derive(Debug, Error, PartialEq, Eq)]
pub enum InvalidKey {
    #[error("idempotency key is empty")]
    Empty,
    #[error("idempotency key is {0} bytes; the limit is 255")]
    TooLong(usize),
    #[error("idempotency key must be visible ASCII (no spaces, control or non-ASCII characters)")]
    NotVisibleAscii,
}

impl IdempotencyKey {
    pub const MAX_BYTES: usize = 255;

    pub fn parse(raw: &str) -> Result<Self, InvalidKey> {
        if raw.is_empty() {
            return Err(InvalidKey::Empty);
        }
        if raw.len() > Self::MAX_BYTES {
            return Err(InvalidKey::TooLong(raw.len()));
        }
        if !raw.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(InvalidKey::NotVisibleAscii);
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The longest event type accepted. Providers' types are short names
/// (`invoice.paid`, `issues.opened`); a longer one is refused, so that no matcher or
/// index ever works on a sender-sized string.
pub const MAX_EVENT_TYPE_BYTES: usize = 255;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum InvalidEventType {
    #[error("event type is {0} bytes; the limit is 255")]
    TooLong(usize),
    #[error("event type must not contain control characters")]
    ControlCharacter,
}

/// The one rule for an event type, whichever backend stores it.
pub fn check_event_type(text: &str) -> Result<(), InvalidEventType> {
    if text.len() > MAX_EVENT_TYPE_BYTES {
        return Err(InvalidEventType::TooLong(text.len()));
    }
    if text.chars().any(char::is_control) {
        return Err(InvalidEventType::ControlCharacter);
    }
    Ok(())
}

/// Ordering keys longer than this are stored as their digest.
pub const MAX_ORDERING_KEY_BYTES: usize = 128;

/// An ordering key as stored: the text itself when it is short and has no control
/// characters, else `sha256:` and the hex digest of the text. Equal texts still give
/// equal keys, so order per key holds, and every backend can index the key.
pub fn stored_ordering_key(text: String) -> String {
    use sha2::{Digest, Sha256};
    if text.len() <= MAX_ORDERING_KEY_BYTES && !text.chars().any(char::is_control) {
        return text;
    }
    format!("sha256:{}", hex::encode(Sha256::digest(text.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_names_follow_the_spec() {
        assert!(SourceName::parse("stripe").is_ok());
        assert!(SourceName::parse("my-app_v2.prod").is_ok());
        assert!(SourceName::parse(&"a".repeat(64)).is_ok());
        assert_eq!(SourceName::parse(""), Err(InvalidSource));
        assert_eq!(SourceName::parse(&"a".repeat(65)), Err(InvalidSource));
        assert_eq!(SourceName::parse("bad/source"), Err(InvalidSource));
        assert_eq!(SourceName::parse("späti"), Err(InvalidSource));
    }

    #[test]
    fn keys_are_bounded() {
        assert!(IdempotencyKey::parse(&"k".repeat(255)).is_ok());
        assert_eq!(
            IdempotencyKey::parse(&"k".repeat(256)),
            Err(InvalidKey::TooLong(256))
        );
        assert_eq!(IdempotencyKey::parse(""), Err(InvalidKey::Empty));
    }

    #[test]
    fn keys_are_visible_ascii() {
        assert!(IdempotencyKey::parse("evt_1NG8Du2eZvKYlo2C!~").is_ok());
        for bad in ["a b", "a\tb", "a\u{1}b", "caf\u{e9}", " x", "x\n", "  "] {
            assert_eq!(
                IdempotencyKey::parse(bad),
                Err(InvalidKey::NotVisibleAscii),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn event_types_are_bounded_and_printable() {
        assert_eq!(check_event_type("invoice.paid"), Ok(()));
        assert_eq!(check_event_type(&"t".repeat(255)), Ok(()));
        assert_eq!(
            check_event_type(&"t".repeat(256)),
            Err(InvalidEventType::TooLong(256))
        );
        for bad in ["a\u{0}b", "a\nb", "\u{7f}"] {
            assert_eq!(
                check_event_type(bad),
                Err(InvalidEventType::ControlCharacter),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn long_or_control_ordering_keys_are_stored_as_their_digest() {
        assert_eq!(stored_ordering_key("cus_1".into()), "cus_1");
        let long = "k".repeat(10_000);
        let digest = stored_ordering_key(long.clone());
        assert!(
            digest.starts_with("sha256:") && digest.len() == 7 + 64,
            "{digest}"
        );
        assert_eq!(digest, stored_ordering_key(long));
        let nul = stored_ordering_key("a\u{0}b".into());
        assert!(nul.starts_with("sha256:"));
        assert_ne!(nul, stored_ordering_key("a\u{0}c".into()));
    }

    #[test]
    fn generated_ids_have_the_prefix() {
        let id = EventId::generate();
        assert!(id.as_str().starts_with("evt_"));
        assert_eq!(id.as_str().len(), 4 + 36);
    }
}
