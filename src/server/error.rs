//! The contract's JSON error shape, and conversions from everything that can fail.

use crate::api::{ErrorBody, ErrorResponse, Lease, LeaseRefusal};
use crate::broker::BrokerError;
use crate::error_code::{ErrorClass, ErrorCode};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// An error answer: `{"error": {"code", "reason", "message"}}` with the
/// status of its class.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The status class (`error.code`), which sets the HTTP status.
    pub class: ErrorClass,
    /// The specific reason (`error.reason`).
    pub code: ErrorCode,
    /// One sentence a human can act on.
    pub message: String,
    /// For `lease_conflict`: the leases in the way, answered beside
    /// `error` as `conflicts` ([`LeaseRefusal`]).
    pub conflicts: Option<Vec<Lease>>,
}

impl ApiError {
    /// An error answer in its reason's usual class.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError::in_class(code.class(), code, message)
    }

    /// An error answer in a class other than its reason's usual one (a token
    /// refused on an MCP route is `forbidden`, not `unauthorized`).
    pub fn in_class(class: ErrorClass, code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            class,
            code,
            message: message.into(),
            conflicts: None,
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.class.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl From<BrokerError> for ApiError {
    fn from(e: BrokerError) -> Self {
        let conflicts = (e.code == ErrorCode::LeaseConflict).then_some(e.conflicts);
        ApiError {
            conflicts,
            ..ApiError::new(e.code, e.message)
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let error = ErrorBody {
            code: self.class.as_str().to_string(),
            reason: Some(self.code.as_str().to_string()),
            message: self.message,
        };
        match self.conflicts {
            Some(conflicts) => (status, Json(LeaseRefusal { error, conflicts })).into_response(),
            None => (status, Json(ErrorResponse { error })).into_response(),
        }
    }
}

/// The answer for any path the API does not have.
pub async fn fallback(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        ErrorCode::UnknownRoute,
        format!(
            "no route {}; see GET /openapi.json or docs/api.md for the API",
            uri.path()
        ),
    )
}
