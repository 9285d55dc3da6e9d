//! `ApiError`: every failure a client can see, with its status and stable code.
//! Internals (SQL, paths, causes) go to the log, never into a response.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error_code::ErrorCode;
use crate::ops::OpsError;
use crate::ops::ingest::Refusal;
use crate::store::{FilterError, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("could not read the request body")]
    BadBody,
    #[error("the request body did not arrive within {}", humantime::format_duration(*.limit))]
    RequestTimeout { limit: std::time::Duration },
    #[error("request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A 404 that says what is missing.
    #[error("{0}")]
    Missing(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{message}")]
    InvalidRequest { code: ErrorCode, message: String },
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
    #[error("{0}")]
    NotReplayable(String),
    #[error("the request took longer than {}; retry later", humantime::format_duration(*.limit))]
    Timeout { limit: std::time::Duration },
    #[error("storage is unavailable; retry later")]
    StorageUnavailable(#[source] StoreError),
    #[error("internal error")]
    Internal(#[source] StoreError),
}

impl ApiError {
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Refused(refusal) => refusal.code(),
            Self::BadBody => ErrorCode::InvalidBody,
            Self::RequestTimeout { .. } => ErrorCode::RequestTimeout,
            Self::PayloadTooLarge { .. } => ErrorCode::PayloadTooLarge,
            Self::UnsupportedMediaType(_) => ErrorCode::UnsupportedMediaType,
            Self::NotFound(_) | Self::Missing(_) => ErrorCode::NotFound,
            Self::MethodNotAllowed => ErrorCode::MethodNotAllowed,
            Self::InvalidRequest { code, .. } => *code,
            Self::Unauthorized | Self::DashboardSignIn => ErrorCode::Unauthorized,
            Self::Forbidden => ErrorCode::Forbidden,
            Self::CsrfRejected => ErrorCode::CsrfRejected,
            Self::NotReplayable(_) => ErrorCode::NotReplayable,
            Self::Timeout { .. } => ErrorCode::Timeout,
            Self::StorageUnavailable(_) => ErrorCode::StorageUnavailable,
            Self::Internal(_) => ErrorCode::InternalError,
        }
    }

    pub fn status(&self) -> StatusCode {
        self.code().http_status()
    }

    /// A 400 with its own code, for query and body validation.
    pub fn invalid(code: ErrorCode, message: String) -> Self {
        Self::InvalidRequest { code, message }
    }

    /// The cause of a storage failure, for the log.
    fn store_cause(&self) -> Option<&StoreError> {
        match self {
            Self::StorageUnavailable(cause) | Self::Internal(cause) => Some(cause),
            Self::Refused(Refusal::Storage(cause)) => Some(cause),
            _ => None,
        }
    }

    /// Storage failures are the operator's to see; the client gets only the code.
    pub fn log_if_internal(&self) {
        if let Some(cause) = self.store_cause() {
            tracing::error!(
                error = cause as &dyn std::error::Error,
                code = self.code().as_str(),
                "Storage error"
            );
        }
    }

    /// What the client is told: never a cause's text.
    pub(super) fn public_message(&self) -> String {
        match self {
            Self::Refused(Refusal::Storage(_)) | Self::StorageUnavailable(_) => {
                "storage is unavailable; retry later".into()
            }
            Self::Internal(_) => "internal error".into(),
            Self::Refused(refusal) => refusal.to_string(),
            other => other.to_string(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        if error.is_unavailable() {
            Self::StorageUnavailable(error)
        } else {
            Self::Internal(error)
        }
    }
}

impl From<FilterError> for ApiError {
    fn from(error: FilterError) -> Self {
        let code = match error {
            FilterError::Status => ErrorCode::InvalidStatus,
            FilterError::Source => ErrorCode::InvalidSource,
            FilterError::Destination => ErrorCode::InvalidDestination,
            FilterError::Timestamp(_) => ErrorCode::InvalidTimestamp,
        };
        Self::invalid(code, error.to_string())
    }
}

impl From<OpsError> for ApiError {
    fn from(error: OpsError) -> Self {
        match error {
            OpsError::NotFound => Self::NotFound("event"),
            OpsError::NotReplayable(_) | OpsError::StillFiltered => {
                Self::NotReplayable(error.to_string())
            }
            OpsError::NoDelivery(_) | OpsError::UnknownDestination(_) => {
                Self::Missing(error.to_string())
            }
            OpsError::Filter(filter) => filter.into(),
            OpsError::Limit => Self::invalid(ErrorCode::InvalidLimit, error.to_string()),
            OpsError::Cursor => Self::invalid(ErrorCode::InvalidCursor, error.to_string()),
            OpsError::StatusNotReplayable => {
                Self::invalid(ErrorCode::InvalidStatus, error.to_string())
            }
            OpsError::UnboundedReplay => {
                Self::invalid(ErrorCode::ReplayNeedsFilter, error.to_string())
            }
            OpsError::Store(store) => store.into(),
        }
    }
}

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

pub fn error_body(code: ErrorCode, message: &str) -> Json<ErrorBody> {
    Json(ErrorBody {
        error: ErrorDetail {
            code: code.as_str().to_owned(),
            message: message.to_owned(),
        },
    })
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.log_if_internal();
        let code = self.code();
        let mut response =
            (self.status(), error_body(code, &self.public_message())).into_response();
        if matches!(code, ErrorCode::StorageUnavailable | ErrorCode::Timeout) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}
