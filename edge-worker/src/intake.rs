//! What `POST /v1/collect` makes of a request before anything is stored: the
//! batch, read by attune-core's rules exactly as the origin reads it (media
//! type, Content-Encoding, decoding and limits, the edge's site), or the
//! refusal the origin would give. Plain Rust, fuzzed natively.

use attune_core::codec::{decode, decoded_body, format_of};
use attune_core::{Batch, Limits};

/// Why the edge refuses a batch: the origin's status, code and words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
}

/// The batch in a body, and the bytes to forward (inflated when it came
/// gzipped, unchanged otherwise).
pub fn read_batch(
    content_type: &str,
    content_encoding: Option<&str>,
    body: &[u8],
    limits: &Limits,
    site_key: &str,
) -> Result<(Batch, Vec<u8>), Refusal> {
    let Some(format) = format_of(content_type) else {
        return Err(Refusal {
            status: 415,
            code: "unsupported_media_type",
            message: format!(
                "Content-Type `{content_type}` is not accepted: send application/msgpack or application/json"
            ),
            field: None,
        });
    };
    let body =
        decoded_body(content_encoding, body, limits.max_batch_bytes).map_err(|e| Refusal {
            status: e.status(),
            code: e.code(),
            message: e.to_string(),
            field: None,
        })?;
    let batch = decode(&body, limits, format).map_err(|e| Refusal {
        status: e.status(),
        code: e.code(),
        message: e.to_string(),
        field: e.field().map(Into::into),
    })?;
    if batch.site_key != site_key {
        return Err(Refusal {
            status: 403,
            code: "forbidden",
            message: format!(
                "this edge serves site `{site_key}`, not `{}`",
                batch.site_key
            ),
            field: Some("site_key".into()),
        });
    }
    Ok((batch, body.into_owned()))
}
