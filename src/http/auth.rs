//! Who may use the operator's routes: a bearer token when `HOOKRELAY_ADMIN_TOKEN` is
//! set, else clients on this machine only.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use hmac::Mac;

use super::AppState;
use super::error::ApiError;
use crate::sources::Secret;

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
    admit(state.admin_token.as_ref(), peer, authorization)?;
    Ok(next.run(request).await)
}

/// The rule, apart from HTTP plumbing.
pub(super) fn admit(
    token: Option<&Secret>,
    peer: SocketAddr,
    authorization: Option<&str>,
) -> Result<(), ApiError> {
    match token {
        Some(token) => {
            let presented = authorization
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or_default();
            if constant_time_eq(presented.trim().as_bytes(), token.bytes()) {
                Ok(())
            } else {
                Err(ApiError::Unauthorized)
            }
        }
        None if peer.ip().is_loopback() => Ok(()),
        None => Err(ApiError::Forbidden),
    }
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
    fn tokens_compare_exactly() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"", b"secret"));
        assert!(!constant_time_eq(b"secret-and-more", b"secret"));
    }
}
