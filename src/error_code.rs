//! Every error code a client can see, as a closed set: adding one means adding it
//! here, and the README's error table is checked against this list by a test.

use std::fmt;

use http::StatusCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    InvalidSource,
    MissingIdempotencyKey,
    InvalidIdempotencyKey,
    InvalidEventType,
    InvalidJson,
    InvalidStatus,
    InvalidDestination,
    InvalidTimestamp,
    InvalidLimit,
    InvalidCursor,
    InvalidQuery,
    InvalidBody,
    ReplayNeedsFilter,
    InvalidSignature,
    Unauthorized,
    Forbidden,
    CsrfRejected,
    NotFound,
    UnknownSource,
    MethodNotAllowed,
    RequestTimeout,
    NotReplayable,
    PayloadTooLarge,
    UnsupportedMediaType,
    InternalError,
    StorageUnavailable,
    Timeout,
}

impl ErrorCode {
    #[cfg(test)]
    pub const ALL: [ErrorCode; 27] = [
        Self::InvalidSource,
        Self::MissingIdempotencyKey,
        Self::InvalidIdempotencyKey,
        Self::InvalidEventType,
        Self::InvalidJson,
        Self::InvalidStatus,
        Self::InvalidDestination,
        Self::InvalidTimestamp,
        Self::InvalidLimit,
        Self::InvalidCursor,
        Self::InvalidQuery,
        Self::InvalidBody,
        Self::ReplayNeedsFilter,
        Self::InvalidSignature,
        Self::Unauthorized,
        Self::Forbidden,
        Self::CsrfRejected,
        Self::NotFound,
        Self::UnknownSource,
        Self::MethodNotAllowed,
        Self::RequestTimeout,
        Self::NotReplayable,
        Self::PayloadTooLarge,
        Self::UnsupportedMediaType,
        Self::InternalError,
        Self::StorageUnavailable,
        Self::Timeout,
    ];

    /// The HTTP status every answer with this code has.
    pub fn http_status(self) -> StatusCode {
        use ErrorCode::*;
        match self {
            InvalidSource
            | MissingIdempotencyKey
            | InvalidIdempotencyKey
            | InvalidEventType
            | InvalidJson
            | InvalidStatus
            | InvalidDestination
            | InvalidTimestamp
            | InvalidLimit
            | InvalidCursor
            | InvalidQuery
            | InvalidBody
            | ReplayNeedsFilter => StatusCode::BAD_REQUEST,
            InvalidSignature | Unauthorized => StatusCode::UNAUTHORIZED,
            Forbidden | CsrfRejected => StatusCode::FORBIDDEN,
            NotFound | UnknownSource => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            NotReplayable => StatusCode::CONFLICT,
            PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            InternalError => StatusCode::INTERNAL_SERVER_ERROR,
            StorageUnavailable | Timeout => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidSource => "invalid_source",
            Self::MissingIdempotencyKey => "missing_idempotency_key",
            Self::InvalidIdempotencyKey => "invalid_idempotency_key",
            Self::InvalidEventType => "invalid_event_type",
            Self::InvalidJson => "invalid_json",
            Self::InvalidStatus => "invalid_status",
            Self::InvalidDestination => "invalid_destination",
            Self::InvalidTimestamp => "invalid_timestamp",
            Self::InvalidLimit => "invalid_limit",
            Self::InvalidCursor => "invalid_cursor",
            Self::InvalidQuery => "invalid_query",
            Self::InvalidBody => "invalid_body",
            Self::ReplayNeedsFilter => "replay_needs_filter",
            Self::InvalidSignature => "invalid_signature",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::CsrfRejected => "csrf_rejected",
            Self::NotFound => "not_found",
            Self::UnknownSource => "unknown_source",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::RequestTimeout => "request_timeout",
            Self::NotReplayable => "not_replayable",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::InternalError => "internal_error",
            Self::StorageUnavailable => "storage_unavailable",
            Self::Timeout => "timeout",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_in_the_readme_error_table() {
        let readme = include_str!("../README.md");
        for code in ErrorCode::ALL {
            assert!(
                readme.contains(&format!("`{}`", code.as_str())),
                "{code} is missing from the README's error table"
            );
        }
        let unique: std::collections::HashSet<_> =
            ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(unique.len(), ErrorCode::ALL.len());
    }
}
