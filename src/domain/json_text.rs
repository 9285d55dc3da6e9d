//! The one rule for a JSON body, whatever reads it: RFC 8259 text in UTF-8, nested at
//! most 128 levels (serde_json's limit, applied to every body, read or not), numbers
//! within a 64-bit float's range. A lone UTF-16 surrogate escape (`"\ud800"`, which
//! JavaScript and Python write when text is cut mid-emoji) is valid JSON text and is
//! accepted; where a value is read, it reads as U+FFFD.
//!
//! Numbers keep their exact text where it matters (keys): [`raw_at_pointer`].

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// Checks that `text` is one JSON value by the rule above, building nothing.
pub fn check(text: &str) -> serde_json::Result<()> {
    with_lone_surrogates_replaced(text, |text| {
        serde_json::from_str::<Checked>(text).map(|_| ())
    })
}

/// The whole body as a tree, by the rule above.
#[cfg(test)]
pub fn parse_tree(text: &str) -> serde_json::Result<serde_json::Value> {
    with_lone_surrogates_replaced(text, |text| serde_json::from_str(text))
}

/// Runs `parse` on `text`; when it fails and `text` holds lone surrogate escapes,
/// runs it again with each of them written as `\ufffd`. Costs nothing for bodies
/// that parse.
pub fn with_lone_surrogates_replaced<T>(
    text: &str,
    parse: impl Fn(&str) -> serde_json::Result<T>,
) -> serde_json::Result<T> {
    match parse(text) {
        Ok(value) => Ok(value),
        Err(error) => match replace_lone_surrogates(text) {
            Cow::Owned(repaired) => parse(&repaired),
            Cow::Borrowed(_) => Err(error),
        },
    }
}

/// `text` with every `\uXXXX` escape of an unpaired surrogate written as `\ufffd`.
pub fn replace_lone_surrogates(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let unit_at = |i: usize| -> Option<u16> {
        let escape = bytes.get(i..i + 6)?;
        if escape[0] != b'\\' || escape[1] != b'u' {
            return None;
        }
        u16::from_str_radix(std::str::from_utf8(&escape[2..]).ok()?, 16).ok()
    };
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            i += 1;
            continue;
        }
        let Some(unit) = unit_at(i) else {
            // Any other escape: skip it whole, so `\\u` is not read as an escape.
            i += 2;
            continue;
        };
        let paired = match unit {
            0xD800..=0xDBFF => unit_at(i + 6).is_some_and(|low| (0xDC00..=0xDFFF).contains(&low)),
            0xDC00..=0xDFFF => false,
            _ => {
                i += 6;
                continue;
            }
        };
        if paired {
            i += 12;
            continue;
        }
        let repaired = out.get_or_insert_with(|| String::with_capacity(text.len()));
        repaired.push_str(&text[copied..i]);
        repaired.push_str("\\ufffd");
        i += 6;
        copied = i;
    }
    match out {
        Some(mut repaired) => {
            repaired.push_str(&text[copied..]);
            Cow::Owned(repaired)
        }
        None => Cow::Borrowed(text),
    }
}

/// The exact text of the value at a JSON Pointer (RFC 6901) of `text`, e.g. a number
/// as the sender wrote it (`1.00`, `100000000000000000000001`). The last of duplicate
/// keys wins, as in a parsed tree.
pub fn raw_at_pointer<'t>(text: &'t str, pointer: &str) -> Option<&'t str> {
    let mut current: &'t RawValue = serde_json::from_str(text).ok()?;
    let Some(path) = pointer.strip_prefix('/') else {
        return pointer.is_empty().then(|| current.get());
    };
    for token in path.split('/') {
        let token = token.replace("~1", "/").replace("~0", "~");
        let raw = current.get();
        current = if raw.starts_with('[') {
            let items: Vec<&'t RawValue> = serde_json::from_str(raw).ok()?;
            items.get(token.parse::<usize>().ok()?).copied()?
        } else {
            let mut members: HashMap<Cow<'t, str>, &'t RawValue> =
                serde_json::from_str(raw).ok()?;
            members.remove(token.as_str())?
        };
    }
    Some(current.get())
}

/// Any JSON value, checked as a parsed tree would be (nesting, numbers, strings),
/// then dropped.
pub struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(CheckedVisitor)
    }
}

struct CheckedVisitor;

impl<'de> Visitor<'de> for CheckedVisitor {
    type Value = Checked;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(Checked)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
        while map.next_key::<Checked>()?.is_some() {
            map.next_value::<Checked>()?;
        }
        Ok(Checked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn lone_surrogates_are_accepted_and_read_as_the_replacement_character() {
        for body in [
            r#"{"a":"cut \ud83d"}"#,
            r#"{"a":"\udc00 first"}"#,
            r#"["\ud800\ud800"]"#,
        ] {
            check(body).unwrap();
            let tree = parse_tree(body).unwrap();
            assert!(tree.to_string().contains('\u{FFFD}'), "{body}: {tree}");
        }
        // A pair is a character; an escaped backslash before `u` is no escape.
        let pair = r#"{"a":"\ud83d\ude00","b":"\\ud800"}"#;
        assert_eq!(replace_lone_surrogates(pair), Cow::Borrowed(pair));
        let tree: Value = serde_json::from_str(pair).unwrap();
        assert_eq!(tree["a"], "😀");
        assert_eq!(tree["b"], "\\ud800");
    }

    #[test]
    fn nesting_and_number_range_are_checked_even_where_nothing_is_read() {
        let deep = |levels: usize| format!("{}{}", "[".repeat(levels), "]".repeat(levels));
        check(&deep(127)).unwrap();
        assert!(check(&deep(129)).is_err());
        assert!(check(&format!("{{\"a\":{}}}", deep(200))).is_err());
        assert!(check(r#"{"skipped": 1e400}"#).is_err());
        assert!(check(r#"{"ok": 1e300, "big": 100000000000000000000001}"#).is_ok());
        assert!(check(r#"{"a": 1,}"#).is_err());
    }

    #[test]
    fn numbers_read_as_the_sender_wrote_them() {
        let body = r#"{"id": 100000000000000000000001, "n": [1.00, 1e2], "a/b": {"c": -0},
                       "id": 100000000000000000000002}"#;
        assert_eq!(
            raw_at_pointer(body, "/id"),
            Some("100000000000000000000002")
        );
        assert_eq!(raw_at_pointer(body, "/n/0"), Some("1.00"));
        assert_eq!(raw_at_pointer(body, "/n/1"), Some("1e2"));
        assert_eq!(raw_at_pointer(body, "/a~1b/c"), Some("-0"));
        assert_eq!(raw_at_pointer(body, "/n/2"), None);
        assert_eq!(raw_at_pointer(body, "/missing"), None);
    }
}
