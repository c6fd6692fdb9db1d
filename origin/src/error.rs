//! One error type for every endpoint: a status, a stable code, a message that
//! says what to do, and optionally the field at fault and Retry-After.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

/// The JSON body of every error reply.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `out_of_range`.
    pub error: &'static str,
    /// What went wrong and what to do.
    pub message: String,
    /// The offending field, e.g. `events[3].depth_pct`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Ids of the events that were stored despite the error (partial ingest).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accepted: Option<Vec<String>>,
    /// Ids of the events that were not stored and must be resent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejected: Option<Vec<String>>,
}

/// Longest message an error carries: messages may quote the input, and a
/// reply must not echo a 200 KB value back.
pub const MAX_MESSAGE_BYTES: usize = 512;
/// Longest field path an error carries.
pub const MAX_FIELD_BYTES: usize = 128;

/// `s` cut to at most `max` bytes at a character boundary, `…` marking a cut.
fn bounded(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max - '…'.len_utf8();
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

/// An error reply.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Body (boxed: errors travel in `Result`s on every hot path).
    pub body: Box<ErrorBody>,
    /// Seconds for the Retry-After header (429 and 503).
    pub retry_after_s: Option<u64>,
}

impl ApiError {
    /// An error with a status, code and message.
    pub fn new(status: StatusCode, error: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            body: Box::new(ErrorBody {
                error,
                message: bounded(message.into(), MAX_MESSAGE_BYTES),
                field: None,
                accepted: None,
                rejected: None,
            }),
            retry_after_s: None,
        }
    }

    /// Names the field at fault.
    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.body.field = Some(bounded(field.into(), MAX_FIELD_BYTES));
        self
    }

    /// Adds Retry-After.
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after_s = Some(seconds);
        self
    }

    /// 400 with a code and message.
    pub fn bad_request(error: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error, message)
    }

    /// 401.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 503 with Retry-After: a backend is down or full.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message).retry_after(1)
    }

    /// 500 for a backend failure that is not the caller's fault.
    pub fn internal(context: &str, e: impl std::fmt::Display) -> Self {
        tracing::error!("{context}: {e}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("{context}; the error is logged on the server"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(*self.body)).into_response();
        if let Some(s) = self.retry_after_s {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        response
    }
}

/// Store and log failures become 503: the request may be retried.
impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        tracing::warn!("store unavailable: {e}");
        ApiError::unavailable(format!(
            "the profile store is unavailable ({e}); retry later"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoed_input_is_cut_at_a_character_boundary() {
        let huge = format!("the id `{}` is bad", "é".repeat(100_000));
        let e = ApiError::bad_request("bad", huge).field("x".repeat(10_000));
        assert!(
            e.body.message.len() <= MAX_MESSAGE_BYTES,
            "{}",
            e.body.message.len()
        );
        assert!(e.body.message.starts_with("the id `é") && e.body.message.ends_with('…'));
        assert_eq!(e.body.field.as_ref().unwrap().len(), MAX_FIELD_BYTES);
        let short = ApiError::bad_request("bad", "k must be 1..=500");
        assert_eq!(short.body.message, "k must be 1..=500");
    }
}
