//! Rate limits per key (site key, API key, user) and per client IP; a caller
//! over its limit gets 429 with Retry-After.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;

use axum::extract::{ConnectInfo, Request, State};
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

/// Tower middleware: the per-IP limit, before any work is done.
pub async fn per_ip(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    match state.rate_limits.check_ip(peer.ip()) {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}
