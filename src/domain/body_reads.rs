//! The parts of a JSON body that ingest reads (route filters, the event type, the
//! idempotency key, an ordering key, Slack's handshake), declared once at start. Ingest
//! builds a tree of those parts only; the rest of the body is validated and skipped, so
//! a filter on two fields of a large payload does not pay for a tree of all of it.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::json_text::{self, Checked};

/// What is read at one place of the body.
#[derive(Debug, Clone, PartialEq)]
pub enum BodyReads {
    /// The whole value here, as it is.
    Whole,
    /// Only these fields of an object here (of each element, for an array); scalars
    /// are kept as they are, so a reader still sees each value's type.
    Fields(Vec<(String, BodyReads)>),
}

impl BodyReads {
    /// Nothing inside objects; only the shape at the top.
    pub fn nothing() -> Self {
        Self::Fields(Vec::new())
    }

    /// The value at a JSON Pointer (RFC 6901). A token that may be an array index reads
    /// the whole value there: the projection keeps arrays' elements alike.
    pub fn at_pointer(pointer: &str) -> Self {
        let Some(path) = pointer.strip_prefix('/') else {
            return Self::Whole;
        };
        let tokens: Vec<String> = path
            .split('/')
            .map(|token| token.replace("~1", "/").replace("~0", "~"))
            .collect();
        let index = tokens
            .iter()
            .position(|t| t == "-" || (!t.is_empty() && t.bytes().all(|b| b.is_ascii_digit())));
        let names = &tokens[..index.unwrap_or(tokens.len())];
        names.iter().rev().fold(Self::Whole, |inner, name| {
            Self::Fields(vec![(name.clone(), inner)])
        })
    }

    /// One field, read as `inner` says.
    pub fn field(name: &str, inner: Self) -> Self {
        Self::Fields(vec![(name.to_owned(), inner)])
    }

    /// What this and `other` read together.
    pub fn merge(&mut self, other: Self) {
        match (&mut *self, other) {
            (Self::Whole, _) => {}
            (this, Self::Whole) => *this = Self::Whole,
            (Self::Fields(mine), Self::Fields(theirs)) => {
                for (name, inner) in theirs {
                    match mine.iter_mut().find(|(n, _)| *n == name) {
                        Some((_, existing)) => existing.merge(inner),
                        None => mine.push((name, inner)),
                    }
                }
            }
        }
    }

    /// Parses `text` as one JSON value (trailing characters refused, as
    /// `serde_json::from_str` does), keeping only what is read.
    /// The parts not read are checked by the same rule ([`json_text`]).
    pub fn parse(&self, text: &str) -> serde_json::Result<Value> {
        json_text::with_lone_surrogates_replaced(text, |text| {
            let mut deserializer = serde_json::Deserializer::from_str(text);
            let value = Projection(self).deserialize(&mut deserializer)?;
            deserializer.end()?;
            Ok(value)
        })
    }
}

/// Deserializes one value as `BodyReads` says.
struct Projection<'r>(&'r BodyReads);

impl<'de> DeserializeSeed<'de> for Projection<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        match self.0 {
            BodyReads::Whole => serde::Deserialize::deserialize(deserializer),
            BodyReads::Fields(fields) => deserializer.deserialize_any(Partial {
                reads: self.0,
                fields,
            }),
        }
    }
}

/// A value of which only `fields` of objects are kept (`reads` is
/// `BodyReads::Fields(fields)`, which each element of an array is read as).
struct Partial<'r> {
    reads: &'r BodyReads,
    fields: &'r [(String, BodyReads)],
}

impl<'de> Visitor<'de> for Partial<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Value, E> {
        Ok(Number::from_f64(value).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Projection(self.reads))? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(wanted) = map.next_key_seed(Wanted(self.fields))? {
            match wanted {
                Some((name, reads)) => {
                    let value = map.next_value_seed(Projection(reads))?;
                    object.insert(name.clone(), value);
                }
                None => {
                    map.next_value::<Checked>()?;
                }
            }
        }
        Ok(Value::Object(object))
    }
}

/// An object's key: the field it names when that field is read, without copying it.
struct Wanted<'r>(&'r [(String, BodyReads)]);

impl<'de, 'r> DeserializeSeed<'de> for Wanted<'r> {
    type Value = Option<&'r (String, BodyReads)>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de, 'r> Visitor<'de> for Wanted<'r> {
    type Value = Option<&'r (String, BodyReads)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        Ok(self.0.iter().find(|(name, _)| name == key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reads(pairs: &[&str]) -> BodyReads {
        let mut all = BodyReads::nothing();
        for pointer in pairs {
            all.merge(BodyReads::at_pointer(pointer));
        }
        all
    }

    #[test]
    fn only_the_read_fields_are_kept_with_their_whole_values() {
        let body = r#"{"type":"invoice.paid","id":"evt_1","data":{"object":{"amount":1200,"currency":"eur","lines":[1,2]},"previous":{}}}"#;
        let kept = reads(&["/type", "/data/object/amount", "/data/object/lines"])
            .parse(body)
            .unwrap();
        assert_eq!(
            kept,
            json!({"type": "invoice.paid", "data": {"object": {"amount": 1200, "lines": [1, 2]}}})
        );
    }

    #[test]
    fn arrays_are_projected_element_by_element_and_scalars_keep_their_type() {
        let body =
            r#"{"items":[{"sku":"a","n":1},{"sku":"b"},3,null,[{"sku":"c","x":1}]],"top":[1]}"#;
        let kept = BodyReads::field("items", BodyReads::field("sku", BodyReads::Whole))
            .parse(body)
            .unwrap();
        assert_eq!(
            kept,
            json!({"items": [{"sku": "a"}, {"sku": "b"}, 3, null, [{"sku": "c"}]]})
        );
        // Nothing read: the top's shape only.
        assert_eq!(BodyReads::nothing().parse(body).unwrap(), json!({}));
        assert_eq!(
            BodyReads::nothing().parse("[1, {\"a\": 2}]").unwrap(),
            json!([1, {}])
        );
        assert_eq!(BodyReads::nothing().parse("1.5").unwrap(), json!(1.5));
    }

    #[test]
    fn pointers_unescape_and_read_whole_values_from_an_index_on() {
        assert_eq!(
            BodyReads::at_pointer("/a~1b/c~0d"),
            BodyReads::field("a/b", BodyReads::field("c~d", BodyReads::Whole))
        );
        assert_eq!(
            BodyReads::at_pointer("/items/0/id"),
            BodyReads::field("items", BodyReads::Whole)
        );
        assert_eq!(BodyReads::at_pointer(""), BodyReads::Whole);
        let kept = BodyReads::at_pointer("/items/0/id")
            .parse(r#"{"items":[{"id":"x","y":1}],"z":2}"#)
            .unwrap();
        assert_eq!(kept.pointer("/items/0/id"), Some(&json!("x")));
    }

    #[test]
    fn merging_keeps_the_wider_read() {
        let mut all = BodyReads::at_pointer("/a/b");
        all.merge(BodyReads::at_pointer("/a/c"));
        all.merge(BodyReads::at_pointer("/d"));
        assert_eq!(
            all,
            BodyReads::Fields(vec![
                (
                    "a".into(),
                    BodyReads::Fields(vec![
                        ("b".into(), BodyReads::Whole),
                        ("c".into(), BodyReads::Whole)
                    ])
                ),
                ("d".into(), BodyReads::Whole)
            ])
        );
        all.merge(BodyReads::field("a", BodyReads::Whole));
        assert_eq!(
            all.clone().parse(r#"{"a":{"x":1},"e":2}"#).unwrap(),
            json!({"a": {"x": 1}})
        );
        all.merge(BodyReads::Whole);
        assert_eq!(all, BodyReads::Whole);
    }

    #[test]
    fn bad_json_is_refused_as_the_full_parser_refuses_it() {
        let reads = reads(&["/type"]);
        for bad in [
            "{\"type\": 1,}",
            "{\"a\": [1, 2}",
            "{\"type\": \"x\"} trailing",
            "{\"skipped\": tru}",
            "{\"a\": \"\\q\"}",
            "",
            "{\"skipped\": 1e400}",
        ]
        .map(str::to_owned)
        .into_iter()
        .chain([format!(
            "{{\"skipped\": {}{}}}",
            "[".repeat(200),
            "]".repeat(200)
        )]) {
            let bad = bad.as_str();
            let full = serde_json::from_str::<Value>(bad).unwrap_err().to_string();
            let projected = reads.parse(bad).unwrap_err().to_string();
            assert_eq!(projected, full, "{bad:?}");
        }
    }

    #[test]
    fn duplicate_keys_keep_the_last_value_as_the_full_parser_does() {
        let body = r#"{"type":"a","type":"b"}"#;
        assert_eq!(
            reads(&["/type"]).parse(body).unwrap(),
            serde_json::from_str::<Value>(body).unwrap()
        );
    }
}
