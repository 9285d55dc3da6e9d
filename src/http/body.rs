//! Every request body is read here, before any handler, within a size limit and a
//! deadline: a declared length over the limit is refused before a byte is read (so
//! `Expect: 100-continue` gets the 413 instead of `100 Continue`), and a client that
//! sends its body too slowly is answered 408 and disconnected.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt as _, LengthLimitError, Limited};

use super::error::ApiError;

#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    pub max_body: usize,
    pub read_timeout: Duration,
}

pub async fn read_body(State(limits): State<BodyLimits>, request: Request, next: Next) -> Response {
    let too_large = ApiError::PayloadTooLarge {
        limit: limits.max_body,
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u128>().ok());
    if declared.is_some_and(|length| length > limits.max_body as u128) {
        return closing(too_large);
    }
    let (parts, body) = request.into_parts();
    let read = Limited::new(body, limits.max_body).collect();
    let bytes = match tokio::time::timeout(limits.read_timeout, read).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(error)) if error.downcast_ref::<LengthLimitError>().is_some() => {
            return closing(too_large);
        }
        Ok(Err(_)) => return ApiError::BadBody.into_response(),
        Err(_) => {
            return closing(ApiError::RequestTimeout {
                limit: limits.read_timeout,
            });
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// The rest of the body is not read, so the connection cannot carry another request.
fn closing(error: ApiError) -> Response {
    let mut response = error.into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}
