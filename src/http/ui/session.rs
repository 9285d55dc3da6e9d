//! How a browser gets into the dashboard and stays there: `/ui?token=…` once, then a
//! session cookie; and the CSRF check on the dashboard's forms.
//!
//! Both cookies are HttpOnly, SameSite=Strict and scoped to `/ui`. Nothing is kept on
//! the server, so every API process that shares the admin token accepts the session.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use cookie::{Cookie, SameSite};
use hmac::Mac;

use super::super::auth::{admit, constant_time_eq, is_loopback};
use super::super::error::ApiError;
use super::super::state::AppState;
use crate::config::values::Secret;

pub const SESSION_COOKIE: &str = "hookrelay_session";
pub const CSRF_COOKIE: &str = "hookrelay_csrf";
/// The form field that must repeat the CSRF cookie.
pub const CSRF_FIELD: &str = "csrf";
const COOKIE_PATH: &str = "/ui";
const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);

/// Admits a request to `/ui…`: the bearer token, a session cookie, or (without an admin
/// token) a client on this machine. `?token=` is exchanged for a session cookie and a
/// redirect to the same page without it, so the token leaves the address bar.
pub async fn require_dashboard(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let (presented, rest_of_query) = split_token(request.uri().query());
    let here = match rest_of_query {
        Some(query) => format!("{}?{query}", request.uri().path()),
        None => request.uri().path().to_owned(),
    };
    let wants_html = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    match admit_to_dashboard(&state, peer, presented, request, next, &here).await {
        Ok(response) => response,
        // A person gets a page that says how to sign in; a program, the API's JSON.
        Err(refused) if wants_html => refusal_page(&refused, &here),
        Err(refused) => refused.into_response(),
    }
}

/// `presented` is the `?token=` value; `here` the address asked for, without it.
async fn admit_to_dashboard(
    state: &AppState,
    peer: SocketAddr,
    presented: Option<String>,
    request: Request,
    next: Next,
    here: &str,
) -> Result<Response, ApiError> {
    let token = state.admin_token.as_ref();
    if let Some(presented) = presented {
        let session = match token {
            Some(token) if constant_time_eq(presented.as_bytes(), token.bytes()) => {
                Some(issue_session(token, SystemTime::now()))
            }
            Some(_) => return Err(ApiError::DashboardSignIn),
            None if is_loopback(peer.ip()) => None,
            None => return Err(ApiError::Forbidden),
        };
        let mut response =
            (StatusCode::SEE_OTHER, [(header::LOCATION, here.to_owned())]).into_response();
        if let Some(session) = session {
            let cookie = ui_cookie(SESSION_COOKIE, session, request.headers())
                .max_age(cookie::time::Duration::seconds(
                    SESSION_LIFETIME.as_secs() as i64
                ))
                .build();
            set_cookie(&mut response, &cookie);
        }
        return Ok(response);
    }

    let has_session = token.is_some_and(|token| {
        cookie_value(request.headers(), SESSION_COOKIE)
            .is_some_and(|value| session_is_valid(token, &value, SystemTime::now()))
    });
    if !has_session {
        let authorization = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        admit(token, peer, authorization)
            .map(drop)
            .map_err(|refused| match refused {
                ApiError::Unauthorized => ApiError::DashboardSignIn,
                other => other,
            })?;
    }
    Ok(next.run(request).await)
}

/// The refusal as a page, with the status and code the API would give. A session
/// cookie is SameSite=Strict, so a link from another site (a chat alert) arrives
/// without it: following the page's own link to the same address brings it along.
fn refusal_page(refused: &ApiError, here: &str) -> Response {
    let status = refused.status();
    let markup = super::pages::layout::refusal(
        status.canonical_reason().unwrap_or("Refused"),
        &refused.to_string(),
        (status == StatusCode::UNAUTHORIZED).then_some(here),
    );
    (status, markup).into_response()
}

/// The `token` parameter, and the rest of the query (`None` when nothing is left).
fn split_token(query: Option<&str>) -> (Option<String>, Option<String>) {
    let Some(query) = query else {
        return (None, None);
    };
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap_or_default();
    let (tokens, rest): (Vec<_>, Vec<_>) = pairs.into_iter().partition(|(k, _)| k == "token");
    let Some((_, token)) = tokens.into_iter().next() else {
        return (None, Some(query.to_owned()).filter(|q| !q.is_empty()));
    };
    let rest = serde_urlencoded::to_string(&rest)
        .ok()
        .filter(|q| !q.is_empty());
    (Some(token), rest)
}

/// `expiry.mac`: the expiry (Unix seconds) signed with the admin token. A new token
/// ends every session.
fn issue_session(token: &Secret, now: SystemTime) -> String {
    let expires = unix_seconds(now) + SESSION_LIFETIME.as_secs();
    format!("{expires}.{}", hex::encode(session_mac(token, expires)))
}

fn session_is_valid(token: &Secret, value: &str, now: SystemTime) -> bool {
    let Some((expires, mac)) = value.split_once('.') else {
        return false;
    };
    let (Ok(expires), Ok(mac)) = (expires.parse::<u64>(), hex::decode(mac)) else {
        return false;
    };
    expires > unix_seconds(now) && constant_time_eq(&mac, &session_mac(token, expires))
}

fn session_mac(token: &Secret, expires: u64) -> Vec<u8> {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(token.bytes()).expect("any key");
    mac.update(b"hookrelay dashboard session\0");
    mac.update(expires.to_string().as_bytes());
    mac.finalize().into_bytes().to_vec()
}

fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// The CSRF token a page puts in its forms: the one the browser already holds, or a
/// new random one with the cookie that hands it over.
pub struct CsrfToken {
    pub value: String,
    new_cookie: Option<String>,
}

impl CsrfToken {
    pub fn for_request(headers: &HeaderMap) -> Self {
        match cookie_value(headers, CSRF_COOKIE).filter(|v| v.len() == 64) {
            Some(value) => Self {
                value,
                new_cookie: None,
            },
            None => {
                let mut bytes = [0u8; 32];
                // Without an operating-system random source there is no safe token;
                // an all-zero one would be guessable, so fail loudly instead.
                getrandom::fill(&mut bytes).expect("operating-system random source");
                let value = hex::encode(bytes);
                let cookie = ui_cookie(CSRF_COOKIE, value.clone(), headers)
                    .build()
                    .to_string();
                Self {
                    value,
                    new_cookie: Some(cookie),
                }
            }
        }
    }

    /// Adds the cookie to a page that introduced a new token.
    pub fn attach(&self, response: &mut Response) {
        if let Some(cookie) = &self.new_cookie
            && let Ok(value) = HeaderValue::from_str(cookie)
        {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
}

/// A form post is genuine when the browser says it came from this site (where it says
/// anything) and its field repeats the CSRF cookie, which another site cannot read.
pub fn check_csrf(headers: &HeaderMap, field: Option<&str>) -> Result<(), ApiError> {
    let cross_site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|site| site != "same-origin" && site != "none");
    let cookie = cookie_value(headers, CSRF_COOKIE);
    let matches = match (cookie, field) {
        (Some(cookie), Some(field)) => constant_time_eq(cookie.as_bytes(), field.as_bytes()),
        _ => false,
    };
    if cross_site || !matches {
        return Err(ApiError::CsrfRejected);
    }
    Ok(())
}

/// `GET /ui/sign-out`: the session cookie is cleared; the page says how to sign in
/// again. Open without a session, so that it answers the same whatever the cookie.
pub async fn sign_out(headers: HeaderMap) -> Response {
    let markup = super::pages::layout::signed_out();
    let mut response = markup.into_response();
    let expired = ui_cookie(SESSION_COOKIE, String::new(), &headers)
        .max_age(cookie::time::Duration::ZERO)
        .build();
    set_cookie(&mut response, &expired);
    response
}

fn ui_cookie<'c>(name: &'c str, value: String, request: &HeaderMap) -> cookie::CookieBuilder<'c> {
    // Behind a TLS-terminating proxy the cookie must not travel in clear text.
    let secure = request
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|proto| proto.eq_ignore_ascii_case("https"));
    Cookie::build((name, value))
        .path(COOKIE_PATH)
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure)
}

fn set_cookie(response: &mut Response, cookie: &Cookie<'_>) {
    if let Ok(value) = HeaderValue::from_str(&cookie.to_string()) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> Secret {
        Secret::new(b"t0k3n".to_vec())
    }

    #[test]
    fn a_session_is_valid_until_it_expires_and_only_for_its_token() {
        let now = SystemTime::now();
        let session = issue_session(&token(), now);
        assert!(session_is_valid(&token(), &session, now));
        assert!(!session_is_valid(
            &token(),
            &session,
            now + SESSION_LIFETIME + Duration::from_secs(1)
        ));
        assert!(!session_is_valid(
            &Secret::new(b"other".to_vec()),
            &session,
            now
        ));
    }

    #[test]
    fn a_forged_session_is_refused() {
        let now = SystemTime::now();
        let session = issue_session(&token(), now);
        let (_, mac) = session.split_once('.').unwrap();
        let later = unix_seconds(now) + 10 * SESSION_LIFETIME.as_secs();
        for forged in [
            format!("{later}.{mac}"),
            String::new(),
            "garbage".into(),
            format!("{later}."),
            format!(".{mac}"),
            "1.zz".into(),
        ] {
            assert!(!session_is_valid(&token(), &forged, now), "{forged:?}");
        }
    }

    #[test]
    fn the_token_is_taken_out_of_the_query() {
        assert_eq!(split_token(None), (None, None));
        assert_eq!(
            split_token(Some("status=queued")),
            (None, Some("status=queued".into()))
        );
        assert_eq!(split_token(Some("")), (None, None));
        assert_eq!(split_token(Some("token=a%2Bb")), (Some("a+b".into()), None));
        assert_eq!(
            split_token(Some("status=queued&token=t&source=x")),
            (Some("t".into()), Some("status=queued&source=x".into()))
        );
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn csrf_needs_the_cookie_repeated_from_this_site() {
        let token = "a".repeat(64);
        let cookie = format!("{CSRF_COOKIE}={token}");
        assert!(check_csrf(&headers(&[("cookie", &cookie)]), Some(&token)).is_ok());
        assert!(
            check_csrf(
                &headers(&[("cookie", &cookie), ("sec-fetch-site", "same-origin")]),
                Some(&token)
            )
            .is_ok()
        );
        assert!(
            check_csrf(
                &headers(&[("cookie", &cookie), ("sec-fetch-site", "cross-site")]),
                Some(&token)
            )
            .is_err()
        );
        assert!(check_csrf(&headers(&[("cookie", &cookie)]), None).is_err());
        assert!(check_csrf(&headers(&[("cookie", &cookie)]), Some("b")).is_err());
        assert!(check_csrf(&headers(&[]), Some(&token)).is_err());
    }

    #[test]
    fn a_page_keeps_the_browsers_csrf_token_or_hands_out_a_new_one() {
        let existing = "c".repeat(64);
        let kept = CsrfToken::for_request(&headers(&[(
            "cookie",
            &format!("other=1; {CSRF_COOKIE}={existing}"),
        )]));
        assert_eq!(kept.value, existing);
        assert!(kept.new_cookie.is_none());

        let fresh = CsrfToken::for_request(&headers(&[]));
        assert_eq!(fresh.value.len(), 64);
        let cookie = fresh.new_cookie.unwrap();
        assert!(cookie.contains("HttpOnly"), "{cookie}");
        assert!(cookie.contains("SameSite=Strict"), "{cookie}");
        assert!(cookie.contains("Path=/ui"), "{cookie}");
        assert_ne!(fresh.value, CsrfToken::for_request(&headers(&[])).value);
    }
}
