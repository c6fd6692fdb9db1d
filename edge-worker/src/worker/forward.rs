//! Hands a batch, byte for byte (so event ids are kept), to the origin before
//! the edge answers: the edge's 202 is the origin's 202, which means the
//! events are in the log. A transient failure gets one quick retry inside the
//! request; past that the tracker keeps the batch and sends it again (it
//! persists what is unanswered), so nothing acknowledged depends on the edge.

use std::time::Duration;

use worker::{console_error, Delay, Fetch, Headers, Method, Request, RequestInit};

/// Attempts inside one request: the first and one retry.
const ATTEMPTS: u32 = 2;
/// Wait before the retry (jittered ×0.5–1.5).
const RETRY_DELAY_MS: f64 = 150.0;
/// What the edge asks the client to wait when the origin gave no Retry-After.
pub const RETRY_AFTER_S: u32 = 5;

/// A batch as the edge passes it on.
pub struct Upload<'a> {
    pub url: String,
    pub body: &'a [u8],
    pub content_type: &'a str,
    pub user_agent: Option<String>,
    pub client_ip: Option<String>,
    /// The page's `Origin`, for the origin's allowed-origins check (the
    /// edge relays its 403 for a foreign page).
    pub page_origin: Option<String>,
    /// The secret that makes the origin trust `client_ip` for its per-IP
    /// limit (ORIGIN_EDGE_SECRET; the origin's ATTUNE_EDGE_SECRET).
    pub edge_secret: Option<&'a str>,
}

/// What the origin made of a batch.
pub enum Delivery {
    /// The origin answered with a final status (2xx: stored; 4xx other than
    /// 429: refused for good); its body is the client's answer.
    Answered { status: u16, body: Vec<u8> },
    /// Not stored now (5xx, 429 or no answer): the client should resend after
    /// `retry_after_s`. `body` is the origin's own answer, when there was one
    /// (a partial 503 lists the ids it stored).
    Unavailable {
        status: u16,
        retry_after_s: u32,
        body: Option<Vec<u8>>,
    },
}

/// True when the origin's `status` is final: stored, or refused for good.
pub fn is_final(status: u16) -> bool {
    status < 300 || (status < 500 && status != 429)
}

/// Sends `upload`, retrying a transient failure once.
pub async fn deliver(upload: &Upload<'_>) -> Delivery {
    let mut last = Delivery::Unavailable {
        status: 503,
        retry_after_s: RETRY_AFTER_S,
        body: None,
    };
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            let jitter = 0.5 + js_sys::Math::random();
            Delay::from(Duration::from_millis((RETRY_DELAY_MS * jitter) as u64)).await;
        }
        match send(upload).await {
            Ok((status, body, _)) if is_final(status) => {
                return Delivery::Answered { status, body };
            }
            Ok((status, body, retry_after)) => {
                console_error!("the origin answered {status} to a batch");
                last = Delivery::Unavailable {
                    status,
                    retry_after_s: retry_after.unwrap_or(RETRY_AFTER_S),
                    body: Some(body),
                };
                // The origin asked for a pause: do not retry at once.
                if retry_after.is_some_and(|s| s > 0) {
                    break;
                }
            }
            Err(e) => console_error!("the origin could not be reached: {e}"),
        }
    }
    last
}

/// One attempt: status, body and the Retry-After seconds.
pub async fn send(u: &Upload<'_>) -> worker::Result<(u16, Vec<u8>, Option<u32>)> {
    let headers = Headers::new();
    headers.set("content-type", u.content_type)?;
    if let Some(ua) = &u.user_agent {
        headers.set("user-agent", ua)?;
    }
    if let Some(ip) = &u.client_ip {
        headers.set("x-forwarded-for", ip)?;
    }
    if let Some(origin) = &u.page_origin {
        headers.set("origin", origin)?;
    }
    if let Some(secret) = u.edge_secret {
        headers.set("x-attune-edge", secret)?;
    }
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_body(Some(js_sys::Uint8Array::from(u.body).into()));
    let mut response = Fetch::Request(Request::new_with_init(&u.url, &init)?)
        .send()
        .await?;
    let retry_after = response
        .headers()
        .get("retry-after")?
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| s.ceil().min(3600.0) as u32);
    let body = response.bytes().await?;
    Ok((response.status_code(), body, retry_after))
}
