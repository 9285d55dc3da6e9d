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
pub(super) fn shortened(value: &Value, limit: usize) -> String {
    let text = value.to_string();
    match text.char_indices().nth(limit) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// `value` itself, or each element when it is an array.
pub(super) fn any_element(value: &Value, test: &dyn Fn(&Value) -> bool) -> bool {
    match value {
        Value::Array(items) => items.iter().any(test),
        other => test(other),
    }
}

/// Equal, numbers by value; a scalar also matches an array holding it.
pub(super) fn equal_or_contains(value: &Value, expected: &Value) -> bool {
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

pub(super) fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => compare_numbers(x, y) == Some(Ordering::Equal),
        _ => a == b,
    }
}

/// Integers (up to 64 bits) exactly, so `9007199254740993` is not `9007199254740992`;
/// any other pair as 64-bit floats (`1` equals `1.0`).
pub(super) fn compare_numbers(x: &Number, y: &Number) -> Option<Ordering> {
    let integer = |n: &Number| n.as_i64().map(i128::from).or(n.as_u64().map(i128::from));
    match (integer(x), integer(y)) {
        (Some(x), Some(y)) => Some(x.cmp(&y)),
        _ => x.as_f64()?.partial_cmp(&y.as_f64()?),
    }
}

/// Numbers with numbers, strings with strings (RFC 3339 times order as text); other
/// pairs do not compare.
pub(super) fn compare(value: &Value, bound: &Value) -> Option<Ordering> {
    match (value, bound) {
        (Value::Number(x), Value::Number(y)) => compare_numbers(x, y),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
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
