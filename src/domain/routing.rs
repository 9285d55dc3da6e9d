//! Which events a route takes: event-type globs and the filter language of
//! `[[sources.NAME.routes]]`, parsed once at start and matched against a JSON document
//! `{"event_type", "headers": {lower-case name: value}, "body"}`.
//!
//! A literal matches by equality (numbers by value: `1` matches `1.0`); an object
//! matches when each of its keys matches the field of that name, nested as deep as
//! the document; an object whose keys all start with `$` is a set of operators:
//! `$eq $neq $in $nin $gt $gte $lt $lte $exist $regex $and $or $not`. A missing field
//! matches only `$exist: false`, `$neq` and `$nin`. Values of different types never
//! match (a number compared with a string is no match, not an error). Against an
//! array, a scalar literal or operator matches when any element does.

use std::cmp::Ordering;

use regex::Regex;
use serde_json::{Number, Value};
use thiserror::Error;

use crate::domain::body_reads::BodyReads;

/// Why a filter was refused at start.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FilterError {
    #[error("unknown operator {0}")]
    UnknownOperator(String),
    #[error("{operator} needs {expected}")]
    Operand {
        operator: &'static str,
        expected: &'static str,
    },
    #[error("an object mixes operators ($…) with field names: {0}")]
    Mixed(String),
    #[error("$regex {pattern:?}: {reason}")]
    Regex { pattern: String, reason: String },
}

/// A parsed filter.
#[derive(Debug, Clone)]
pub enum Filter {
    /// Equality with this value.
    Literal(Value),
    /// Each named field matches its filter.
    Fields(Vec<(String, Filter)>),
    /// Every operator matches.
    Operators(Vec<Operator>),
}

#[derive(Debug, Clone)]
pub enum Operator {
    Eq(Value),
    Neq(Value),
    In(Vec<Value>),
    Nin(Vec<Value>),
    Compare(Ordering, bool, Value),
    Exist(bool),
    Regex(Regex),
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
}

impl Filter {
    pub fn parse(value: &Value) -> Result<Self, FilterError> {
        let Value::Object(object) = value else {
            return Ok(Self::Literal(value.clone()));
        };
        let operators = object.keys().filter(|k| k.starts_with('$')).count();
        if operators == 0 {
            return object
                .iter()
                .map(|(name, value)| Ok((name.clone(), Self::parse(value)?)))
                .collect::<Result<_, _>>()
                .map(Self::Fields);
        }
        if operators != object.len() {
            let keys: Vec<&str> = object.keys().map(String::as_str).collect();
            return Err(FilterError::Mixed(keys.join(", ")));
        }
        object
            .iter()
            .map(|(name, operand)| Operator::parse(name, operand))
            .collect::<Result<_, _>>()
            .map(Self::Operators)
    }

    /// Whether `value` (absent: `None`) matches.
    pub fn matches(&self, value: Option<&Value>) -> bool {
        match self {
            Self::Literal(expected) => value.is_some_and(|v| equal_or_contains(v, expected)),
            Self::Fields(fields) => match value {
                Some(Value::Object(object)) => fields
                    .iter()
                    .all(|(name, filter)| filter.matches(object.get(name))),
                Some(Value::Array(items)) => items.iter().any(|item| self.matches(Some(item))),
                _ => false,
            },
            Self::Operators(operators) => operators.iter().all(|op| op.matches(value)),
        }
    }
}

impl Filter {
    /// Why `value`, found at `path`, does not match: the first clause that fails, said
    /// for a person (`body.data.object.amount: $gte 10000, but it is 500`). `None` when
    /// it matches.
    pub fn mismatch(&self, value: Option<&Value>, path: &str) -> Option<String> {
        if self.matches(value) {
            return None;
        }
        let shown = |value: Option<&Value>| value.map_or("absent".to_owned(), |v| shortened(v, 80));
        Some(match self {
            Self::Literal(expected) => {
                format!("{path}: {expected} wanted, but it is {}", shown(value))
            }
            Self::Fields(fields) => match value {
                Some(Value::Object(object)) => {
                    return fields.iter().find_map(|(name, filter)| {
                        filter.mismatch(object.get(name), &format!("{path}.{name}"))
                    });
                }
                Some(Value::Array(_)) => format!("{path}: no element matches"),
                other => format!("{path}: an object wanted, but it is {}", shown(other)),
            },
            Self::Operators(operators) => {
                let failed = operators.iter().find(|op| !op.matches(value))?;
                format!("{path}: {}, but it is {}", failed.describe(), shown(value))
            }
        })
    }

    /// What of the value it is matched against this filter reads.
    fn reads(&self) -> BodyReads {
        match self {
            Self::Literal(_) => BodyReads::Whole,
            Self::Fields(fields) => {
                let mut reads = BodyReads::nothing();
                for (name, filter) in fields {
                    reads.merge(BodyReads::field(name, filter.reads()));
                }
                reads
            }
            Self::Operators(operators) => Operator::reads_of(operators, Self::reads),
        }
    }
}

impl Operator {
    /// What `operators` read together, where a nested filter reads as `nested` says;
    /// any operator that compares the value itself reads all of it.
    fn reads_of(operators: &[Self], nested: fn(&Filter) -> BodyReads) -> BodyReads {
        let mut reads = BodyReads::nothing();
        for operator in operators {
            match operator {
                Self::And(filters) | Self::Or(filters) => {
                    filters.iter().for_each(|f| reads.merge(nested(f)));
                }
                Self::Not(filter) => reads.merge(nested(filter)),
                _ => return BodyReads::Whole,
            }
        }
        reads
    }
}

impl Operator {
    fn parse(name: &str, operand: &Value) -> Result<Self, FilterError> {
        let list = |operator: &'static str| match operand {
            Value::Array(items) => Ok(items.clone()),
            _ => Err(FilterError::Operand {
                operator,
                expected: "a list",
            }),
        };
        let filters = |operator: &'static str| -> Result<Vec<Filter>, FilterError> {
            list(operator)?.iter().map(Filter::parse).collect()
        };
        let comparable = |operator: &'static str| match operand {
            Value::Number(_) | Value::String(_) => Ok(operand.clone()),
            _ => Err(FilterError::Operand {
                operator,
                expected: "a number or a string",
            }),
        };
        Ok(match name {
            "$eq" => Self::Eq(operand.clone()),
            "$neq" => Self::Neq(operand.clone()),
            "$in" => Self::In(list("$in")?),
            "$nin" => Self::Nin(list("$nin")?),
            "$gt" => Self::Compare(Ordering::Greater, false, comparable("$gt")?),
            "$gte" => Self::Compare(Ordering::Greater, true, comparable("$gte")?),
            "$lt" => Self::Compare(Ordering::Less, false, comparable("$lt")?),
            "$lte" => Self::Compare(Ordering::Less, true, comparable("$lte")?),
            "$exist" => match operand {
                Value::Bool(wanted) => Self::Exist(*wanted),
                _ => {
                    return Err(FilterError::Operand {
                        operator: "$exist",
                        expected: "true or false",
                    });
                }
            },
            "$regex" => {
                let Value::String(pattern) = operand else {
                    return Err(FilterError::Operand {
                        operator: "$regex",
                        expected: "a string",
                    });
                };
                Self::Regex(Regex::new(pattern).map_err(|e| FilterError::Regex {
                    pattern: pattern.clone(),
                    reason: e.to_string(),
                })?)
            }
            "$and" => Self::And(filters("$and")?),
            "$or" => Self::Or(filters("$or")?),
            "$not" => Self::Not(Box::new(Filter::parse(operand)?)),
            other => return Err(FilterError::UnknownOperator(other.to_owned())),
        })
    }

    /// The operator as written, shortened.
    fn describe(&self) -> String {
        let short = |value: &Value| shortened(value, 60);
        let list = |values: &[Value]| short(&Value::Array(values.to_vec()));
        match self {
            Self::Eq(value) => format!("$eq {}", short(value)),
            Self::Neq(value) => format!("$neq {}", short(value)),
            Self::In(values) => format!("$in {}", list(values)),
            Self::Nin(values) => format!("$nin {}", list(values)),
            Self::Compare(direction, or_equal, bound) => {
                let name = match (direction, or_equal) {
                    (Ordering::Greater, false) => "$gt",
                    (Ordering::Greater, true) => "$gte",
                    (_, false) => "$lt",
                    (_, true) => "$lte",
                };
                format!("{name} {}", short(bound))
            }
            Self::Exist(wanted) => format!("$exist {wanted}"),
            Self::Regex(regex) => format!("$regex {:?}", regex.as_str()),
            Self::And(_) => "one of the $and filters fails".to_owned(),
            Self::Or(_) => "none of the $or filters matches".to_owned(),
            Self::Not(_) => "the $not filter matches".to_owned(),
        }
    }

    fn matches(&self, value: Option<&Value>) -> bool {
        match self {
            Self::Eq(expected) => value.is_some_and(|v| equal_or_contains(v, expected)),
            Self::Neq(expected) => !value.is_some_and(|v| equal_or_contains(v, expected)),
            Self::In(set) => value.is_some_and(|v| set.iter().any(|e| equal_or_contains(v, e))),
            Self::Nin(set) => !value.is_some_and(|v| set.iter().any(|e| equal_or_contains(v, e))),
            Self::Compare(direction, or_equal, bound) => value.is_some_and(|v| {
                any_element(v, &|item| match compare(item, bound) {
                    Some(Ordering::Equal) => *or_equal,
                    Some(order) => order == *direction,
                    None => false,
                })
            }),
            Self::Exist(wanted) => value.is_some() == *wanted,
            Self::Regex(regex) => value.is_some_and(|v| {
                any_element(v, &|item| item.as_str().is_some_and(|s| regex.is_match(s)))
            }),
            Self::And(filters) => filters.iter().all(|f| f.matches(value)),
            Self::Or(filters) => filters.iter().any(|f| f.matches(value)),
            Self::Not(filter) => !filter.matches(value),
        }
    }
}

/// A value as JSON text, cut to about `limit` bytes for a person to read.
fn shortened(value: &Value, limit: usize) -> String {
    let text = value.to_string();
    match text.char_indices().nth(limit) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// `value` itself, or each element when it is an array.
fn any_element(value: &Value, test: &dyn Fn(&Value) -> bool) -> bool {
    match value {
        Value::Array(items) => items.iter().any(test),
        other => test(other),
    }
}

/// Equal, numbers by value; a scalar also matches an array holding it.
fn equal_or_contains(value: &Value, expected: &Value) -> bool {
    if equal(value, expected) {
        return true;
    }
    match (value, expected) {
        (Value::Array(items), scalar) if !scalar.is_array() => {
            items.iter().any(|item| equal(item, scalar))
        }
        _ => false,
    }
}

fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => compare_numbers(x, y) == Some(Ordering::Equal),
        _ => a == b,
    }
}

/// Integers (up to 64 bits) exactly, so `9007199254740993` is not `9007199254740992`;
/// any other pair as 64-bit floats (`1` equals `1.0`).
fn compare_numbers(x: &Number, y: &Number) -> Option<Ordering> {
    let integer = |n: &Number| n.as_i64().map(i128::from).or(n.as_u64().map(i128::from));
    match (integer(x), integer(y)) {
        (Some(x), Some(y)) => Some(x.cmp(&y)),
        _ => x.as_f64()?.partial_cmp(&y.as_f64()?),
    }
}

/// Numbers with numbers, strings with strings (RFC 3339 times order as text); other
/// pairs do not compare.
fn compare(value: &Value, bound: &Value) -> Option<Ordering> {
    match (value, bound) {
        (Value::Number(x), Value::Number(y)) => compare_numbers(x, y),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// An event-type pattern: `*` matches within one segment (segments end at `.` or
/// `/`), or anything at all when it ends the pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeGlob(String);

impl TypeGlob {
    pub fn new(pattern: &str) -> Self {
        Self(pattern.to_owned())
    }

    pub fn matches(&self, event_type: &str) -> bool {
        glob(self.0.as_bytes(), event_type.as_bytes())
    }
}

/// `*` matches any run of characters within a segment (no `.` or `/`), or anything
/// at all as the pattern's last character. Matched as a set of pattern positions
/// stepped once per character of the text: time is the text's length times the
/// pattern's, whatever the pattern (a backtracking matcher is exponential in the
/// number of `*` in a segment).
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let last = pattern.len();
    // `active[p]`: the text read so far can leave the pattern at position `p`.
    let mut active = vec![false; last + 1];
    let mut next = vec![false; last + 1];
    active[0] = true;
    close_over_stars(pattern, &mut active);
    for &c in text {
        next.fill(false);
        for p in 0..last {
            if !active[p] {
                continue;
            }
            match pattern[p] {
                b'*' if p + 1 == last || !matches!(c, b'.' | b'/') => next[p] = true,
                b'*' => {}
                literal if literal == c => next[p + 1] = true,
                _ => {}
            }
        }
        close_over_stars(pattern, &mut next);
        if !next.contains(&true) {
            return false;
        }
        std::mem::swap(&mut active, &mut next);
    }
    active[last]
}

/// A `*` may match nothing: whoever is at a star is also just past it.
fn close_over_stars(pattern: &[u8], active: &mut [bool]) {
    for p in 0..pattern.len() {
        if active[p] && pattern[p] == b'*' {
            active[p + 1] = true;
        }
    }
}

/// What a filter reads, `{"event_type", "headers", "body"}`, without copying the body:
/// a filter over those fields reads each one where it is; headers are turned into a
/// JSON object only when a filter asks for them.
pub struct Document<'a> {
    pub event_type: Option<&'a str>,
    pub body: Option<&'a Value>,
    headers: &'a dyn Fn() -> Value,
    built_headers: std::cell::OnceCell<Value>,
}

impl<'a> Document<'a> {
    pub fn new(
        event_type: Option<&'a str>,
        body: Option<&'a Value>,
        headers: &'a dyn Fn() -> Value,
    ) -> Self {
        Self {
            event_type,
            body,
            headers,
            built_headers: std::cell::OnceCell::new(),
        }
    }

    fn headers(&self) -> &Value {
        self.built_headers.get_or_init(|| (self.headers)())
    }

    /// The whole document as one value (for a filter with operators at its top).
    pub fn to_value(&self) -> Value {
        serde_json::json!({
            "event_type": self.event_type,
            "headers": self.headers(),
            "body": self.body,
        })
    }
}

impl Filter {
    /// Whether the event's document matches.
    pub fn matches_document(&self, document: &Document<'_>) -> bool {
        let Self::Fields(fields) = self else {
            return self.matches(Some(&document.to_value()));
        };
        fields.iter().all(|(name, filter)| match name.as_str() {
            "event_type" => {
                let event_type = document.event_type.map(|t| Value::String(t.to_owned()));
                filter.matches(event_type.as_ref())
            }
            "headers" => filter.matches(Some(document.headers())),
            "body" => filter.matches(document.body),
            _ => filter.matches(None),
        })
    }
}

impl Filter {
    /// What of the event's body this filter reads, matched against its document.
    pub fn body_reads(&self) -> BodyReads {
        match self {
            Self::Fields(fields) => {
                let mut reads = BodyReads::nothing();
                for (name, filter) in fields {
                    if name == "body" {
                        reads.merge(filter.reads());
                    }
                }
                reads
            }
            Self::Operators(operators) => Operator::reads_of(operators, Self::body_reads),
            Self::Literal(_) => BodyReads::Whole,
        }
    }
}

/// One `[[sources.NAME.routes]]`: a destination and what it takes.
#[derive(Debug, Clone)]
pub struct Route {
    pub destination: String,
    /// Empty: every type (and events without one).
    pub event_types: Vec<TypeGlob>,
    pub filter: Option<Filter>,
}

impl Route {
    /// A route that takes everything (a source's own `destination = "URL"`).
    pub fn catch_all(destination: &str) -> Self {
        Self {
            destination: destination.to_owned(),
            event_types: Vec::new(),
            filter: None,
        }
    }

    /// Whether the event document is needed to decide (a filter reads it).
    pub fn reads_document(&self) -> bool {
        self.filter.is_some()
    }
}

/// Why a route took an event or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Matched,
    /// The route names event types and the event has none.
    NoEventType,
    EventTypeDiffers,
    FilterDiffers,
}

impl Verdict {
    pub fn describe(self) -> &'static str {
        match self {
            Self::Matched => "matches",
            Self::NoEventType => "the event has no type and the route names event_types",
            Self::EventTypeDiffers => "the event type is not one of the route's event_types",
            Self::FilterDiffers => "the filter does not match",
        }
    }
}

/// The verdict of `route` on an event of `event_type` whose document is `document`
/// (`None`: nothing for a filter to read).
pub fn judge(route: &Route, event_type: Option<&str>, document: Option<&Document<'_>>) -> Verdict {
    if !route.event_types.is_empty() {
        let Some(event_type) = event_type else {
            return Verdict::NoEventType;
        };
        if !route
            .event_types
            .iter()
            .any(|glob| glob.matches(event_type))
        {
            return Verdict::EventTypeDiffers;
        }
    }
    let matches = |filter: &Filter| match document {
        Some(document) => filter.matches_document(document),
        None => filter.matches(None),
    };
    match &route.filter {
        Some(filter) if !matches(filter) => Verdict::FilterDiffers,
        _ => Verdict::Matched,
    }
}

/// The destinations an event goes to: each matched route's, once each, in the order
/// the routes are written.
pub fn destinations<'r>(
    routes: &'r [Route],
    event_type: Option<&str>,
    document: Option<&Document<'_>>,
) -> Vec<&'r str> {
    let mut chosen: Vec<&str> = Vec::with_capacity(routes.len());
    for route in routes {
        if !chosen.contains(&route.destination.as_str())
            && judge(route, event_type, document) == Verdict::Matched
        {
            chosen.push(&route.destination);
        }
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn filter(value: Value) -> Filter {
        Filter::parse(&value).unwrap()
    }

    #[test]
    fn a_filter_declares_the_parts_of_the_body_it_reads() {
        let field = BodyReads::field;
        let amount_and_currency = filter(json!({"body": {"data": {"object": {
            "amount": {"$gte": 1000}, "currency": {"$in": ["eur"]}}}}}));
        assert_eq!(
            amount_and_currency.body_reads(),
            field(
                "data",
                field(
                    "object",
                    BodyReads::Fields(vec![
                        ("amount".into(), BodyReads::Whole),
                        ("currency".into(), BodyReads::Whole)
                    ])
                )
            )
        );
        // Combinators read what their filters read, at the top as below it.
        let combined = filter(json!({"$or": [
            {"body": {"$not": {"a": 1}}},
            {"headers": {"x-env": "prod"}},
            {"body": {"$and": [{"b": {"c": {"$exist": true}}}]}}
        ]}));
        assert_eq!(
            combined.body_reads(),
            BodyReads::Fields(vec![
                ("a".into(), BodyReads::Whole),
                ("b".into(), field("c", BodyReads::Whole))
            ])
        );
        // Reading none of the body still needs its shape.
        assert_eq!(
            filter(json!({"headers": {"x": "y"}})).body_reads(),
            BodyReads::nothing()
        );
        assert_eq!(
            filter(json!({"body": {}})).body_reads(),
            BodyReads::nothing()
        );
        // Whatever compares the body itself, or the whole document, reads all of it.
        for whole in [
            json!({"body": {"$regex": "x"}}),
            json!({"body": "text"}),
            json!({"$exist": true}),
            json!({"$and": [{"$eq": 1}]}),
        ] {
            assert_eq!(
                filter(whole.clone()).body_reads(),
                BodyReads::Whole,
                "{whole}"
            );
        }
    }

    fn matches(f: Value, doc: Value) -> bool {
        filter(f).matches(Some(&doc))
    }

    #[test]
    fn a_mismatch_names_the_clause_that_fails() {
        let doc = json!({"body": {"data": {"object": {"amount": 500, "currency": "usd"}}}});
        let amount = filter(json!({"body": {"data": {"object": {"amount": {"$gte": 10000}}}}}));
        assert_eq!(
            amount.mismatch(Some(&doc), "event").as_deref(),
            Some("event.body.data.object.amount: $gte 10000, but it is 500")
        );
        let currency = filter(json!({"body": {"data": {"object": {"currency": "eur"}}}}));
        assert_eq!(
            currency.mismatch(Some(&doc), "event").as_deref(),
            Some(r#"event.body.data.object.currency: "eur" wanted, but it is "usd""#)
        );
        let missing = filter(json!({"body": {"customer": {"$exist": true}}}));
        assert_eq!(
            missing.mismatch(Some(&doc), "event").as_deref(),
            Some("event.body.customer: $exist true, but it is absent")
        );
        assert_eq!(
            filter(json!({"body": {}})).mismatch(Some(&doc), "event"),
            None
        );
    }

    #[test]
    fn integers_compare_exactly() {
        let doc = |n: u64| json!({"body": {"id": n}});
        assert!(!matches(
            json!({"body": {"id": 9007199254740992u64}}),
            doc(9007199254740993)
        ));
        assert!(matches(
            json!({"body": {"id": 9007199254740993u64}}),
            doc(9007199254740993)
        ));
        assert!(matches(
            json!({"body": {"id": {"$gt": 9007199254740992u64}}}),
            doc(9007199254740993)
        ));
        assert!(matches(
            json!({"body": {"id": {"$in": [1, 2]}}}),
            json!({"body": {"id": 2.0}})
        ));
        assert!(matches(
            json!({"body": {"id": -1}}),
            json!({"body": {"id": -1}})
        ));
        assert!(matches(
            json!({"body": {"id": {"$lt": u64::MAX}}}),
            json!({"body": {"id": -1}})
        ));
    }

    #[test]
    fn literals_and_nested_objects() {
        let doc = json!({"body": {"data": {"object": {"amount": 12000, "currency": "usd"}}}});
        assert!(matches(
            json!({"body": {"data": {"object": {"currency": "usd"}}}}),
            doc.clone()
        ));
        assert!(!matches(
            json!({"body": {"data": {"object": {"currency": "eur"}}}}),
            doc.clone()
        ));
        assert!(matches(
            json!({"body": {"data": {"object": {"amount": 12000.0}}}}),
            doc.clone()
        ));
        // A missing field, or one of another type, is no match.
        assert!(!matches(json!({"body": {"missing": 1}}), doc.clone()));
        assert!(!matches(
            json!({"body": {"data": {"object": {"amount": "12000"}}}}),
            doc.clone()
        ));
        assert!(!matches(
            json!({"body": {"data": {"object": {"amount": {"x": 1}}}}}),
            doc
        ));
    }

    #[test]
    fn every_operator() {
        let doc = json!({"n": 10, "s": "invoice.paid", "t": "2026-12-01T00:00:00Z",
                         "tags": ["a", "b"], "null": null});
        let cases = [
            (json!({"n": {"$eq": 10}}), true),
            (json!({"n": {"$neq": 10}}), false),
            (json!({"missing": {"$neq": 10}}), true),
            (json!({"n": {"$in": [1, 10]}}), true),
            (json!({"n": {"$nin": [1, 10]}}), false),
            (json!({"missing": {"$nin": [1]}}), true),
            (json!({"n": {"$gt": 9, "$lt": 11}}), true),
            (json!({"n": {"$gte": 10, "$lte": 10}}), true),
            (json!({"n": {"$gt": 10}}), false),
            (json!({"n": {"$gt": "9"}}), false),
            (json!({"t": {"$gte": "2026-11-30T00:00:00Z"}}), true),
            (json!({"n": {"$exist": true}}), true),
            (json!({"missing": {"$exist": false}}), true),
            (json!({"null": {"$exist": true}}), true),
            (json!({"s": {"$regex": "^invoice\\."}}), true),
            (json!({"n": {"$regex": "1"}}), false),
            (json!({"tags": "b"}), true),
            (json!({"tags": {"$in": ["c", "a"]}}), true),
            (json!({"tags": {"$regex": "^b$"}}), true),
            (json!({"$and": [{"n": 10}, {"s": "invoice.paid"}]}), true),
            (json!({"$or": [{"n": 1}, {"s": "invoice.paid"}]}), true),
            (json!({"$or": [{"n": 1}, {"s": "x"}]}), false),
            (json!({"$not": {"n": 1}}), true),
            (json!({"n": {"$not": {"$gt": 5}}}), false),
        ];
        for (f, expected) in cases {
            assert_eq!(matches(f.clone(), doc.clone()), expected, "{f}");
        }
    }

    #[test]
    fn bad_filters_are_refused_with_the_reason() {
        let cases = [
            (
                json!({"n": {"$between": [1, 2]}}),
                "unknown operator $between",
            ),
            (json!({"n": {"$in": 1}}), "$in needs a list"),
            (json!({"n": {"$gt": [1]}}), "$gt needs a number or a string"),
            (
                json!({"n": {"$exist": "yes"}}),
                "$exist needs true or false",
            ),
            (json!({"n": {"$regex": "("}}), "$regex \"(\""),
            (json!({"n": {"$eq": 1, "x": 2}}), "mixes operators"),
            (json!({"$and": {"n": 1}}), "$and needs a list"),
        ];
        for (f, reason) in cases {
            let error = Filter::parse(&f).unwrap_err().to_string();
            assert!(error.contains(reason), "{f}: {error}");
        }
    }

    #[test]
    fn event_type_globs() {
        let cases = [
            ("invoice.*", "invoice.paid", true),
            ("invoice.*", "invoice.payment.failed", true),
            ("invoice.*.failed", "invoice.payment.failed", true),
            ("invoice.*.failed", "invoice.payment.x.failed", false),
            (
                "customer.subscription.deleted",
                "customer.subscription.deleted",
                true,
            ),
            (
                "customer.subscription.deleted",
                "customer.subscription",
                false,
            ),
            ("orders/*", "orders/create", true),
            ("issues.op*", "issues.opened", true),
            ("*", "anything.at/all", true),
            ("push", "pushed", false),
            ("*a*b", "xaxb", true),
            ("*a*b", "xab.b", false),
            ("a*", "a.b.c", true),
            ("*.*", "a.b.c", true),
            ("a*c", "abbc", true),
            ("a*c", "ab.c", false),
            ("", "", true),
            ("", "a", false),
        ];
        for (pattern, event_type, expected) in cases {
            assert_eq!(
                TypeGlob::new(pattern).matches(event_type),
                expected,
                "{pattern} / {event_type}"
            );
        }
    }

    #[test]
    fn many_stars_in_a_segment_do_not_backtrack() {
        // Exponential for a backtracking matcher: this would not finish.
        let long = "a".repeat(crate::domain::event::MAX_EVENT_TYPE_BYTES);
        for pattern in ["*a*b", "*a*a*b", "*a*a*a*a*a*a*b"] {
            assert!(!TypeGlob::new(pattern).matches(&long), "{pattern}");
        }
        assert!(TypeGlob::new("*a*a*a*a*a*a*").matches(&long));
    }

    #[test]
    fn routes_combine_types_and_filters_and_name_each_destination_once() {
        let route = |destination: &str, types: &[&str], filter: Option<Value>| Route {
            destination: destination.into(),
            event_types: types.iter().map(|t| TypeGlob::new(t)).collect(),
            filter: filter.map(|f| Filter::parse(&f).unwrap()),
        };
        let routes = vec![
            route("billing", &["invoice.*"], None),
            route(
                "analytics",
                &[],
                Some(json!({"body": {"data": {"object": {"amount": {"$gte": 10000}}}}})),
            ),
            route("billing", &[], None),
            route("archive", &[], None),
        ];
        let body = json!({"data": {"object": {"amount": 500}}});
        let no_headers = || json!({});
        let document = Document::new(Some("invoice.paid"), Some(&body), &no_headers);
        assert_eq!(
            destinations(&routes, Some("invoice.paid"), Some(&document)),
            vec!["billing", "archive"]
        );
        assert_eq!(
            judge(&routes[1], Some("invoice.paid"), Some(&document)),
            Verdict::FilterDiffers
        );
        assert_eq!(
            judge(&routes[0], None, Some(&document)),
            Verdict::NoEventType
        );
        assert_eq!(
            judge(&routes[0], Some("charge.succeeded"), None),
            Verdict::EventTypeDiffers
        );
        // A filter with no document to read matches nothing but `$exist: false`.
        assert_eq!(judge(&routes[1], None, None), Verdict::FilterDiffers);
    }
}
