//! Tower middleware: attune-core's `Content-Encoding` rule, the one the edge
//! applies too. Refuses what the rule refuses with the JSON error shape, and
//! hands tower-http's decompression (after it) a normalised name: `GZIP` and
//! `x-gzip` become `gzip`, `identity` goes away.

use attune_core::codec::{content_encoding, ContentEncoding};
use axum::extract::Request;
use axum::http::header::CONTENT_ENCODING;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// Checks and normalises `Content-Encoding` before the body is read.
pub async fn normalise(mut request: Request, next: Next) -> Response {
    let header = request.headers().get(CONTENT_ENCODING);
    let value = header.map(|v| v.to_str().unwrap_or("\u{fffd}"));
    match content_encoding(value) {
        Ok(ContentEncoding::Identity) => {
            request.headers_mut().remove(CONTENT_ENCODING);
        }
        Ok(ContentEncoding::Gzip) => {
            request
                .headers_mut()
                .insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        Err(e) => {
            metrics::counter!("attune_events_rejected_total", "reason" => e.code()).increment(1);
            let status = StatusCode::from_u16(e.status()).expect("a valid status");
            return ApiError::new(status, e.code(), e.to_string()).into_response();
        }
    }
    next.run(request).await
}
