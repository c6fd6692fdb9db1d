//! Content type → decoder, and attune-core's decode errors → HTTP statuses.

use attune_core::codec::{decode, format_of, DecodeError};
use attune_core::{Batch, Limits};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};

use crate::error::ApiError;

/// Decodes the body by its Content-Type.
pub fn decode_body(headers: &HeaderMap, body: &[u8], limits: &Limits) -> Result<Batch, ApiError> {
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(format) = format_of(content_type) else {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "Content-Type `{content_type}` is not accepted: send application/msgpack \
                 (the tracker's format) or application/json"
            ),
        ));
    };
    let decoded = decode(body, limits, format);
    decoded.map_err(|e| {
        metrics::counter!("attune_events_rejected_total", "reason" => e.code()).increment(1);
        decode_error(e)
    })
}

/// The status attune-core gives the error (the edge answers the same).
fn decode_error(e: DecodeError) -> ApiError {
    let status = StatusCode::from_u16(e.status()).expect("a valid status");
    let mut err = ApiError::new(status, e.code(), e.to_string());
    if let Some(field) = e.field() {
        err = err.field(field);
    }
    err
}
