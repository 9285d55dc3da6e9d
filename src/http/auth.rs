//! Who may use the operator's routes: a bearer token when `HOOKRELAY_ADMIN_TOKEN` is
//! set, else clients on this machine only.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::Response;
use hmac::Mac;

use super::error::ApiError;
use super::state::AppState;
use crate::config::values::Secret;

pub async fn require_admin(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let admission = admit(state.admin_token.as_ref(), peer, authorization)?;
    // A bearer token is a header no other site's page can make a browser send, so a
    // request that carries it is not forged, whatever its body's type.
    if admission == Admission::Loopback && !matches!(*request.method(), Method::GET | Method::HEAD)
    {
        not_forged(request.headers())?;
    }
    Ok(next.run(request).await)
}

/// Why an operator's request was let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Admission {
    /// It carried the admin token.
    Token,
    /// No token is set and it came from this machine.
    Loopback,
}

/// A state-changing operator request must not come from another site's page: without
/// a token, the loopback rule alone would let any page a local browser opens replay
/// events. Browsers mark such requests in `Sec-Fetch-Site`; and a page can send
/// only form or text bodies without a CORS preflight, so anything but JSON is refused.
pub(super) fn not_forged(headers: &HeaderMap) -> Result<(), ApiError> {
    let site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none");
    if !matches!(site, "same-origin" | "none") {
        return Err(ApiError::CsrfRejected);
    }
    if let Some(content_type) = headers.get(header::CONTENT_TYPE) {
        let essence = content_type
            .to_str()
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        if essence != "application/json" {
            return Err(ApiError::UnsupportedMediaType(
                "operators' requests with a body send it as application/json".into(),
            ));
        }
    }
    Ok(())
}

/// The rule, apart from HTTP plumbing.
pub(super) fn admit(
    token: Option<&Secret>,
    peer: SocketAddr,
    authorization: Option<&str>,
) -> Result<Admission, ApiError> {
    match token {
        Some(token) => {
            let presented = authorization.and_then(bearer).unwrap_or_default();
            if constant_time_eq(presented.trim().as_bytes(), token.bytes()) {
                Ok(Admission::Token)
            } else {
                Err(ApiError::Unauthorized)
            }
        }
        None if is_loopback(peer.ip()) => Ok(Admission::Loopback),
        None => Err(ApiError::Forbidden),
    }
}

/// The credentials of `Bearer <token>`; the scheme's name is case-insensitive in HTTP.
fn bearer(authorization: &str) -> Option<&str> {
    let (scheme, credentials) = authorization.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(credentials)
}

/// Loopback, including IPv4 loopback seen through a dual-stack socket
/// (`::ffff:127.0.0.1` when listening on `[::]`).
pub(super) fn is_loopback(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// Compares without leaking where the first difference is (through HMAC equality,
/// which is constant-time).
pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let key = b"hookrelay admin token comparison";
    let tag = |bytes: &[u8]| {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key length");
        mac.update(bytes);
        mac
    };
    let expected = tag(b).finalize().into_bytes();
    tag(a).verify_slice(&expected).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule() {
        let local: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let remote: SocketAddr = "203.0.113.7:5000".parse().unwrap();
        let token = Secret::new(b"t0k3n".to_vec());
        assert!(admit(None, local, None).is_ok());
        assert!(matches!(
            admit(None, remote, None),
            Err(ApiError::Forbidden)
        ));
        assert!(admit(Some(&token), remote, Some("Bearer t0k3n")).is_ok());
        assert!(admit(Some(&token), remote, Some("bearer t0k3n")).is_ok());
        assert!(admit(Some(&token), remote, Some("BEARER t0k3n")).is_ok());
        assert!(matches!(
            admit(Some(&token), remote, Some("Basic t0k3n")),
            Err(ApiError::Unauthorized)
        ));
        assert!(matches!(
            admit(Some(&token), local, Some("Bearer wrong")),
            Err(ApiError::Unauthorized)
        ));
        assert!(matches!(
            admit(Some(&token), local, None),
            Err(ApiError::Unauthorized)
        ));
        assert!(matches!(
            admit(Some(&token), local, Some("t0k3n")),
            Err(ApiError::Unauthorized)
        ));
    }

    #[test]
    fn cross_site_and_form_posts_are_refused() {
        use axum::http::HeaderValue;
        let with = |pairs: &[(&'static str, &'static str)]| {
            let mut headers = HeaderMap::new();
            for (name, value) in pairs {
                headers.insert(*name, HeaderValue::from_static(value));
            }
            headers
        };
        assert!(not_forged(&with(&[])).is_ok());
        assert!(not_forged(&with(&[("content-type", "application/json")])).is_ok());
        assert!(not_forged(&with(&[("sec-fetch-site", "same-origin")])).is_ok());
        for site in ["cross-site", "same-site"] {
            assert!(matches!(
                not_forged(&with(&[("sec-fetch-site", site)])),
                Err(ApiError::CsrfRejected)
            ));
        }
        for form in [
            "application/x-www-form-urlencoded",
            "text/plain",
            "multipart/form-data; boundary=x",
        ] {
            assert!(matches!(
                not_forged(&with(&[("content-type", form)])),
                Err(ApiError::UnsupportedMediaType(_))
            ));
        }
    }

    #[test]
    fn dual_stack_loopback_is_loopback() {
        for peer in ["[::ffff:127.0.0.1]:5000", "[::1]:5000", "127.0.0.2:5000"] {
            let peer: SocketAddr = peer.parse().unwrap();
            assert!(admit(None, peer, None).is_ok(), "{peer}");
        }
        let mapped_remote: SocketAddr = "[::ffff:203.0.113.7]:5000".parse().unwrap();
        assert!(matches!(
            admit(None, mapped_remote, None),
            Err(ApiError::Forbidden)
        ));
    }

    #[test]
    fn tokens_compare_exactly() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"", b"secret"));
        assert!(!constant_time_eq(b"secret-and-more", b"secret"));
    }
}
