//! Forwards a batch, byte for byte (so event ids are kept), to the origin after
//! the reply, retrying network errors, 5xx and 429 with jittered backoff.

use std::time::Duration;

use worker::{console_error, Context, Delay, Fetch, Headers, Method, Request, RequestInit};

const ATTEMPTS: u32 = 6;
const FIRST_DELAY_MS: f64 = 200.0;
const MAX_RETRY_AFTER_MS: f64 = 5000.0;

/// Starts the forwarding; the worker stays alive for it (`waitUntil`).
pub fn spawn(
    ctx: &Context,
    url: String,
    body: Vec<u8>,
    content_type: String,
    user_agent: Option<String>,
    client_ip: Option<String>,
) {
    ctx.wait_until(async move {
        for attempt in 0..ATTEMPTS {
            let wait_ms = match send(&url, &body, &content_type, &user_agent, &client_ip).await {
                Ok((status, _)) if status < 300 => return,
                Ok((status, retry_after)) if status == 429 || status >= 500 => retry_after,
                Ok((status, _)) => {
                    console_error!(
                        "the origin refused a forwarded batch with {status}; not retrying"
                    );
                    return;
                }
                Err(e) => {
                    console_error!("forwarding to the origin failed: {e}");
                    None
                }
            };
            let backoff =
                FIRST_DELAY_MS * 2f64.powi(attempt as i32) * (0.5 + js_sys::Math::random());
            let delay = wait_ms.map_or(backoff, |ms| ms.min(MAX_RETRY_AFTER_MS));
            Delay::from(Duration::from_millis(delay as u64)).await;
        }
        console_error!("gave up forwarding a batch after {ATTEMPTS} attempts");
    });
}

async fn send(
    url: &str,
    body: &[u8],
    content_type: &str,
    user_agent: &Option<String>,
    client_ip: &Option<String>,
) -> worker::Result<(u16, Option<f64>)> {
    let headers = Headers::new();
    headers.set("content-type", content_type)?;
    if let Some(ua) = user_agent {
        headers.set("user-agent", ua)?;
    }
    if let Some(ip) = client_ip {
        headers.set("x-forwarded-for", ip)?;
    }
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_body(Some(js_sys::Uint8Array::from(body).into()));
    let response = Fetch::Request(Request::new_with_init(url, &init)?)
        .send()
        .await?;
    let retry_after = response
        .headers()
        .get("retry-after")?
        .and_then(|s| s.parse::<f64>().ok())
        .map(|s| s * 1000.0);
    Ok((response.status_code(), retry_after))
}
