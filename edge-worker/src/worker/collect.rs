//! `POST /v1/collect`: the tracker's batch, stored at the origin and applied to
//! the person's edge state before the answer.

use attune_core::routing::anonymous_user;
use worker::{console_error, Env, Request, Response, Result};

use super::{error, forward, now_ms, queue, recommendations, Config, ForwardTo};
use crate::candidates::cold_list;
use crate::intake;
use crate::state::{cookie_value, set_cookie, EdgeState};

pub async fn handle(mut req: Request, config: &Config, env: &Env) -> Result<Response> {
    let headers = req.headers().clone();
    let content_type = headers.get("content-type")?.unwrap_or_default();
    // A body cut short (client gone, connection lost) is the client's
    // error, answered as the origin answers it, not a 500.
    let Ok(body) = req.bytes().await else {
        return error(
            400,
            "unreadable_body",
            "the body could not be read in full: send the batch again",
            None,
        );
    };
    let encoding = headers.get("content-encoding")?;
    let page_origin = headers.get("origin")?;
    let request = intake::Request {
        content_type: &content_type,
        content_encoding: encoding.as_deref(),
        page_origin: page_origin.as_deref(),
        body: &body,
    };
    let site = intake::SiteRules {
        site_key: &config.site_key,
        allowed_origins: config.allowed_origins.as_deref(),
        token_secrets: &config.token_secrets,
    };
    let now_s = (now_ms() / 1000).max(0) as u64;
    let (batch, body) = match intake::read_batch(&request, &site, &config.limits, now_s) {
        Ok(read) => read,
        Err(r) => return error(r.status, r.code, r.message, r.field),
    };

    let now = now_ms();
    // Client clocks drift; the edge's decay runs on its own clock.
    let skew = now - batch.sent_at_ms;
    // State from another browser, another site, or tampered: start fresh.
    let mut state = headers
        .get("cookie")?
        .as_deref()
        .and_then(cookie_value)
        .and_then(|v| EdgeState::open(v, &config.state_secret).ok())
        .filter(|s| s.site == batch.site_key && s.anonymous_id == batch.anonymous_id)
        .unwrap_or_else(|| EdgeState::new(&batch.site_key, &batch.anonymous_id));
    // A newcomer's first clicks are on items from the cold list they were
    // shown: the one of their segments (the page they landed from is on
    // their page view).
    let candidates =
        match recommendations::cached(config, &anonymous_user(&batch.anonymous_id)).await {
            Some(list) => Some(list),
            None => {
                let referrer = batch
                    .events
                    .iter()
                    .find_map(|e| e.context.as_ref()?.referrer.as_deref());
                let user_agent = headers.get("user-agent")?;
                let cold = cold_list(user_agent.as_deref(), referrer, now);
                recommendations::cached(config, &cold.cache_name()).await
            }
        };
    let weights = &config.weights;
    for e in &batch.events {
        let Some(item) = &e.item else { continue };
        let tags = candidates
            .as_ref()
            .and_then(|c| c.tags_of(item))
            .unwrap_or(&[]);
        state.record(
            e.kind(),
            // A click on what a rail served is the strongest positive.
            weights.event_weight(e),
            item,
            tags,
            e.ts_ms.saturating_add(skew),
            config.half_life,
        );
    }
    state.prune(now, config.half_life);

    // 202 only once the events are durable: in the origin's log, or in the
    // queue. The cookie moves on only then, so a resent batch is counted once
    // in the edge state too.
    let upload = forward::Upload {
        url: format!("{}/v1/events", config.origin_url),
        body: &body,
        content_type: &content_type,
        user_agent: headers.get("user-agent")?,
        client_ip: headers.get("cf-connecting-ip")?,
        page_origin: page_origin.clone(),
        edge_secret: config.origin_edge_secret.as_deref(),
    };
    let cookie = set_cookie(&state.seal(&config.state_secret));
    if config.forward == ForwardTo::Queue && body.len() <= queue::MAX_MESSAGE_BYTES {
        match queue::enqueue(env, &upload).await {
            Ok(()) => {
                let mut resp = Response::from_json(&serde_json::json!({
                    "accepted": batch.events.len(),
                    "queued": true,
                }))?
                .with_status(202);
                resp.headers_mut().set("set-cookie", &cookie)?;
                return Ok(resp);
            }
            // The queue is down: the origin itself is the other durable place.
            Err(e) => console_error!("the events queue did not take a batch: {e}"),
        }
    }
    match forward::deliver(&upload).await {
        forward::Delivery::Answered { status, body } => {
            let mut resp = json_bytes(status, body)?;
            if (200..300).contains(&status) {
                resp.headers_mut().set("set-cookie", &cookie)?;
            }
            Ok(resp)
        }
        forward::Delivery::Unavailable {
            status,
            retry_after_s,
            body,
        } => {
            let mut resp = match body {
                Some(body) => json_bytes(status, body)?,
                None => error(
                    503,
                    "origin_unavailable",
                    "the events could not be stored now: keep the batch and send it again after Retry-After",
                    None,
                )?,
            };
            resp.headers_mut()
                .set("retry-after", &retry_after_s.to_string())?;
            Ok(resp)
        }
    }
}

/// The origin's JSON answer, passed on as it is.
fn json_bytes(status: u16, body: Vec<u8>) -> Result<Response> {
    let mut resp = Response::from_bytes(body)?.with_status(status);
    resp.headers_mut().set("content-type", "application/json")?;
    Ok(resp)
}
