//! The Segment-compatible HTTP Tracking API: `POST /v1/batch`, `/v1/track`,
//! `/v1/page`, `/v1/screen` and `/v1/identify`, so SDKs that speak Segment's
//! API (analytics.js, analytics-node, analytics-python, the mobile SDKs,
//! RudderStack's) feed Attune by pointing their host here.
//!
//! - **Write key**: HTTP Basic (the write key as user name) or `writeKey` in
//!   the body. A site's public site key gives browser access: each event's
//!   reader is `anon:<anonymousId>`, `userId` is not trusted (anyone holds
//!   that key) and `identify` sets nothing. The site's API key gives server
//!   access: `userId`, when present, is the reader, and `identify` traits
//!   become the user's attributes.
//! - **Limits** (Segment's): 500 KB per request, 32 KB per message, 2,500
//!   messages; `Content-Type: application/json`, or `text/plain`, which
//!   analytics.js sends to spare browsers a CORS preflight.
//! - **Paths**: also analytics.js's short ones, `/v1/b`, `/v1/t`, `/v1/p`,
//!   `/v1/s`, `/v1/i`, `/v1/g`, `/v1/a`; `group` and `alias` are taken and
//!   counted, not stored.
//! - **Answer**: 200 `{"success": true, …}` only when every event is durable
//!   (the same log as `/v1/events`, deduplicated by id); 503 with
//!   Retry-After when not, which the SDKs retry. Every refusal is a JSON
//!   error naming the message's field.
//!
//! What each message becomes: [`message`]; where custom events go:
//! [`custom`].

pub mod custom;
pub mod message;
pub mod settings;

use std::collections::BTreeMap;

use attune_core::codec::check;
use attune_core::Batch;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, ORIGIN, USER_AGENT};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use base64::Engine as _;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::auth::anonymous_user;
use crate::clock::now_ms;
use crate::error::{ApiError, ErrorBody};
use crate::AppState;
use message::{event_time, id_of, map, Mapped, Message, SegmentBatch};

/// Most messages in one batch.
pub const MAX_MESSAGES: usize = 2_500;
/// Largest message, as JSON.
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024;
/// Largest request body.
pub const MAX_REQUEST_BYTES: usize = 500 * 1024;
/// How long a request waits for the catalog to name a page's item.
const CATALOG_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);

/// The reply: Segment's `success`, and what Attune kept.
#[derive(Debug, Serialize, ToSchema)]
pub struct SegmentAccepted {
    /// Always true (errors have their own status and body).
    pub success: bool,
    /// Events stored.
    pub accepted: usize,
    /// Custom events stored (`track`s Attune does not learn from, kept in
    /// the `attune.custom_events` topic).
    pub custom: usize,
    /// Messages taken but not stored as events: identify traits, messages
    /// Attune does not learn from, a forgotten user's.
    pub ignored: usize,
}

/// Segment's batch.
#[utoipa::path(post, path = "/v1/batch", tag = "segment",
    request_body(content = SegmentBatch, content_type = "application/json"),
    responses(
        (status = 200, description = "Every event is durable", body = SegmentAccepted),
        (status = 400, description = "Not Segment's JSON, a message breaks a rule (`field` names it), or over a limit", body = ErrorBody),
        (status = 401, description = "Unknown write key", body = ErrorBody),
        (status = 403, description = "A page the site does not allow (public site key)", body = ErrorBody),
        (status = 413, description = "Over 500 KB", body = ErrorBody),
        (status = 415, description = "Neither application/json nor text/plain", body = ErrorBody),
        (status = 429, description = "Rate limited; see Retry-After", body = ErrorBody),
        (status = 503, description = "The log is unavailable; see Retry-After", body = ErrorBody),
    ))]
pub async fn batch(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<SegmentAccepted>, ApiError> {
    ingest(&state, &headers, body, None).await
}

macro_rules! single {
    ($name:ident, $path:literal, $kind:literal) => {
        #[doc = concat!("Segment's `", $kind, "` call.")]
        #[utoipa::path(post, path = $path, tag = "segment",
                            request_body(content = Message, content_type = "application/json"),
                            responses(
                                (status = 200, description = "Durable", body = SegmentAccepted),
                                (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
                                (status = 415, body = ErrorBody), (status = 503, body = ErrorBody),
                            ))]
        pub async fn $name(
            State(state): State<AppState>,
            headers: HeaderMap,
            body: Result<Bytes, BytesRejection>,
        ) -> Result<Json<SegmentAccepted>, ApiError> {
            ingest(&state, &headers, body, Some($kind)).await
        }
    };
}

single!(track, "/v1/track", "track");
single!(page, "/v1/page", "page");
single!(screen, "/v1/screen", "screen");
single!(identify, "/v1/identify", "identify");
single!(group, "/v1/group", "group");
single!(alias, "/v1/alias", "alias");

/// Who wrote: the site, and whether with its API key.
struct Writer {
    site: std::sync::Arc<crate::auth::Site>,
    server: bool,
}

fn bad(error: &'static str, message: impl Into<String>, field: Option<String>) -> ApiError {
    metrics::counter!("attune_events_rejected_total", "reason" => error).increment(1);
    let e = ApiError::bad_request(error, message);
    match field {
        Some(f) => e.field(f),
        None => e,
    }
}

/// The write key of HTTP Basic auth (the user name), if sent.
fn basic_user(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    Some(text.split(':').next().unwrap_or_default().to_owned())
}

fn writer(state: &AppState, headers: &HeaderMap, key: Option<String>) -> Result<Writer, ApiError> {
    let key = key.filter(|k| !k.is_empty()).ok_or_else(|| {
        ApiError::unauthorized(
            "send the write key as the HTTP Basic user name, or as `writeKey` in the body: \
             the site key (browsers) or the site's API key (servers)",
        )
    })?;
    if let Some(site) = state.sites.by_api_key(&key) {
        return Ok(Writer {
            site: site.clone(),
            server: true,
        });
    }
    let site = state
        .sites
        .by_key(&key)
        .ok_or_else(|| ApiError::unauthorized("unknown write key").field("writeKey"))?;
    // A browser's page must be one the site allows, as on `/v1/events`.
    if let Some(origin) = headers.get(ORIGIN).and_then(|o| o.to_str().ok()) {
        if !site.allows_origin(origin) {
            return Err(ApiError::forbidden(attune_core::access::origin_refused(
                origin, &site.key,
            )));
        }
    }
    Ok(Writer {
        site: site.clone(),
        server: false,
    })
}

/// One reader's events, in one or more attune batches.
#[derive(Default)]
struct Reader {
    anonymous_id: String,
    user_agent: Option<String>,
    events: Vec<attune_core::Event>,
}

/// The catalog item whose `metadata.url` has the page's path, if any. The
/// store being down does not refuse events: the page is then a view of no
/// item, as when nothing matches.
async fn catalog_item(
    state: &AppState,
    site: &str,
    m: &Message,
    catalog: &mut Option<Option<std::sync::Arc<crate::ranking::snapshots::Snapshot>>>,
) -> Option<String> {
    let path = message::page_path(m)?;
    if catalog.is_none() {
        let read = tokio::time::timeout(
            CATALOG_TIMEOUT,
            state
                .snapshots
                .get(state.store.as_ref(), site, state.popularity_half_life),
        )
        .await;
        *catalog = Some(match read {
            Ok(Ok(snapshot)) => Some(snapshot),
            Ok(Err(e)) => {
                tracing::warn!("no catalog for Segment page paths: {e}");
                None
            }
            Err(_) => {
                tracing::warn!("no catalog for Segment page paths within {CATALOG_TIMEOUT:?}");
                None
            }
        });
    }
    let snapshot = catalog.as_ref()?.as_ref()?;
    snapshot.catalog.by_path(&path).map(str::to_owned)
}

async fn ingest(
    state: &AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    implied: Option<&'static str>,
) -> Result<Json<SegmentAccepted>, ApiError> {
    let received = now_ms();
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("a request is at most {MAX_REQUEST_BYTES} bytes: send smaller batches"),
            )
        } else {
            bad(
                "unreadable_body",
                format!("the body could not be read ({e})"),
                None,
            )
        }
    })?;
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !(content_type.starts_with("application/json") || content_type.starts_with("text/plain")) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("Content-Type `{content_type}` is not accepted: send application/json"),
        ));
    }
    let not_json =
        |e: serde_json::Error| bad("invalid_json", format!("not Segment's JSON: {e}"), None);
    let (messages, body_key, batch_context, sent_at) = match implied {
        None => {
            let b: SegmentBatch = serde_json::from_slice(&body).map_err(not_json)?;
            (b.batch, b.write_key, b.context, b.sent_at)
        }
        Some(_) => {
            let v: Value = serde_json::from_slice(&body).map_err(not_json)?;
            let key = v.get("writeKey").and_then(Value::as_str).map(str::to_owned);
            (vec![v], key, None, None)
        }
    };
    if messages.len() > MAX_MESSAGES {
        return Err(bad(
            "too_many",
            format!("a batch holds at most {MAX_MESSAGES} messages"),
            Some("batch".into()),
        ));
    }
    let writer = writer(state, headers, basic_user(headers).or(body_key))?;
    state
        .rate_limits
        .check_key(&format!("site:{}", writer.site.key))?;
    let site = writer.site.key.as_str();
    let header_ua = headers
        .get(USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);

    let mut readers: BTreeMap<String, Reader> = BTreeMap::new();
    let mut traits: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut customs: BTreeMap<String, Vec<message::Custom>> = BTreeMap::new();
    // The site's catalog, read once a request needs it (at most once a
    // second per site: the ranking's snapshot).
    let mut catalog = None;
    let mut ignored = 0;
    for (i, raw) in messages.into_iter().enumerate() {
        let at = |field: &str| match implied {
            None => format!("batch[{i}].{field}"),
            Some(_) => field.to_owned(),
        };
        if serde_json::to_vec(&raw).map_or(0, |v| v.len()) > MAX_MESSAGE_BYTES {
            return Err(bad(
                "too_large",
                format!("a message is at most {MAX_MESSAGE_BYTES} bytes of JSON"),
                Some(at("")),
            ));
        }
        let mut m: Message = serde_json::from_value(raw).map_err(|e| {
            bad(
                "invalid_message",
                format!("not a Segment message: {e}"),
                Some(at("")),
            )
        })?;
        // The batch's context under the message's own (Segment's rule).
        if let Some(shared) = &batch_context {
            let own = m.context.get_or_insert_with(Default::default);
            for (k, v) in shared {
                own.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        let kind = implied.or(m.kind.as_deref()).unwrap_or("").to_owned();
        let anonymous = id_of(&m.anonymous_id);
        let user = match (writer.server, id_of(&m.user_id), &anonymous) {
            (true, Some(user), _) => user,
            (_, _, Some(anon)) => anonymous_user(anon),
            (false, Some(_), None) => {
                return Err(bad(
                    "untrusted_user_id",
                    "with the public site key as write key, `userId` is not trusted: send \
                     `anonymousId`, or send from a server with the site's API key",
                    Some(at("anonymousId")),
                ))
            }
            (_, None, None) => {
                return Err(bad(
                    "missing_user",
                    "a message needs `userId` or `anonymousId`",
                    Some(at("anonymousId")),
                ))
            }
        };
        let ts = event_time(&m, sent_at.as_deref(), received)
            .map_err(|r| bad("invalid_message", r.message, Some(at(r.field))))?;
        match map(site, &kind, &m, ts, &writer.site.segment)
            .map_err(|r| bad("invalid_message", r.message, Some(at(r.field))))?
        {
            Mapped::Event(mut e) => {
                if kind == "page" && e.item.is_none() {
                    e.item = catalog_item(state, site, &m, &mut catalog).await;
                }
                let ua = m
                    .context
                    .as_ref()
                    .and_then(|c| c.get("userAgent"))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .or_else(|| header_ua.clone());
                let reader = readers.entry(user.clone()).or_default();
                reader.anonymous_id = anonymous.clone().unwrap_or_else(|| user.clone());
                reader.user_agent = ua;
                reader.events.push(e);
            }
            Mapped::Traits(t) if writer.server => {
                traits.entry(user).or_default().extend(t);
                ignored += 1;
            }
            Mapped::Traits(_) => {
                metrics::counter!("attune_segment_unmapped_total", "reason" => "public_identify")
                    .increment(1);
                ignored += 1;
            }
            Mapped::Custom(c) => customs.entry(user).or_default().push(c),
            Mapped::Unmapped(reason) => {
                metrics::counter!("attune_segment_unmapped_total", "reason" => reason).increment(1);
                ignored += 1;
            }
        }
    }

    // Every batch checked by attune-core's rules before anything is stored.
    let mut batches = Vec::new();
    for (user, reader) in readers {
        for events in reader.events.chunks(state.batch_limits.max_events) {
            let batch = Batch {
                site_key: site.to_owned(),
                anonymous_id: reader.anonymous_id.clone(),
                user_token: None,
                // The events' times are already on the server's clock.
                sent_at_ms: received,
                dropped: 0,
                events: events.to_vec(),
            };
            let checked = check(&batch, &state.batch_limits).map_err(|e| {
                let field = e.field().map(str::to_owned);
                bad(e.code(), format!("{user}: {e}"), field)
            })?;
            batches.push((user.clone(), reader.user_agent.clone(), checked));
        }
    }
    for (user, attrs) in &traits {
        crate::api::users::check_attributes(attrs)?;
        state.store.set_attributes(site, user, attrs).await?;
    }
    let mut accepted = 0;
    for (user, ua, batch) in &batches {
        let (_, Json(a)) =
            crate::ingest::append(state, site, user, batch, ua.as_deref(), received).await?;
        accepted += a.accepted;
        ignored += a.ignored;
    }
    let custom = custom::append(state, site, customs, received).await?;
    Ok(Json(SegmentAccepted {
        success: true,
        accepted,
        custom,
        ignored,
    }))
}
