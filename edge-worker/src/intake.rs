//! What `POST /v1/collect` makes of a request before anything is stored: the
//! batch, read by attune-core's rules exactly as the origin reads it (media
//! type, Content-Encoding, decoding and limits, the site, the page's origin,
//! the user token), or the refusal the origin would give. Plain Rust, fuzzed
//! natively.

use attune_core::access::{origin_allowed, origin_refused, verify_token};
use attune_core::codec::{decode, decoded_body, format_of};
use attune_core::{Batch, Limits};

/// A collect request as it arrived.
pub struct Request<'a> {
    pub content_type: &'a str,
    pub content_encoding: Option<&'a str>,
    /// The page's `Origin` header (browsers send it with every POST).
    pub page_origin: Option<&'a str>,
    pub body: &'a [u8],
}

/// What the edge knows of its site. The origin checks the same; the edge
/// checks what it has the secrets for, so that nothing it acknowledges is
/// refused later (with `FORWARD = "queue"` its 202 comes first).
pub struct SiteRules<'a> {
    pub site_key: &'a str,
    /// `ALLOWED_ORIGINS`; `None`: left to the origin.
    pub allowed_origins: Option<&'a [String]>,
    /// `TOKEN_SECRET` and `RETIRED_TOKEN_SECRETS`; empty: left to the origin.
    pub token_secrets: &'a [Vec<u8>],
}

/// Why the edge refuses a batch: the origin's status, code and words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
}

/// The batch in a request, and the bytes to forward (inflated when it came
/// gzipped, unchanged otherwise).
pub fn read_batch(
    req: &Request,
    site: &SiteRules,
    limits: &Limits,
    now_s: u64,
) -> Result<(Batch, Vec<u8>), Refusal> {
    let Some(format) = format_of(req.content_type) else {
        return Err(Refusal {
            status: 415,
            code: "unsupported_media_type",
            message: format!(
                "Content-Type `{}` is not accepted: send application/msgpack or application/json",
                req.content_type
            ),
            field: None,
        });
    };
    let body =
        decoded_body(req.content_encoding, req.body, limits.max_batch_bytes).map_err(|e| {
            Refusal {
                status: e.status(),
                code: e.code(),
                message: e.to_string(),
                field: None,
            }
        })?;
    let batch = decode(&body, limits, format).map_err(|e| Refusal {
        status: e.status(),
        code: e.code(),
        message: e.to_string(),
        field: e.field().map(Into::into),
    })?;
    // Another site's key is unknown here, as at an origin without it.
    if batch.site_key != site.site_key {
        return Err(Refusal {
            status: 401,
            code: "unauthorized",
            message: format!(
                "unknown site key `{}`: this edge serves site `{}`",
                batch.site_key, site.site_key
            ),
            field: Some("site_key".into()),
        });
    }
    if let (Some(allowed), Some(origin)) = (site.allowed_origins, req.page_origin) {
        if !origin_allowed(allowed, origin) {
            return Err(Refusal {
                status: 403,
                code: "forbidden",
                message: origin_refused(origin, site.site_key),
                field: None,
            });
        }
    }
    if let (Some(token), false) = (&batch.user_token, site.token_secrets.is_empty()) {
        verify_token(token, site.site_key, site.token_secrets, now_s).map_err(|e| Refusal {
            status: 401,
            code: "unauthorized",
            message: e.to_string(),
            field: Some("user_token".into()),
        })?;
    }
    Ok((batch, body.into_owned()))
}
