//! An event's type, where each sender puts it: GitHub's `X-GitHub-Event` with the
//! body's `action` (`issues.opened`), Stripe's body `type`, Shopify's topic header,
//! Slack's `event.type` (or `type`), Standard Webhooks' and Svix's body `type`. Route
//! `event_types` globs are matched against it.

use http::HeaderMap;
use serde_json::Value;

use crate::domain::scheme::Scheme;

/// The type of an event of `scheme`, from its headers and parsed JSON body.
pub fn of(scheme: Scheme, headers: &HeaderMap, body: Option<&Value>) -> Option<String> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let field = |pointer: &str| {
        body.and_then(|b| b.pointer(pointer))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    match scheme {
        Scheme::Github => {
            let event = header("x-github-event")?;
            Some(match field("/action") {
                Some(action) => format!("{event}.{action}"),
                None => event,
            })
        }
        Scheme::Shopify => header("x-shopify-topic").or_else(|| header("shopify-topic")),
        Scheme::Slack => field("/event/type").or_else(|| field("/type")),
        Scheme::Stripe | Scheme::StandardWebhooks | Scheme::Svix | Scheme::None => field("/type"),
    }
}

/// The body fields [`of`] reads for `scheme`, as JSON Pointers.
pub fn body_pointers(scheme: Scheme) -> &'static [&'static str] {
    match scheme {
        Scheme::Github => &["/action"],
        Scheme::Shopify => &[],
        Scheme::Slack => &["/event/type", "/type"],
        Scheme::Stripe | Scheme::StandardWebhooks | Scheme::Svix | Scheme::None => &["/type"],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::test_headers;
    use serde_json::json;

    #[test]
    fn each_scheme_names_its_events_where_the_sender_does() {
        // Shapes as the providers send them (abridged).
        let issues = json!({"action": "opened", "issue": {"number": 1347}, "repository": {"full_name": "octocat/Hello-World"}});
        assert_eq!(
            of(
                Scheme::Github,
                &test_headers(&[("x-github-event", "issues")]),
                Some(&issues)
            )
            .as_deref(),
            Some("issues.opened")
        );
        let push = json!({"ref": "refs/heads/main", "commits": []});
        assert_eq!(
            of(
                Scheme::Github,
                &test_headers(&[("x-github-event", "push")]),
                Some(&push)
            )
            .as_deref(),
            Some("push")
        );
        let invoice = json!({"id": "evt_1", "object": "event", "type": "invoice.paid", "data": {"object": {"object": "invoice"}}});
        assert_eq!(
            of(Scheme::Stripe, &HeaderMap::new(), Some(&invoice)).as_deref(),
            Some("invoice.paid")
        );
        let order = json!({"id": 820982911946154508u64, "email": "jon@example.com"});
        assert_eq!(
            of(
                Scheme::Shopify,
                &test_headers(&[("x-shopify-topic", "orders/create")]),
                Some(&order)
            )
            .as_deref(),
            Some("orders/create")
        );
        assert_eq!(
            of(
                Scheme::Shopify,
                &test_headers(&[("shopify-topic", "orders/paid")]),
                None
            )
            .as_deref(),
            Some("orders/paid")
        );
        let callback = json!({"type": "event_callback", "event_id": "Ev1", "event": {"type": "app_mention", "text": "hi"}});
        assert_eq!(
            of(Scheme::Slack, &HeaderMap::new(), Some(&callback)).as_deref(),
            Some("app_mention")
        );
        let verification = json!({"type": "url_verification", "challenge": "c"});
        assert_eq!(
            of(Scheme::Slack, &HeaderMap::new(), Some(&verification)).as_deref(),
            Some("url_verification")
        );
        let sw = json!({"type": "order.paid", "data": {}});
        assert_eq!(
            of(Scheme::Svix, &HeaderMap::new(), Some(&sw)).as_deref(),
            Some("order.paid")
        );
        // Nowhere to be found: no type (routes with event_types will not match).
        assert_eq!(of(Scheme::Github, &HeaderMap::new(), Some(&push)), None);
        assert_eq!(
            of(Scheme::Stripe, &HeaderMap::new(), Some(&json!([1, 2]))),
            None
        );
    }

    #[test]
    fn the_body_pointers_are_all_that_each_scheme_reads() {
        use crate::domain::body_reads::BodyReads;
        let github = test_headers(&[("x-github-event", "issues")]);
        let shopify = test_headers(&[("x-shopify-topic", "orders/create")]);
        let cases = [
            (
                Scheme::Github,
                &github,
                r#"{"action":"opened","issue":{"number":1}}"#,
            ),
            (Scheme::Shopify, &shopify, r#"{"id":1,"type":"not this"}"#),
            (
                Scheme::Slack,
                &HeaderMap::new(),
                r#"{"type":"event_callback","event":{"type":"app_mention","text":"hi"}}"#,
            ),
            (
                Scheme::Slack,
                &HeaderMap::new(),
                r#"{"type":"url_verification","challenge":"c"}"#,
            ),
            (
                Scheme::Stripe,
                &HeaderMap::new(),
                r#"{"type":"invoice.paid","data":{"object":{}}}"#,
            ),
            (
                Scheme::StandardWebhooks,
                &HeaderMap::new(),
                r#"{"type":"order.paid","data":{}}"#,
            ),
        ];
        for (scheme, headers, body) in cases {
            let mut reads = BodyReads::nothing();
            for pointer in body_pointers(scheme) {
                reads.merge(BodyReads::at_pointer(pointer));
            }
            let whole: Value = serde_json::from_str(body).unwrap();
            let projected = reads.parse(body).unwrap();
            let expected = of(scheme, headers, Some(&whole));
            assert!(expected.is_some(), "{body}");
            assert_eq!(of(scheme, headers, Some(&projected)), expected, "{body}");
        }
    }
}
