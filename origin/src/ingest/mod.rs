//! `POST /v1/events`: validate, enrich, append to the log, and answer 202 only
//! once every event is durable.

mod decode;
pub mod enrich;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::header::{ORIGIN, USER_AGENT};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::{anonymous_user, now_s};
use crate::clock::now_ms;
use crate::error::{ApiError, ErrorBody};
use crate::event_log::AppendError;
use crate::AppState;
use decode::decode_body;
use enrich::{records, Sender};

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
    request_body(content = String, description = "An attune-core batch: MessagePack (`application/msgpack`, the tracker's format) or JSON (`application/json`, short or long keys), optionally `Content-Encoding: gzip`. Schema: attune-core's codec module.", content_type = "application/msgpack"),
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
    let batch = decode_body(&headers, &body, &state.codec_limits)?;

    let site = state.sites.by_key(&batch.site_key).ok_or_else(|| {
        ApiError::unauthorized(format!("unknown site key `{}`", batch.site_key)).field("site_key")
    })?;
    if let Some(origin) = headers.get(ORIGIN).and_then(|o| o.to_str().ok()) {
        if !site.allows_origin(origin) {
            return Err(ApiError::forbidden(format!(
                "pages on {origin} may not send events for site `{}`: add it to the site's allowed_origins",
                site.key
            )));
        }
    }
    state.limits.check_key(&format!("site:{}", site.key))?;
    let user_id = match &batch.user_token {
        Some(token) => site
            .verify_token(token, now_s())
            .map_err(|e| ApiError::unauthorized(e.to_string()).field("user_token"))?,
        None => anonymous_user(&batch.anonymous_id),
    };

    let context = state.store.ingest_context(&site.key, &user_id).await?;
    if context.forgotten {
        metrics::counter!("attune_events_rejected_total", "reason" => "forgotten_user")
            .increment(batch.events.len() as u64);
        return Ok((
            StatusCode::ACCEPTED,
            Json(Accepted {
                accepted: 0,
                ignored: batch.events.len(),
            }),
        ));
    }

    let device = headers
        .get(USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|ua| state.user_agents.device(ua))
        .unwrap_or_default();
    let sender = Sender {
        user_id: &user_id,
        device: &device,
        attributes: &context.attributes,
    };
    let results = state
        .log
        .append(records(&batch, &sender, received_at_ms))
        .await;

    let mut accepted = Vec::with_capacity(batch.events.len());
    let mut rejected = Vec::new();
    let mut queue_full = false;
    for (event, result) in batch.events.iter().zip(&results) {
        match result {
            Ok(()) => accepted.push(event),
            Err(e) => {
                queue_full |= matches!(e, AppendError::QueueFull);
                rejected.push((event, e));
            }
        }
    }
    state
        .activity
        .record(&site.key, &user_id, accepted.iter().map(|e| e.kind()));

    if rejected.is_empty() {
        return Ok((
            StatusCode::ACCEPTED,
            Json(Accepted {
                accepted: accepted.len(),
                ignored: 0,
            }),
        ));
    }
    metrics::counter!("attune_events_rejected_total", "reason" => if queue_full { "queue_full" } else { "log_unavailable" })
        .increment(rejected.len() as u64);
    tracing::warn!(
        accepted = accepted.len(),
        rejected = rejected.len(),
        "event log did not acknowledge: {}",
        rejected[0].1
    );
    let mut err = ApiError::unavailable(format!(
        "{} of {} events were not stored ({}); resend the batch after Retry-After \
         — resending stored events is harmless, their ids deduplicate",
        rejected.len(),
        batch.events.len(),
        rejected[0].1
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
