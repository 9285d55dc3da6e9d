//! `ApiError`: every failure a client can see, with its status and stable code.
//! Internals (SQL, paths, causes) go to the log, never into a response.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::domain::lifecycle::EventStatus;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("source must be 1-64 characters of A-Z a-z 0-9 _ - .")]
    InvalidSource,
    #[error("{0}")]
    MissingIdempotencyKey(String),
    #[error("{0}")]
    InvalidIdempotencyKey(String),
    #[error("request body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("could not read the request body")]
    BadBody,
    #[error("the request body did not arrive within {}", humantime::format_duration(*.limit))]
    RequestTimeout { limit: std::time::Duration },
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("source {0:?} is not configured")]
    UnknownSource(String),
    #[error("signature missing or invalid")]
    InvalidSignature,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{message}")]
    InvalidRequest { code: &'static str, message: String },
    #[error("missing or wrong bearer token")]
    Unauthorized,
    #[error(
        "sign in by opening /ui?token=<HOOKRELAY_ADMIN_TOKEN> once, or send Authorization: Bearer <token>"
    )]
    DashboardSignIn,
    #[error(
        "the admin API answers clients on this machine only; set HOOKRELAY_ADMIN_TOKEN to allow others"
    )]
    Forbidden,
    #[error("this form did not come from the dashboard page; reload the page and try again")]
    CsrfRejected,
    #[error("a {0} event cannot be replayed; only delivered or dead_lettered ones")]
    NotReplayable(EventStatus),
    #[error("storage is unavailable; retry later")]
    StorageUnavailable(#[source] StoreError),
    #[error("internal error")]
    Internal(#[source] StoreError),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidSource
            | Self::MissingIdempotencyKey(_)
            | Self::InvalidIdempotencyKey(_)
            | Self::InvalidJson(_)
            | Self::BadBody => StatusCode::BAD_REQUEST,
            Self::InvalidRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized | Self::DashboardSignIn => StatusCode::UNAUTHORIZED,
            Self::Forbidden | Self::CsrfRejected => StatusCode::FORBIDDEN,
            Self::NotReplayable(_) => StatusCode::CONFLICT,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RequestTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::NotFound(_) | Self::UnknownSource(_) => StatusCode::NOT_FOUND,
            Self::InvalidSignature => StatusCode::UNAUTHORIZED,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::StorageUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidSource => "invalid_source",
            Self::MissingIdempotencyKey(_) => "missing_idempotency_key",
            Self::InvalidIdempotencyKey(_) => "invalid_idempotency_key",
            Self::InvalidJson(_) => "invalid_json",
            Self::InvalidRequest { code, .. } => code,
            Self::Unauthorized | Self::DashboardSignIn => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::CsrfRejected => "csrf_rejected",
            Self::NotReplayable(_) => "not_replayable",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::BadBody => "invalid_body",
            Self::RequestTimeout { .. } => "request_timeout",
            Self::NotFound(_) => "not_found",
            Self::UnknownSource(_) => "unknown_source",
            Self::InvalidSignature => "invalid_signature",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::StorageUnavailable(_) => "storage_unavailable",
            Self::Internal(_) => "internal_error",
        }
    }
}

impl ApiError {
    /// A 400 with its own code, for query and body validation.
    pub fn invalid(code: &'static str, message: String) -> Self {
        Self::InvalidRequest { code, message }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Invalid(_) => Self::Internal(error),
            _ => Self::StorageUnavailable(error),
        }
    }
}

/// Which error a response carries, for the request log and metrics.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

/// The error body every route shares: `{"error": {"code", "message"}}`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable, e.g. `missing_idempotency_key`.
    pub code: String,
    /// For people; never contains internals.
    pub message: String,
}

pub fn error_body(code: &str, message: &str) -> Json<ErrorBody> {
    Json(ErrorBody {
        error: ErrorDetail {
            code: code.to_owned(),
            message: message.to_owned(),
        },
    })
}

impl ApiError {
    /// Storage failures are the operator's to see; the client gets only the code.
    pub fn log_if_internal(&self) {
        if let Self::StorageUnavailable(cause) | Self::Internal(cause) = self {
            tracing::error!(
                error = cause as &dyn std::error::Error,
                code = self.code(),
                "Storage error"
            );
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.log_if_internal();
        let mut response =
            (self.status(), error_body(self.code(), &self.to_string())).into_response();
        response.extensions_mut().insert(ErrorCode(self.code()));
        if matches!(self, Self::StorageUnavailable(_)) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}
