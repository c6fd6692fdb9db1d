//! Per-client rate limit at the edge: Cloudflare's Rate Limiting binding
//! `CLIENT_LIMIT`, keyed by the reader's address (`CF-Connecting-IP`, which
//! Cloudflare sets), answered as the origin answers a limit. Without the
//! binding the edge does not limit (the origin still does, per reader when
//! the edge is trusted).

use worker::{Env, Request, Response, Result};

use super::error;

/// The binding's name in wrangler.toml.
const BINDING: &str = "CLIENT_LIMIT";
/// The binding counts over 10 or 60 s windows; a client over its limit
/// waits at most this long.
const RETRY_AFTER_S: &str = "10";

/// A 429 reply when `req`'s client is over its limit, else `None`.
pub async fn check(req: &Request, env: &Env) -> Result<Option<Response>> {
    let Ok(limiter) = env.rate_limiter(BINDING) else {
        return Ok(None);
    };
    let client = req
        .headers()
        .get("cf-connecting-ip")?
        .unwrap_or_else(|| "unknown".into());
    if limiter.limit(client).await?.success {
        return Ok(None);
    }
    let mut resp = error(
        429,
        "rate_limited",
        "too many requests for this client; retry after the Retry-After delay",
        None,
    )?;
    resp.headers_mut().set("retry-after", RETRY_AFTER_S)?;
    Ok(Some(resp))
}
