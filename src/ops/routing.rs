//! Which deliveries an event gets: its type, the document filters read, and the routes
//! of its source. Decided once per event, at ingest (and again when an operator
//! replays a filtered event); pure, so `hookrelay routes test` explains exactly what
//! ingest would do.

use http::HeaderMap;
use serde_json::{Map, Value};

use crate::config::destinations::{BUILT_IN, DestinationSettings, Destinations};
use crate::config::sources::SourceSettings;
use crate::domain::event::{InvalidEventType, check_event_type, stored_ordering_key};
use crate::domain::json_text::raw_at_pointer;
use crate::domain::routing::{self, Document, Verdict};
use crate::domain::scheme::KeyLocation;
use crate::ingest::event_type;
use crate::store::NewDelivery;

/// An event's type: where the source's `event_type` says, else where its scheme puts it.
pub fn event_type_of(
    settings: &SourceSettings,
    headers: &HeaderMap,
    body: Option<&Value>,
) -> Option<String> {
    match &settings.event_type {
        Some(KeyLocation::Header(name)) => headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned),
        Some(KeyLocation::Json(pointer)) => body
            .and_then(|b| b.pointer(pointer))
            .and_then(Value::as_str)
            .map(str::to_owned),
        None => event_type::of(settings.verify, headers, body),
    }
}

/// The headers as filters read them: `{lower-case name: value}`.
fn headers_value(headers: &HeaderMap) -> Value {
    let mut names = Map::new();
    for name in headers.keys() {
        let values: Vec<&str> = headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        // Header names are lower case already; repeated headers read as one list.
        names.insert(name.as_str().to_owned(), Value::String(values.join(", ")));
    }
    Value::Object(names)
}

/// A body that is not JSON, as filters read it: its text.
fn text_body(raw_body: &[u8]) -> Value {
    Value::String(String::from_utf8_lossy(raw_body).into_owned())
}

/// An event as routing sees it.
pub struct Routable<'a> {
    pub headers: &'a HeaderMap,
    /// The parsed body, when it is JSON and was parsed.
    pub body: Option<&'a Value>,
    pub raw_body: &'a [u8],
}

/// The event's type, refused when it breaks the one rule for types (checked before
/// any route's glob reads it).
pub fn checked_event_type(
    settings: &SourceSettings,
    event: &Routable<'_>,
) -> Result<Option<String>, InvalidEventType> {
    let event_type = event_type_of(settings, event.headers, event.body);
    if let Some(text) = &event_type {
        check_event_type(text)?;
    }
    Ok(event_type)
}

/// The deliveries an event of `settings`' source gets, and its type. A source without
/// routes goes to the built-in processor; an event no route matches gets none.
pub fn route(
    settings: &SourceSettings,
    destinations: &Destinations,
    default_max_attempts: u32,
    event: &Routable<'_>,
) -> Result<(Option<String>, Vec<NewDelivery>), InvalidEventType> {
    let event_type = checked_event_type(settings, event)?;
    if settings.routes.is_empty() {
        let built_in = NewDelivery {
            destination: BUILT_IN.to_owned(),
            max_attempts: default_max_attempts,
            ordering_key: None,
        };
        return Ok((event_type, vec![built_in]));
    }
    // Read in place, once per event, and only when a filter will read it.
    let reads = settings.routes.iter().any(|r| r.reads_document());
    let text = (reads && event.body.is_none()).then(|| text_body(event.raw_body));
    let headers = || headers_value(event.headers);
    let document = reads.then(|| {
        Document::new(
            event_type.as_deref(),
            event.body.or(text.as_ref()),
            &headers,
        )
    });
    let deliveries =
        routing::destinations(&settings.routes, event_type.as_deref(), document.as_ref())
            .into_iter()
            .map(|name| NewDelivery {
                destination: name.to_owned(),
                max_attempts: destinations.max_attempts(name, default_max_attempts),
                ordering_key: destinations.get(name).and_then(|d| ordering_key(d, event)),
            })
            .collect();
    Ok((event_type, deliveries))
}

/// An ordered destination's key for this event: the header's value, or the JSON
/// value at the pointer (a string as it is, anything else as JSON text); `""` when
/// the event has none, so that those keep their order among themselves. `None` for
/// an unordered destination without `ordering_key` (a broker destination may have one
/// for its message key alone). A long key is stored as its digest.
fn ordering_key(destination: &DestinationSettings, event: &Routable<'_>) -> Option<String> {
    if destination.limits.ordered.is_none() && destination.ordering_key.is_none() {
        return None;
    }
    let key = match &destination.ordering_key {
        None => None,
        Some(KeyLocation::Header(name)) => event
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        Some(KeyLocation::Json(pointer)) => {
            event
                .body
                .and_then(|b| b.pointer(pointer))
                .map(|value| match value {
                    Value::String(text) => text.clone(),
                    // As written, so that distinct numbers are distinct keys.
                    Value::Number(n) => std::str::from_utf8(event.raw_body)
                        .ok()
                        .and_then(|text| raw_at_pointer(text, pointer))
                        .map_or_else(|| n.to_string(), str::to_owned),
                    other => other.to_string(),
                })
        }
    };
    Some(stored_ordering_key(key.unwrap_or_default()))
}

/// Each route's verdict on an event, in the order the routes are written.
pub struct Explanation {
    /// The event's type, or why ingest refuses it (then no route is judged).
    pub event_type: Result<Option<String>, InvalidEventType>,
    /// Each route's destination, verdict and, when its filter does not match, the
    /// clause that fails.
    pub routes: Vec<(String, Verdict, Option<String>)>,
    /// No routes: the built-in processor takes every event.
    pub built_in: bool,
}

pub fn explain(settings: &SourceSettings, event: &Routable<'_>) -> Explanation {
    let event_type = match checked_event_type(settings, event) {
        Ok(event_type) => event_type,
        Err(refused) => {
            return Explanation {
                event_type: Err(refused),
                routes: Vec::new(),
                built_in: settings.routes.is_empty(),
            };
        }
    };
    let text = event.body.is_none().then(|| text_body(event.raw_body));
    let headers = || headers_value(event.headers);
    let document = Document::new(
        event_type.as_deref(),
        event.body.or(text.as_ref()),
        &headers,
    );
    let routes = settings
        .routes
        .iter()
        .map(|route| {
            let verdict = routing::judge(route, event_type.as_deref(), Some(&document));
            let why = match (&route.filter, verdict) {
                (Some(filter), Verdict::FilterDiffers) => {
                    filter.mismatch(Some(&document.to_value()), "event")
                }
                _ => None,
            };
            (route.destination.clone(), verdict, why)
        })
        .collect();
    Explanation {
        event_type: Ok(event_type),
        routes,
        built_in: settings.routes.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::routing::{Filter, Route, TypeGlob};
    use crate::domain::scheme::Scheme;
    use crate::ingest::test_headers;
    use serde_json::json;

    fn stripe() -> SourceSettings {
        let mut settings = SourceSettings::unconfigured("stripe");
        settings.verify = Scheme::Stripe;
        settings.routes = vec![
            Route {
                destination: "billing".into(),
                event_types: vec![TypeGlob::new("invoice.*")],
                filter: None,
            },
            Route {
                destination: "big".into(),
                event_types: vec![],
                filter: Some(
                    Filter::parse(
                        &json!({"body": {"data": {"object": {"amount_paid": {"$gte": 10000}}}}}),
                    )
                    .unwrap(),
                ),
            },
            Route {
                destination: "staging".into(),
                event_types: vec![],
                filter: Some(Filter::parse(&json!({"headers": {"x-env": "staging"}})).unwrap()),
            },
        ];
        settings
    }

    #[test]
    fn an_event_gets_one_delivery_per_matching_destination() {
        let settings = stripe();
        let headers = test_headers(&[("content-type", "application/json")]);
        let body = json!({"id": "evt_1", "type": "invoice.paid",
                          "data": {"object": {"amount_paid": 25000}}});
        let raw = body.to_string();
        let event = Routable {
            headers: &headers,
            body: Some(&body),
            raw_body: raw.as_bytes(),
        };
        let mut destinations = Destinations::default();
        let mut big = crate::config::destinations::DestinationSettings::new(
            "big",
            crate::config::endpoints::Endpoint::Http("http://127.0.0.1:1/".parse().unwrap()),
        );
        big.max_attempts = Some(9);
        destinations.insert(big);
        let (event_type, deliveries) = route(&settings, &destinations, 5, &event).unwrap();
        assert_eq!(event_type.as_deref(), Some("invoice.paid"));
        assert_eq!(
            deliveries,
            vec![
                NewDelivery {
                    destination: "billing".into(),
                    max_attempts: 5,
                    ordering_key: None,
                },
                NewDelivery {
                    destination: "big".into(),
                    max_attempts: 9,
                    ordering_key: None,
                },
            ]
        );
        let explanation = explain(&settings, &event);
        assert_eq!(explanation.routes[2].1, Verdict::FilterDiffers);
        assert!(
            explanation.routes[2]
                .2
                .as_deref()
                .is_some_and(|why| why.starts_with("event.headers.x-env")),
            "{:?}",
            explanation.routes[2].2
        );
    }

    #[test]
    fn no_routes_means_the_built_in_processor_and_no_match_means_none() {
        let headers = test_headers(&[("x-env", "staging")]);
        let event = Routable {
            headers: &headers,
            body: None,
            raw_body: b"",
        };
        let (_, built_in) = route(
            &SourceSettings::unconfigured("s"),
            &Destinations::default(),
            5,
            &event,
        )
        .unwrap();
        assert_eq!(built_in[0].destination, BUILT_IN);
        let (event_type, deliveries) =
            route(&stripe(), &Destinations::default(), 5, &event).unwrap();
        assert_eq!(event_type, None);
        assert_eq!(deliveries.len(), 1, "the header filter still matches");
        let other = test_headers(&[("x-env", "prod")]);
        let event = Routable {
            headers: &other,
            ..event
        };
        assert!(
            route(&stripe(), &Destinations::default(), 5, &event)
                .unwrap()
                .1
                .is_empty()
        );
    }

    #[test]
    fn the_source_can_say_where_the_type_is() {
        let mut settings = SourceSettings::unconfigured("own");
        settings.event_type = Some(KeyLocation::Json("/kind".into()));
        let body = json!({"kind": "order.created", "type": "ignored"});
        assert_eq!(
            event_type_of(&settings, &HeaderMap::new(), Some(&body)).as_deref(),
            Some("order.created")
        );
        settings.event_type = Some(KeyLocation::Header("x-kind".parse().unwrap()));
        let headers = test_headers(&[("x-kind", "a.b")]);
        assert_eq!(
            event_type_of(&settings, &headers, None).as_deref(),
            Some("a.b")
        );
    }
}
