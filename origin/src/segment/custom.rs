//! Custom events: the Segment `track`s Attune has no interaction for
//! ("Signed Up", "Order Completed"…). They are kept, not learnt from: each
//! is one JSON [`CustomEventRecord`] in the `attune.custom_events` topic
//! (attune-core's `routing::CUSTOM_EVENTS`), keyed `site/user` like the
//! interactions, and acknowledged only when the log holds it. No Attune
//! consumer reads the topic; it is there for the site's own consumers, who
//! deduplicate by `id` (an SDK's retry carries the same `messageId`, so the
//! same id), as Attune's consumers do for interactions.

use std::collections::BTreeMap;

use attune_core::routing::{partition_key, CUSTOM_EVENTS};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::message::Custom;
use crate::error::ApiError;
use crate::event_log::{AppendError, LogRecord};
use crate::AppState;

/// The version of [`CustomEventRecord`]'s shape.
pub const CUSTOM_EVENT_VERSION: u32 = 1;

/// One custom event, as the topic holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomEventRecord {
    /// [`CUSTOM_EVENT_VERSION`].
    pub v: u32,
    /// The event id (from the message's `messageId`): the same on a retry.
    pub id: uuid::Uuid,
    /// Site key.
    pub site: String,
    /// The reader (`anon:<anonymousId>` or the user id).
    pub user: String,
    /// The `track`'s name.
    pub name: String,
    /// Its properties, as sent.
    pub properties: Map<String, Value>,
    /// When it happened, on the server's clock (Unix ms).
    pub ts_ms: i64,
    /// When the origin received it (Unix ms).
    pub received_ms: i64,
}

/// Appends the readers' custom events; a forgotten reader's are dropped
/// (counted). Answers how many the log holds, or 503 when any is not held
/// (the client resends the request; the ids deduplicate).
pub async fn append(
    state: &AppState,
    site: &str,
    by_reader: BTreeMap<String, Vec<Custom>>,
    received_ms: i64,
) -> Result<usize, ApiError> {
    let mut records = Vec::new();
    for (user, events) in by_reader {
        let forgotten = state
            .context_lookup
            .get(&*state.store, site, &user)
            .await
            .is_some_and(|c| c.forgotten);
        if forgotten {
            metrics::counter!("attune_events_rejected_total", "reason" => "forgotten_user")
                .increment(events.len() as u64);
            continue;
        }
        let key: std::sync::Arc<str> = partition_key(site, &user).into();
        for c in events {
            let record = CustomEventRecord {
                v: CUSTOM_EVENT_VERSION,
                id: c.id,
                site: site.to_owned(),
                user: user.clone(),
                name: c.name,
                properties: c.properties,
                ts_ms: c.ts_ms,
                received_ms,
            };
            let payload = serde_json::to_vec(&record)
                .map_err(|e| ApiError::internal("encode a custom event", e))?;
            records.push(LogRecord {
                topic: CUSTOM_EVENTS,
                key: key.clone(),
                payload: Bytes::from(payload),
            });
        }
    }
    let n = records.len();
    if n == 0 {
        return Ok(0);
    }
    let results = state.log.append(records).await;
    let failed: Vec<&AppendError> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    if let Some(first) = failed.first() {
        let reason = crate::ingest::refusal_reason(failed.iter().copied());
        metrics::counter!("attune_events_rejected_total", "reason" => reason)
            .increment(failed.len() as u64);
        return Err(ApiError::unavailable(format!(
            "{} of {n} custom events were not stored ({first}); resend after Retry-After \
             — resending stored events is harmless, their ids deduplicate",
            failed.len()
        )));
    }
    metrics::counter!("attune_segment_custom_events_total").increment(n as u64);
    Ok(n)
}
