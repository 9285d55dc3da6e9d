//! Signature verification, one function per scheme, on the raw body bytes. Every
//! comparison of a computed MAC is constant-time (`Mac::verify_slice`).

use axum::http::HeaderMap;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use thiserror::Error;

use crate::config::sources::SourceSettings;
use crate::config::values::Secret;
use crate::domain::scheme::Scheme;

type HmacSha256 = Hmac<Sha256>;

/// Why a request's signature was refused. Never contains secret material.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("malformed header {0}")]
    Malformed(&'static str),
    #[error("signature does not match")]
    Mismatch,
    #[error("timestamp outside the tolerance")]
    Stale,
}

/// Checks the request against the source's scheme and secrets at `now` (Unix seconds).
pub fn verify(
    source: &SourceSettings,
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    let tolerance = source.tolerance.as_secs() as i64;
    let secrets = &source.secrets;
    match source.verify {
        Scheme::None => Ok(()),
        Scheme::Github => {
            let header = text(headers, "x-hub-signature-256")?;
            let hex_sig = header
                .strip_prefix("sha256=")
                .ok_or(SignatureError::Malformed("x-hub-signature-256"))?;
            let signature = hex::decode(hex_sig)
                .map_err(|_| SignatureError::Malformed("x-hub-signature-256"))?;
            check_any(secrets, &[body], &[signature])
        }
        Scheme::Shopify => {
            // Webhooks use the X- names; Shopify's Events webhooks the unprefixed ones.
            let (name, header) =
                first_of(headers, &["x-shopify-hmac-sha256", "shopify-hmac-sha256"])?;
            let signature = BASE64
                .decode(header)
                .map_err(|_| SignatureError::Malformed(name))?;
            check_any(secrets, &[body], &[signature])
        }
        Scheme::Stripe => {
            let header = text(headers, "stripe-signature")?;
            let mut timestamp = None;
            let mut signatures = Vec::new();
            for part in header.split(',') {
                match part.trim().split_once('=') {
                    Some(("t", value)) => timestamp = Some(value),
                    Some(("v1", value)) => {
                        if let Ok(signature) = hex::decode(value) {
                            signatures.push(signature);
                        }
                    }
                    _ => {}
                }
            }
            let timestamp = timestamp.ok_or(SignatureError::Malformed("stripe-signature"))?;
            check_fresh(timestamp, now, tolerance, "stripe-signature")?;
            check_any(secrets, &[timestamp.as_bytes(), b".", body], &signatures)
        }
        Scheme::Slack => {
            let timestamp = text(headers, "x-slack-request-timestamp")?;
            let header = text(headers, "x-slack-signature")?;
            check_fresh(timestamp, now, tolerance, "x-slack-request-timestamp")?;
            let hex_sig = header
                .strip_prefix("v0=")
                .ok_or(SignatureError::Malformed("x-slack-signature"))?;
            let signature =
                hex::decode(hex_sig).map_err(|_| SignatureError::Malformed("x-slack-signature"))?;
            check_any(
                secrets,
                &[b"v0:", timestamp.as_bytes(), b":", body],
                &[signature],
            )
        }
        Scheme::StandardWebhooks => standard(headers, body, now, tolerance, secrets, &WEBHOOK),
        // Svix's own library accepts either set of names, and so does hookrelay.
        Scheme::Svix => {
            let names = if headers.contains_key(SVIX.id) {
                &SVIX
            } else if headers.contains_key(WEBHOOK.id) {
                &WEBHOOK
            } else {
                return Err(SignatureError::MissingHeader(SVIX.id));
            };
            standard(headers, body, now, tolerance, secrets, names)
        }
    }
}

/// The three headers of a Standard Webhooks signature, under one family of names.
pub struct StandardHeaders {
    pub id: &'static str,
    pub timestamp: &'static str,
    pub signature: &'static str,
}

pub const WEBHOOK: StandardHeaders = StandardHeaders {
    id: "webhook-id",
    timestamp: "webhook-timestamp",
    signature: "webhook-signature",
};

pub const SVIX: StandardHeaders = StandardHeaders {
    id: "svix-id",
    timestamp: "svix-timestamp",
    signature: "svix-signature",
};

/// Standard Webhooks (and Svix, its origin): `{id}.{timestamp}.{body}`, base64
/// signatures listed as `v1,<sig>` separated by spaces.
fn standard(
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
    tolerance: i64,
    secrets: &[Secret],
    names: &StandardHeaders,
) -> Result<(), SignatureError> {
    let id = text(headers, names.id)?;
    let timestamp = text(headers, names.timestamp)?;
    let header = text(headers, names.signature)?;
    check_fresh(timestamp, now, tolerance, names.timestamp)?;
    let signatures: Vec<Vec<u8>> = header
        .split(' ')
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .filter_map(|encoded| BASE64.decode(encoded).ok())
        .collect();
    check_any(
        secrets,
        &[id.as_bytes(), b".", timestamp.as_bytes(), b".", body],
        &signatures,
    )
}

/// The first of `names` that is present, with its value.
fn first_of<'a>(
    headers: &'a HeaderMap,
    names: &[&'static str],
) -> Result<(&'static str, &'a str), SignatureError> {
    let name = names
        .iter()
        .copied()
        .find(|name| headers.contains_key(*name))
        .ok_or(SignatureError::MissingHeader(names[0]))?;
    Ok((name, text(headers, name)?))
}

fn text<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<&'a str, SignatureError> {
    headers
        .get(name)
        .ok_or(SignatureError::MissingHeader(name))?
        .to_str()
        .map(str::trim)
        .map_err(|_| SignatureError::Malformed(name))
}

/// Timestamps too far in the past or the future fail: a replay, or a wrong clock.
fn check_fresh(
    timestamp: &str,
    now: i64,
    tolerance: i64,
    header: &'static str,
) -> Result<(), SignatureError> {
    let timestamp: i64 = timestamp
        .parse()
        .map_err(|_| SignatureError::Malformed(header))?;
    // `abs_diff` cannot overflow, whatever number the sender chose.
    if now.abs_diff(timestamp) > tolerance.unsigned_abs() {
        return Err(SignatureError::Stale);
    }
    Ok(())
}

/// True if any signature matches the MAC of `parts` under any secret.
fn check_any(
    secrets: &[Secret],
    parts: &[&[u8]],
    signatures: &[Vec<u8>],
) -> Result<(), SignatureError> {
    for secret in secrets {
        let mut mac =
            HmacSha256::new_from_slice(secret.bytes()).expect("HMAC takes any key length");
        for part in parts {
            mac.update(part);
        }
        for signature in signatures {
            if mac.clone().verify_slice(signature).is_ok() {
                return Ok(());
            }
        }
    }
    Err(SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::test_headers as headers;
    use std::time::Duration;

    fn source(verify: Scheme, secrets: &[&[u8]]) -> SourceSettings {
        SourceSettings {
            verify,
            secrets: secrets.iter().map(|s| Secret::new(s.to_vec())).collect(),
            ..SourceSettings::unconfigured("test")
        }
    }

    fn hmac_hex(secret: &[u8], parts: &[&[u8]]) -> String {
        let mut mac = HmacSha256::new_from_slice(secret).unwrap();
        for part in parts {
            mac.update(part);
        }
        hex::encode(mac.finalize().into_bytes())
    }

    // GitHub's documented example ("Validating webhook deliveries").
    const GITHUB_SECRET: &[u8] = b"It's a Secret to Everybody";
    const GITHUB_SIGNATURE: &str =
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    #[test]
    fn github_documented_example() {
        let github = source(Scheme::Github, &[GITHUB_SECRET]);
        let good = headers(&[("x-hub-signature-256", GITHUB_SIGNATURE)]);
        assert_eq!(verify(&github, &good, b"Hello, World!", 0), Ok(()));
        assert_eq!(
            verify(&github, &good, b"Hello, World?", 0),
            Err(SignatureError::Mismatch)
        );
        let wrong_secret = source(Scheme::Github, &[b"other"]);
        assert_eq!(
            verify(&wrong_secret, &good, b"Hello, World!", 0),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&github, &HeaderMap::new(), b"Hello, World!", 0),
            Err(SignatureError::MissingHeader("x-hub-signature-256"))
        );
        let rotated = source(Scheme::Github, &[b"new secret", GITHUB_SECRET]);
        assert_eq!(verify(&rotated, &good, b"Hello, World!", 0), Ok(()));
    }

    // The Standard Webhooks reference test vector.
    const SW_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SW_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SW_TIMESTAMP: i64 = 1614265330;
    const SW_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SW_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn standard_webhooks_reference_vector() {
        let secret = Secret::from_whsec(SW_SECRET).unwrap();
        let sw = SourceSettings {
            verify: Scheme::StandardWebhooks,
            secrets: vec![secret.clone()],
            ..SourceSettings::unconfigured("sw")
        };
        let ts = SW_TIMESTAMP.to_string();
        // Several signatures in one header: any match is enough.
        let signature = format!("v1,bm9wZQ== {SW_SIGNATURE}");
        let good = headers(&[
            ("webhook-id", SW_ID),
            ("webhook-timestamp", &ts),
            ("webhook-signature", &signature),
        ]);
        assert_eq!(verify(&sw, &good, SW_BODY, SW_TIMESTAMP), Ok(()));
        assert_eq!(verify(&sw, &good, SW_BODY, SW_TIMESTAMP + 299), Ok(()));
        assert_eq!(
            verify(&sw, &good, SW_BODY, SW_TIMESTAMP + 301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(&sw, &good, SW_BODY, SW_TIMESTAMP - 301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(&sw, &good, br#"{"test": 2432232315}"#, SW_TIMESTAMP),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            crate::domain::signing::sign_standard(secret.bytes(), SW_ID, SW_TIMESTAMP, SW_BODY),
            SW_SIGNATURE
        );

        let svix = SourceSettings {
            verify: Scheme::Svix,
            ..sw.clone()
        };
        let svix_headers = headers(&[
            ("svix-id", SW_ID),
            ("svix-timestamp", &ts),
            ("svix-signature", SW_SIGNATURE),
        ]);
        assert_eq!(verify(&svix, &svix_headers, SW_BODY, SW_TIMESTAMP), Ok(()));
        // Svix's library accepts the webhook-* names too.
        assert_eq!(verify(&svix, &good, SW_BODY, SW_TIMESTAMP), Ok(()));
        assert_eq!(
            verify(&svix, &HeaderMap::new(), SW_BODY, SW_TIMESTAMP),
            Err(SignatureError::MissingHeader("svix-id"))
        );
    }

    #[test]
    fn timestamps_far_from_now_never_wrap_around() {
        let now: i64 = 1_700_000_000;
        let far_past = (now as i128 - (1i128 << 63)) as i64;
        let secret = Secret::from_whsec(SW_SECRET).unwrap();
        let sw = SourceSettings {
            verify: Scheme::StandardWebhooks,
            secrets: vec![secret.clone()],
            ..SourceSettings::unconfigured("sw")
        };
        for ts in [far_past, i64::MIN, i64::MAX, -1] {
            let signature =
                crate::domain::signing::sign_standard(secret.bytes(), SW_ID, ts, SW_BODY);
            let signed = headers(&[
                ("webhook-id", SW_ID),
                ("webhook-timestamp", &ts.to_string()),
                ("webhook-signature", &signature),
            ]);
            assert_eq!(
                verify(&sw, &signed, SW_BODY, now),
                Err(SignatureError::Stale),
                "standard-webhooks t={ts}"
            );

            let stripe = source(Scheme::Stripe, &[b"whsec_x"]);
            let mac = hmac_hex(b"whsec_x", &[ts.to_string().as_bytes(), b".", SW_BODY]);
            let signed = headers(&[("stripe-signature", &format!("t={ts},v1={mac}"))]);
            assert_eq!(
                verify(&stripe, &signed, SW_BODY, now),
                Err(SignatureError::Stale),
                "stripe t={ts}"
            );

            let slack = source(Scheme::Slack, &[b"slack"]);
            let mac = hmac_hex(
                b"slack",
                &[b"v0:", ts.to_string().as_bytes(), b":", SW_BODY],
            );
            let signed = headers(&[
                ("x-slack-request-timestamp", &ts.to_string()),
                ("x-slack-signature", &format!("v0={mac}")),
            ]);
            assert_eq!(
                verify(&slack, &signed, SW_BODY, now),
                Err(SignatureError::Stale),
                "slack t={ts}"
            );
        }
    }

    // Slack's documented example ("Verifying requests from Slack").
    const SLACK_SECRET: &[u8] = b"8f742231b10e8888abcd99yyyzzz85a5";
    const SLACK_TIMESTAMP: i64 = 1531420618;
    const SLACK_BODY: &[u8] = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const SLACK_SIGNATURE: &str =
        "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    #[test]
    fn slack_documented_example() {
        let slack = source(Scheme::Slack, &[SLACK_SECRET]);
        let ts = SLACK_TIMESTAMP.to_string();
        let good = headers(&[
            ("x-slack-request-timestamp", &ts),
            ("x-slack-signature", SLACK_SIGNATURE),
        ]);
        assert_eq!(
            verify(&slack, &good, SLACK_BODY, SLACK_TIMESTAMP + 10),
            Ok(())
        );
        assert_eq!(
            verify(&slack, &good, SLACK_BODY, SLACK_TIMESTAMP + 3600),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(&slack, &good, &SLACK_BODY[1..], SLACK_TIMESTAMP),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn stripe_scheme() {
        let secret = b"whsec_stripe_test";
        let stripe = SourceSettings {
            tolerance: Duration::from_secs(300),
            ..source(Scheme::Stripe, &[secret])
        };
        let body = br#"{"id":"evt_1","type":"charge.succeeded"}"#;
        let now = 1_700_000_000;
        let good = hmac_hex(secret, &[b"1700000000", b".", body]);
        // Stripe lists several v1 signatures during secret rotation, and v0 ones to ignore.
        let header = format!("t=1700000000,v1={},v1={good},v0=abc", "00".repeat(32));
        let signed = headers(&[("stripe-signature", &header)]);
        assert_eq!(verify(&stripe, &signed, body, now), Ok(()));
        assert_eq!(
            verify(&stripe, &signed, body, now + 301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(&stripe, &signed, b"{}", now),
            Err(SignatureError::Mismatch)
        );
        let no_time = headers(&[("stripe-signature", "v1=00")]);
        assert_eq!(
            verify(&stripe, &no_time, body, now),
            Err(SignatureError::Malformed("stripe-signature"))
        );
    }

    #[test]
    fn shopify_scheme() {
        let secret = b"shpss_test";
        let shopify = source(Scheme::Shopify, &[secret]);
        let body = br#"{"id":820982911946154508}"#;
        let mut mac = HmacSha256::new_from_slice(secret).unwrap();
        mac.update(body);
        let signature = BASE64.encode(mac.finalize().into_bytes());
        let signed = headers(&[("x-shopify-hmac-sha256", &signature)]);
        assert_eq!(verify(&shopify, &signed, body, 0), Ok(()));
        assert_eq!(
            verify(&shopify, &signed, b"{}", 0),
            Err(SignatureError::Mismatch)
        );
        // Shopify's Events webhooks name the header without the X- prefix.
        let unprefixed = headers(&[("shopify-hmac-sha256", &signature)]);
        assert_eq!(verify(&shopify, &unprefixed, body, 0), Ok(()));
        let hex_instead = headers(&[("x-shopify-hmac-sha256", "zz!")]);
        assert_eq!(
            verify(&shopify, &hex_instead, body, 0),
            Err(SignatureError::Malformed("x-shopify-hmac-sha256"))
        );
    }
}
