//! The filter language and routes, by example.

use serde_json::{Value, json};

use super::*;
use crate::domain::body_reads::BodyReads;

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
