//! The one error type of the HTTP edge and its JSON envelope.
//!
//! Every error answer looks the same: `{"error": {"code": "...", "message": "..."}}` with a
//! status that says whose fault it was. Internal details are logged here, once, and never sent.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// The error envelope every non-2xx JSON answer uses.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `unauthorized`, `bad_request`.
    pub code: &'static str,
    /// Human-readable explanation, safe to show.
    pub message: String,
}

/// An error answered to a client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    TooManyRequests(&'static str),
    /// A per-user rate limit ([`crate::rate`]); `Retry-After` says when to try again.
    #[error("too many {what} from this user; try again in {} s", retry_after.as_secs().max(1))]
    RateLimited {
        what: &'static str,
        retry_after: std::time::Duration,
    },
    /// The server is at a bound of its own (e.g. the probe pool); `Retry-After` says when to
    /// try again.
    #[error("too many {what} right now; try again in {} s", retry_after.as_secs().max(1))]
    Busy {
        what: &'static str,
        retry_after: std::time::Duration,
    },
    /// The server's disk is (almost) full.
    #[error("{0}")]
    InsufficientStorage(String),
    /// A dependency (read model, database) is unreachable; the message says which, no
    /// details. The cause is kept for the log line [`IntoResponse`] writes (once).
    #[error("{what} is unavailable")]
    Unavailable {
        what: &'static str,
        #[source]
        cause: Option<anyhow_like::BoxError>,
    },
    /// A bug or an unexpected failure; the cause is logged, the client sees a generic message.
    #[error("internal error")]
    Internal(#[source] anyhow_like::BoxError),
}

/// A boxed error without pulling `anyhow` into a library.
pub mod anyhow_like {
    pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;
}

impl ApiError {
    pub fn internal(e: impl Into<anyhow_like::BoxError>) -> Self {
        ApiError::Internal(e.into())
    }

    /// `what` is unavailable because of `cause` (logged when the error is answered).
    pub fn unavailable(what: &'static str, cause: impl Into<anyhow_like::BoxError>) -> Self {
        ApiError::Unavailable {
            what,
            cause: Some(cause.into()),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooManyRequests(_) | ApiError::RateLimited { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::Unavailable { .. } | ApiError::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::Unprocessable(_) => "unprocessable",
            ApiError::TooManyRequests(_) | ApiError::RateLimited { .. } => "too_many_requests",
            ApiError::Unavailable { .. } => "unavailable",
            ApiError::Busy { .. } => "busy",
            ApiError::InsufficientStorage(_) => "insufficient_storage",
            ApiError::Internal(_) => "internal",
        }
    }
}

/// Renders the envelope for a status and message (also used by middleware rejections).
pub fn error_response(status: StatusCode, code: &'static str, message: String) -> Response {
    let body = ErrorBody {
        error: ErrorDetail { code, message },
    };
    let bytes = serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec());
    let mut res = (status, bytes).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::Internal(e) => tracing::error!(error = %e, "internal error"),
            ApiError::Unavailable {
                what,
                cause: Some(cause),
            } => tracing::warn!(dependency = what, error = %cause, "unavailable"),
            ApiError::Unavailable { what, cause: None } => {
                tracing::warn!(dependency = what, "unavailable");
            }
            _ => {}
        }
        let status = self.status();
        let mut res = error_response(status, self.code(), self.to_string());
        if status == StatusCode::UNAUTHORIZED {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let ApiError::RateLimited { retry_after, .. } | ApiError::Busy { retry_after, .. } =
            &self
        {
            let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        } else if status == StatusCode::SERVICE_UNAVAILABLE
            || status == StatusCode::TOO_MANY_REQUESTS
        {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("3"));
        }
        res
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    /// A JSON body the extractor refused: 413 when it was larger than the route's limit, 400
    /// for everything else (malformed, wrong types, wrong content type).
    fn from(e: axum::extract::rejection::JsonRejection) -> Self {
        use axum::extract::rejection::JsonRejection as J;
        match e {
            J::BytesRejection(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::PayloadTooLarge("the request body is too large".into())
            }
            other => ApiError::BadRequest(other.body_text()),
        }
    }
}

impl From<jobpulse_domain::IdError> for ApiError {
    fn from(e: jobpulse_domain::IdError) -> Self {
        ApiError::BadRequest(e.to_string())
    }
}

impl From<jobpulse_store::StoreError> for ApiError {
    fn from(e: jobpulse_store::StoreError) -> Self {
        ApiError::unavailable("the read model", e)
    }
}

impl From<jobpulse_db::DbError> for ApiError {
    fn from(e: jobpulse_db::DbError) -> Self {
        use jobpulse_db::DbError as D;
        match e {
            D::NotFound(_) => ApiError::NotFound,
            D::IllegalTransition { from, to } => {
                ApiError::Conflict(format!("cannot go from {from} to {to}"))
            }
            D::Conflict(m) => ApiError::Conflict(m),
            D::Duplicate(what) => ApiError::Conflict(format!("{what} is already taken")),
            D::Invalid(m) => ApiError::BadRequest(m),
            D::LeaseLost | D::Cancelled => {
                ApiError::Conflict("the task changed while the request ran; try again".into())
            }
            other if other.is_transient() => ApiError::unavailable("the database", other),
            other => ApiError::internal(other),
        }
    }
}

impl From<jobpulse_media::StorageError> for ApiError {
    fn from(e: jobpulse_media::StorageError) -> Self {
        match e {
            jobpulse_media::StorageError::NotFound { .. } => ApiError::NotFound,
            jobpulse_media::StorageError::TooLarge { .. } => {
                ApiError::PayloadTooLarge("the file is too large".into())
            }
            other => ApiError::unavailable("media storage", other),
        }
    }
}
