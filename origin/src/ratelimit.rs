//! Rate limits per key (site key, API key, user) and per client IP; a caller
//! over its limit gets 429 with Retry-After.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::error::ApiError;
use crate::AppState;

/// The two limiters.
pub struct RateLimits {
    per_key: DefaultKeyedRateLimiter<String>,
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
}

fn quota(per_second: u32) -> Quota {
    let n = NonZeroU32::new(per_second.max(1)).expect("at least 1");
    // A burst of one second's worth.
    Quota::per_second(n).allow_burst(n)
}

fn too_many(what: &'static str, wait: std::time::Duration) -> ApiError {
    metrics::counter!("attune_rate_limited_total", "by" => what).increment(1);
    ApiError::new(
        axum::http::StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!("too many requests for this {what}; retry after the Retry-After delay"),
    )
    .retry_after(wait.as_secs().max(1))
}

impl RateLimits {
    /// Limits in requests per second.
    pub fn new(per_key: u32, per_ip: u32) -> Self {
        RateLimits {
            per_key: DefaultKeyedRateLimiter::keyed(quota(per_key)),
            per_ip: DefaultKeyedRateLimiter::keyed(quota(per_ip)),
        }
    }

    /// Counts one request against `key`.
    pub fn check_key(&self, key: &str) -> Result<(), ApiError> {
        self.per_key
            .check_key(&key.to_owned())
            .map_err(|n| too_many("key", n.wait_time_from(DefaultClock::default().now())))
    }

    /// Counts one request against `ip`.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), ApiError> {
        self.per_ip.check_key(&ip).map_err(|n| {
            too_many(
                "IP address",
                n.wait_time_from(DefaultClock::default().now()),
            )
        })
    }

    /// Drops idle keys so memory stays bounded (called periodically).
    pub fn forget_idle(&self) {
        self.per_key.retain_recent();
        self.per_ip.retain_recent();
    }
}

/// The header a trusted edge proves itself with (the shared secret).
pub const EDGE_SECRET_HEADER: &str = "x-attune-edge";

/// The client's address as a trusted edge reports it: the first entry of
/// `X-Forwarded-For`, only when the request carries the edge's secret
/// (compared in constant time). From anyone else the header is ignored, so
/// a client cannot choose its own rate-limit bucket.
pub fn forwarded_client(edge_secret: Option<&[u8]>, headers: &HeaderMap) -> Option<IpAddr> {
    use subtle::ConstantTimeEq;
    let secret = edge_secret?;
    let presented = headers.get(EDGE_SECRET_HEADER)?.as_bytes();
    if !bool::from(presented.ct_eq(secret)) {
        return None;
    }
    let forwarded = headers.get("x-forwarded-for")?.to_str().ok()?;
    forwarded.split(',').next()?.trim().parse().ok()
}

/// Tower middleware: the per-IP limit, before any work is done. Behind a
/// trusted edge every reader would share the edge's address; the edge's
/// forwarded client address counts instead.
pub async fn per_ip(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let client = forwarded_client(state.edge_secret.as_deref(), request.headers())
        .unwrap_or_else(|| peer.ip());
    match state.rate_limits.check_ip(client) {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn only_the_edge_with_its_secret_names_the_client() {
        let secret = Some(&b"edge-secret-0123"[..]);
        let from_edge = headers(&[
            (EDGE_SECRET_HEADER, "edge-secret-0123"),
            ("x-forwarded-for", "203.0.113.7, 10.0.0.1"),
        ]);
        assert_eq!(
            forwarded_client(secret, &from_edge),
            Some("203.0.113.7".parse().unwrap())
        );
        let forged = headers(&[
            (EDGE_SECRET_HEADER, "guess"),
            ("x-forwarded-for", "203.0.113.7"),
        ]);
        assert_eq!(forwarded_client(secret, &forged), None);
        let bare = headers(&[("x-forwarded-for", "203.0.113.7")]);
        assert_eq!(forwarded_client(secret, &bare), None);
        assert_eq!(
            forwarded_client(None, &from_edge),
            None,
            "no edge configured"
        );
        let junk = headers(&[
            (EDGE_SECRET_HEADER, "edge-secret-0123"),
            ("x-forwarded-for", "not an address"),
        ]);
        assert_eq!(forwarded_client(secret, &junk), None);
    }
}
