use super::*;
use crate::domain::time::Timestamp;

fn facts(body: &Bytes) -> Facts<'_> {
    Facts {
        event_id: "evt_1",
        source: "stripe",
        destination: "bus",
        event_type: Some("invoice.paid"),
        received_at: Timestamp(1_700_000_000_000_000),
        attempt: 2,
        attempts_at_replay: 0,
        content_type: Some("application/json"),
        body,
        ordering_key: Some("cus_1"),
        trace: None,
    }
}

fn header<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| std::str::from_utf8(v).unwrap())
}

fn sender_headers() -> Vec<(String, Vec<u8>)> {
    vec![
        ("Stripe-Signature".into(), b"t=1,v1=abc".to_vec()),
        ("Connection".into(), b"x-private".to_vec()),
        ("x-private".into(), b"hop".to_vec()),
        ("content-type".into(), b"application/json".to_vec()),
        ("webhook-signature".into(), b"v1,sender".to_vec()),
    ]
}

#[test]
fn raw_keeps_the_body_and_carries_the_metadata_and_the_senders_headers() {
    let body = Bytes::from_static(br#"{"type":"invoice.paid"}"#);
    let headers = sender_headers();
    let message = build(&facts(&body), headers, Format::Raw, None);
    assert_eq!(message.body, body);
    assert_eq!(message.key.as_deref(), Some("cus_1"));
    assert_eq!(message.dedup_id, "evt_1");
    let sent = message.broker_headers(Naming::Underscored);
    assert_eq!(header(&sent, "hookrelay-event-id"), Some("evt_1"));
    assert_eq!(header(&sent, "hookrelay-event-type"), Some("invoice.paid"));
    assert_eq!(header(&sent, "hookrelay-attempt"), Some("2"));
    assert_eq!(
        header(&sent, "hookrelay-received-at"),
        Some("2023-11-14T22:13:20.000Z")
    );
    assert_eq!(header(&sent, "stripe-signature"), Some("t=1,v1=abc"));
    assert_eq!(header(&sent, "webhook-signature"), Some("v1,sender"));
    // The sender's own Standard Webhooks headers pass untouched: no second webhook-id.
    assert_eq!(header(&sent, "webhook-id"), None);
    assert_eq!(header(&sent, "x-private"), None);
    assert_eq!(sent.iter().filter(|(n, _)| n == "content-type").count(), 1);
}

#[test]
fn signing_replaces_the_senders_signature_and_signs_what_is_sent() {
    let body = Bytes::from_static(b"{}");
    let headers = sender_headers();
    let signing = Signing {
        key: b"secret",
        timestamp: 1_700_000_000,
    };
    let message = build(&facts(&body), headers, Format::Envelope, Some(signing));
    let sent = message.broker_headers(Naming::Dashed);
    assert_eq!(header(&sent, "webhook-id"), Some("evt_1"));
    let expected = sign_standard(b"secret", "evt_1", 1_700_000_000, &message.body);
    assert_eq!(header(&sent, "webhook-signature"), Some(expected.as_str()));
    assert_eq!(
        sent.iter()
            .filter(|(n, _)| n == "webhook-signature")
            .count(),
        1
    );
}

#[test]
fn envelope_embeds_json_as_sent_and_other_bodies_in_base64() {
    let body = Bytes::from_static(br#"{"b":1,  "a":2}"#);
    let headers = sender_headers();
    let message = build(&facts(&body), headers.clone(), Format::Envelope, None);
    let text = std::str::from_utf8(&message.body).unwrap();
    assert!(text.contains(r#""payload":{"b":1,  "a":2}"#), "{text}");
    let document: serde_json::Value = serde_json::from_slice(&message.body).unwrap();
    assert_eq!(document["id"], "evt_1");
    assert_eq!(document["event_type"], "invoice.paid");
    assert_eq!(document["headers"]["stripe-signature"], "t=1,v1=abc");
    assert!(message.forwarded.is_empty());
    let binary = Bytes::from_static(b"\xff\x00");
    let message = build(&facts(&binary), headers, Format::Envelope, None);
    let document: serde_json::Value = serde_json::from_slice(&message.body).unwrap();
    assert_eq!(document["payload_base64"], "/wA=");
    assert!(document.get("payload").is_none());
}

#[test]
fn cloudevents_binary_names_attributes_per_transport() {
    let body = Bytes::from_static(b"{}");
    let message = build(
        &facts(&body),
        Vec::new(),
        Format::CloudEvents { structured: false },
        None,
    );
    let dashed: Vec<_> = message.metadata_named(Naming::Dashed).collect();
    assert!(dashed.contains(&("ce-id".to_owned(), "evt_1")));
    assert!(dashed.contains(&("ce-type".to_owned(), "invoice.paid")));
    assert!(dashed.contains(&("hookrelay-source".to_owned(), "stripe")));
    let kafka: Vec<_> = message.metadata_named(Naming::Underscored).collect();
    assert!(kafka.contains(&("ce_specversion".to_owned(), "1.0")));
    assert!(kafka.contains(&("ce_source".to_owned(), "stripe")));
}

#[test]
fn cloudevents_structured_is_one_document() {
    let body = Bytes::from_static(br#"{"x":1}"#);
    let mut untyped = facts(&body);
    untyped.event_type = None;
    let message = build(
        &untyped,
        Vec::new(),
        Format::CloudEvents { structured: true },
        None,
    );
    assert_eq!(
        message.content_type.as_deref(),
        Some("application/cloudevents+json")
    );
    let document: serde_json::Value = serde_json::from_slice(&message.body).unwrap();
    assert_eq!(document["specversion"], "1.0");
    assert_eq!(document["type"], "hookrelay.untyped");
    assert_eq!(document["data"]["x"], 1);
}

#[test]
fn a_replay_is_a_new_message_to_deduplicating_brokers() {
    let body = Bytes::from_static(b"{}");
    let mut replayed = facts(&body);
    replayed.attempts_at_replay = 3;
    assert_eq!(
        build(&replayed, Vec::new(), Format::Raw, None).dedup_id,
        "evt_1.r3"
    );
}

#[test]
fn formats_parse_by_name() {
    for format in [
        Format::Raw,
        Format::Envelope,
        Format::CloudEvents { structured: false },
        Format::CloudEvents { structured: true },
    ] {
        assert_eq!(format.as_str().parse::<Format>(), Ok(format));
    }
    assert!("json".parse::<Format>().is_err());
}

#[test]
fn when_tracing_the_delivery_carries_hookrelays_trace_context_not_the_senders() {
    let body = Bytes::from_static(b"{}");
    let mut headers = sender_headers();
    headers.push(("traceparent".into(), b"00-aaaa-bbbb-01".to_vec()));
    headers.push(("tracestate".into(), b"sender=1".to_vec()));
    // Not tracing: the sender's travel on like any header.
    let untraced = build(&facts(&body), headers.clone(), Format::Raw, None);
    let sent = untraced.broker_headers(Naming::Dashed);
    assert_eq!(header(&sent, "traceparent"), Some("00-aaaa-bbbb-01"));
    // Tracing: the attempt's, once.
    let ours = [("traceparent", "00-cccc-dddd-01".to_owned())];
    let traced = Facts {
        trace: Some(&ours),
        ..facts(&body)
    };
    let sent = build(&traced, headers.clone(), Format::Raw, None).broker_headers(Naming::Dashed);
    assert_eq!(header(&sent, "traceparent"), Some("00-cccc-dddd-01"));
    assert_eq!(sent.iter().filter(|(n, _)| n == "traceparent").count(), 1);
    assert_eq!(header(&sent, "tracestate"), None);
    // A destination outside the trace gets neither.
    let withheld = Facts {
        trace: Some(&[]),
        ..facts(&body)
    };
    let sent = build(&withheld, headers, Format::Raw, None).broker_headers(Naming::Dashed);
    assert_eq!(header(&sent, "traceparent"), None);
}
