//! HTTP destinations: one POST per attempt, classified into delivered, retry (with the
//! destination's `Retry-After`) or permanent failure.

use std::time::{Duration, SystemTime};

use axum::http::{HeaderName, HeaderValue};
use reqwest::header::{CONTENT_TYPE, HeaderMap, RETRY_AFTER};

use super::outcome::Delivery;
use crate::config::destinations::DestinationSettings;
use crate::domain::lifecycle::AttemptOutcome;
use crate::domain::message::Outbound;
use crate::domain::protection::Fault;
use crate::telemetry::error_chain;

/// Attempts keep at most this much of a destination's answer.
pub const RESPONSE_BODY_LIMIT: usize = 1024;
/// A destination cannot postpone the next attempt by more than this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// The client every delivery uses. Failing to build it is a startup error: a
/// default client would follow redirects, which hookrelay promises never to do.
pub fn client(concurrency: usize) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .user_agent(concat!("hookrelay/", env!("CARGO_PKG_VERSION")))
        // A redirect is the destination's answer, not an instruction to follow.
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(concurrency)
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .build()
}

pub async fn send(
    client: &reqwest::Client,
    url: &reqwest::Url,
    destination: &DestinationSettings,
    message: Outbound,
) -> Delivery {
    let headers = headers(destination, &message);
    let request = client
        .post(url.clone())
        .timeout(destination.timeout)
        .headers(headers)
        .body(message.body);
    match request.send().await {
        Ok(response) => classify(response).await,
        Err(error) => {
            let error = error.without_url();
            let description = if error.is_timeout() {
                format!(
                    "timed out after {}",
                    humantime::format_duration(destination.timeout)
                )
            } else if error.is_connect() {
                format!("connection failed: {}", error_chain(&error))
            } else {
                format!("request failed: {}", error_chain(&error))
            };
            Delivery::failed(description, Fault::Destination)
        }
    }
}

async fn classify(mut response: reqwest::Response) -> Delivery {
    let status = response.status();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    let mut body = Vec::new();
    while body.len() < RESPONSE_BODY_LIMIT {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(RESPONSE_BODY_LIMIT);
    let response_body = Some(response_excerpt(&body));
    let code = status.as_u16();
    let outcome = if status.is_success() {
        AttemptOutcome::Delivered
    } else if code == 410 {
        AttemptOutcome::FailedPermanently {
            error: "HTTP 410 Gone: the destination asked not to be sent this again".into(),
        }
    } else {
        AttemptOutcome::Failed {
            error: format!("HTTP {code}"),
            retry_after,
        }
    };
    Delivery {
        fault: Fault::of(outcome == AttemptOutcome::Delivered, Some(code)),
        outcome,
        status_code: Some(code),
        response_body,
    }
}

/// A response's first bytes as text every backend stores: invalid UTF-8 (a binary,
/// UTF-16 or gzip answer) and NUL, which PostgreSQL's text refuses, become U+FFFD.
pub fn response_excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    if text.contains('\0') {
        text.replace('\0', "\u{FFFD}")
    } else {
        text.into_owned()
    }
}

/// `Retry-After` as seconds or as an HTTP date, capped: any number of seconds beyond
/// the cap, however many digits it has, is the cap.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let all_digits = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
    let delay = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) if all_digits => MAX_RETRY_AFTER,
        Err(_) => httpdate::parse_http_date(value)
            .ok()?
            .duration_since(now)
            .unwrap_or_default(),
    };
    Some(delay.min(MAX_RETRY_AFTER))
}

/// The sender's headers that travel on, hookrelay's metadata as `X-Hookrelay-*`
/// (and `ce-*` in CloudEvents binary mode), the signature when signing, then the
/// destination's own `headers`.
fn headers(destination: &DestinationSettings, message: &Outbound) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(message.forwarded.len() + 12);
    for (name, value) in &message.forwarded {
        if let (Ok(name), Ok(value)) = (
            HeaderName::try_from(name.as_str()),
            HeaderValue::from_bytes(value),
        ) {
            headers.append(name, value);
        }
    }
    if let Some(content_type) = &message.content_type
        && let Ok(value) = HeaderValue::try_from(content_type.as_str())
    {
        headers.insert(CONTENT_TYPE, value);
    }
    for (name, value) in &message.metadata {
        if let Ok(value) = HeaderValue::try_from(value.as_str()) {
            headers.insert(http_name(name), value);
        }
    }
    for (name, value) in &destination.headers {
        headers.insert(name.clone(), value.clone());
    }
    headers
}

/// A metadata name as an HTTP header: `hookrelay-*` as `X-Hookrelay-*`, the rest as
/// they are (all are lower-case header names known when compiled).
fn http_name(name: &'static str) -> HeaderName {
    match name {
        "hookrelay-event-id" => HeaderName::from_static("x-hookrelay-event-id"),
        "hookrelay-source" => HeaderName::from_static("x-hookrelay-source"),
        "hookrelay-destination" => HeaderName::from_static("x-hookrelay-destination"),
        "hookrelay-event-type" => HeaderName::from_static("x-hookrelay-event-type"),
        "hookrelay-received-at" => HeaderName::from_static("x-hookrelay-received-at"),
        "hookrelay-attempt" => HeaderName::from_static("x-hookrelay-attempt"),
        other => HeaderName::from_static(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_answers_are_kept_as_storable_text() {
        assert_eq!(response_excerpt(b"ok"), "ok");
        let excerpt = response_excerpt(b"\x1f\x8b\x08\x00\x00a\xff\xfe");
        assert!(!excerpt.contains('\0'), "{excerpt:?}");
        assert!(excerpt.contains('a'));
        let utf16 = response_excerpt(&[b'o', 0, b'k', 0]);
        assert_eq!(utf16, "o\u{FFFD}k\u{FFFD}");
    }

    #[tokio::test]
    async fn redirects_are_answers_not_instructions() {
        use axum::routing::post;
        let moved = axum::Router::new()
            .route(
                "/hook",
                post(|| async { (axum::http::StatusCode::FOUND, [("location", "/elsewhere")]) }),
            )
            .route("/elsewhere", post(|| async { "followed" }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, moved).await });
        let response = client(1)
            .unwrap()
            .post(format!("http://{address}/hook"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 302);
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(30))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("999999", now), Some(MAX_RETRY_AFTER));
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(
            parse_retry_after(&"9".repeat(400), now),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
