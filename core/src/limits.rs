//! Explicit limits every decoder enforces. Servers may tighten them; the
//! defaults are what the tracker is built to stay within.

use serde::{Deserialize, Serialize};

/// Bounds on what a batch may contain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Largest encoded batch, in bytes, checked before parsing.
    pub max_batch_bytes: usize,
    /// Most events in one batch.
    pub max_events: usize,
    /// Longest site key and anonymous id.
    pub max_id_len: usize,
    /// Longest signed user token.
    pub max_token_len: usize,
    /// Longest item id.
    pub max_item_len: usize,
    /// Longest page path or referrer.
    pub max_url_len: usize,
    /// Longest visible dwell one event may report.
    pub max_dwell_ms: u32,
    /// How long before `sent_at` an event may have happened (events persisted
    /// offline are resent on a later visit).
    pub max_event_age_ms: i64,
    /// How far after `sent_at` an event may be stamped (same clock, so small).
    pub max_event_lead_ms: i64,
    /// Earliest plausible `sent_at` (guards against zeroed clocks).
    pub min_sent_at_ms: i64,
    /// Latest plausible `sent_at`.
    pub max_sent_at_ms: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_batch_bytes: 256 * 1024,
            max_events: 500,
            max_id_len: 64,
            max_token_len: 2048,
            max_item_len: 128,
            max_url_len: 1024,
            max_dwell_ms: 24 * 3_600_000,
            max_event_age_ms: 7 * 24 * 3_600_000,
            max_event_lead_ms: 5 * 60_000,
            // 2020-01-01T00:00:00Z and 2100-01-01T00:00:00Z.
            min_sent_at_ms: 1_577_836_800_000,
            max_sent_at_ms: 4_102_444_800_000,
        }
    }
}
