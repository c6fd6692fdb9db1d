//! `POST /v1/events`: validate, enrich, append to the log, and answer 202 only
//! once every event is durable.

pub mod context;
mod decode;
pub mod enrich;
pub mod ledger;

use std::sync::Arc;

use attune_core::{Batch, EventKind};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::header::{ORIGIN, USER_AGENT};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::{anonymous_user, Site};
use crate::clock::{now_ms, now_s};
use crate::error::{ApiError, ErrorBody};
use crate::event_log::AppendError;
use crate::AppState;
use decode::decode_body;
use enrich::{records, Sender};
use ledger::BatchOutcome;

/// The reply to an accepted batch.
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    /// Events stored.
    pub accepted: usize,
    /// Events dropped on purpose (the user asked to be forgotten).
    pub ignored: usize,
}

/// Ingests one tracker batch.
#[utoipa::path(post, path = "/v1/events", tag = "ingest",
    request_body(description = "An attune-core batch: JSON with the long key names (typed here; the short names of MessagePack are accepted too) or MessagePack (`application/msgpack`, the tracker's format, the same map with short keys), optionally `Content-Encoding: gzip`. Schema: attune-core's codec module.",
        content(
            (attune_core::codec::schema::BatchJson = "application/json"),
            (String = "application/msgpack"),
        )),
    responses(
        (status = 202, description = "Every event is durable", body = Accepted),
        (status = 400, description = "Not a batch", body = ErrorBody),
        (status = 401, description = "Unknown site key or bad user token", body = ErrorBody),
        (status = 403, description = "Origin not allowed for the site", body = ErrorBody),
        (status = 413, description = "Too large", body = ErrorBody),
        (status = 415, description = "Unsupported Content-Type", body = ErrorBody),
        (status = 422, description = "A field breaks a rule; `field` names it", body = ErrorBody),
        (status = 429, description = "Rate limited; see Retry-After", body = ErrorBody),
        (status = 503, description = "The log is unavailable; `accepted`/`rejected` list event ids; see Retry-After", body = ErrorBody),
    ))]
pub async fn post_events(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let received_at_ms = now_ms();
    let body = body.map_err(|e| body_error(e, state.max_body_bytes))?;
    let batch = decode_body(&headers, &body, &state.batch_limits)?;
    let (site, user_id) = sender_of(&state, &headers, &batch)?;
    let user_agent = headers.get(USER_AGENT).and_then(|v| v.to_str().ok());
    append(
        &state,
        &site.key,
        &user_id,
        &batch,
        user_agent,
        received_at_ms,
    )
    .await
}

/// Appends a decoded batch of `user_id` (already authenticated for `site`)
/// to the log, enriched, and answers: 202 only when every event is durable.
/// The ingest of `/v1/events` and of the Segment-compatible API.
pub async fn append(
    state: &AppState,
    site: &str,
    user_id: &str,
    batch: &Batch,
    user_agent: Option<&str>,
    received_at_ms: i64,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let context = state.context_lookup.get(&*state.store, site, user_id).await;
    let attributes_unknown = context.is_none();
    let context = context.unwrap_or_default();
    if context.forgotten {
        return Ok(ignore_forgotten(state, site, batch, received_at_ms));
    }
    let device = user_agent
        .map(|ua| state.user_agents.device(ua))
        .unwrap_or_default();
    let sender = Sender {
        user_id,
        device: &device,
        attributes: &context.attributes,
        attributes_unknown,
    };
    let results = state
        .log
        .append(records(batch, &sender, received_at_ms))
        .await;
    answer(state, site, user_id, batch, &results, received_at_ms)
}

/// The batch's site (known, this page's origin allowed, within its rate)
/// and its user (from a valid token, or the anonymous id).
fn sender_of(
    state: &AppState,
    headers: &HeaderMap,
    batch: &Batch,
) -> Result<(Arc<Site>, String), ApiError> {
    let site = state.sites.by_key(&batch.site_key).ok_or_else(|| {
        ApiError::unauthorized(format!("unknown site key `{}`", batch.site_key)).field("site_key")
    })?;
    if let Some(origin) = headers.get(ORIGIN).and_then(|o| o.to_str().ok()) {
        if !site.allows_origin(origin) {
            return Err(ApiError::forbidden(attune_core::access::origin_refused(
                origin, &site.key,
            )));
        }
    }
    state.rate_limits.check_key(&format!("site:{}", site.key))?;
    let user_id = match &batch.user_token {
        Some(token) => site
            .verify_token(token, now_s())
            .map_err(|e| ApiError::unauthorized(e.to_string()).field("user_token"))?,
        None => anonymous_user(&batch.anonymous_id),
    };
    Ok((site.clone(), user_id))
}

/// A forgotten user's batch: counted, stored nowhere, answered 202.
fn ignore_forgotten(
    state: &AppState,
    site: &str,
    batch: &Batch,
    received_at_ms: i64,
) -> (StatusCode, Json<Accepted>) {
    metrics::counter!("attune_events_rejected_total", "reason" => "forgotten_user")
        .increment(batch.events.len() as u64);
    let kinds: Vec<EventKind> = batch.events.iter().map(|e| e.kind()).collect();
    state.ledger.record(&BatchOutcome {
        site,
        received_at_ms,
        accepted: &[],
        unstored: &[],
        forgotten: &kinds,
        client_dropped: batch.dropped,
    });
    (
        StatusCode::ACCEPTED,
        Json(Accepted {
            accepted: 0,
            ignored: batch.events.len(),
        }),
    )
}

/// The `attune_events_rejected_total` reason of records the log refused:
/// `queue_full` when any was refused for a full producer queue (back off),
/// else `log_unavailable`.
pub fn refusal_reason<'a>(mut errors: impl Iterator<Item = &'a AppendError>) -> &'static str {
    if errors.any(|e| matches!(e, AppendError::QueueFull)) {
        "queue_full"
    } else {
        "log_unavailable"
    }
}

/// 202 when the log acknowledged every event; else 503 naming the stored
/// and the unstored ids. Counts both either way.
fn answer(
    state: &AppState,
    site: &str,
    user_id: &str,
    batch: &Batch,
    results: &[Result<(), AppendError>],
    received_at_ms: i64,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let mut accepted = Vec::with_capacity(batch.events.len());
    let mut rejected = Vec::new();
    for (event, result) in batch.events.iter().zip(results) {
        match result {
            Ok(()) => accepted.push(event),
            Err(e) => rejected.push((event, e)),
        }
    }
    let accepted_kinds: Vec<EventKind> = accepted.iter().map(|e| e.kind()).collect();
    let unstored_kinds: Vec<EventKind> = rejected.iter().map(|(e, _)| e.kind()).collect();
    state.ledger.record(&BatchOutcome {
        site,
        received_at_ms,
        accepted: &accepted_kinds,
        unstored: &unstored_kinds,
        forgotten: &[],
        client_dropped: batch.dropped,
    });
    state
        .activity
        .record(site, user_id, accepted_kinds.iter().copied());

    let Some((_, first_error)) = rejected.first() else {
        return Ok((
            StatusCode::ACCEPTED,
            Json(Accepted {
                accepted: accepted.len(),
                ignored: 0,
            }),
        ));
    };
    metrics::counter!("attune_events_rejected_total", "reason" => refusal_reason(rejected.iter().map(|(_, e)| *e)))
        .increment(rejected.len() as u64);
    tracing::warn!(
        accepted = accepted.len(),
        rejected = rejected.len(),
        "event log did not acknowledge: {first_error}",
    );
    let mut err = ApiError::unavailable(format!(
        "{} of {} events were not stored ({first_error}); resend the batch after Retry-After \
         — resending stored events is harmless, their ids deduplicate",
        rejected.len(),
        batch.events.len(),
    ));
    err.body.accepted = Some(accepted.iter().map(|e| e.id.to_string()).collect());
    err.body.rejected = Some(rejected.iter().map(|(e, _)| e.id.to_string()).collect());
    Err(err)
}

/// A body that could not be read: too large (also after gzip decompression)
/// or not valid gzip.
fn body_error(e: BytesRejection, limit: usize) -> ApiError {
    let reason = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        "too_large"
    } else {
        "unreadable_body"
    };
    metrics::counter!("attune_events_rejected_total", "reason" => reason).increment(1);
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "the body is over {limit} bytes (after decompression): send fewer events per batch"
            ),
        )
    } else {
        ApiError::bad_request(
            "unreadable_body",
            format!("the body could not be read ({e}); is Content-Encoding right?"),
        )
    }
}
