//! The JSON form of a batch, with the long key names, as an OpenAPI schema
//! (the `openapi` feature): what `POST /v1/events` documents for
//! `application/json`, so client generators can type the body. The decoder
//! is [`super::decode_json`]; a test below holds this description to it.

use serde::Serialize;
use utoipa::ToSchema;

/// A batch of one browser's or app's events.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BatchJson {
    /// The schema version: 1.
    pub schema_version: u32,
    /// The site's public key.
    pub site_key: String,
    /// The browser's or app install's stable id (1–64 printable ASCII).
    pub anonymous_id: String,
    /// A signed user token from the site's back end, when the person is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_token: Option<String>,
    /// When the client sent the batch, Unix ms on its clock.
    pub sent_at: i64,
    /// Events the client had to drop since its last delivered batch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dropped: Option<u32>,
    /// The events, oldest first (at most 500).
    pub events: Vec<EventJson>,
}

/// One event.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EventJson {
    /// A UUIDv7 made by the client, the same on every retry.
    pub id: String,
    /// `page_view`, `click`, `scroll`, `dwell` or `impression`.
    pub kind: String,
    /// When it happened, Unix ms on the client's clock.
    pub ts: i64,
    /// The item (article, product…), 1–128 printable ASCII.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item: Option<String>,
    /// Scroll depth reached, 0–100 (`scroll` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub depth_pct: Option<u8>,
    /// Visible time in ms (`dwell` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub visible_ms: Option<u32>,
    /// Where it happened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<ContextJson>,
    /// The serve id of the rail that showed the item (clicks and impressions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serve_id: Option<String>,
    /// The item's 0-based position in that rail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<u8>,
}

/// Where an event happened.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct ContextJson {
    /// The page's path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The page's referrer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub referrer: Option<String>,
    /// `[width, height]` of the viewport. An array of two rather than
    /// OpenAPI 3.1's tuple (`prefixItems`), which client generators refuse.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<u16>>, min_items = 2, max_items = 2)]
    pub viewport: Option<(u16, u16)>,
    /// A device class hint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::decode_json;
    use crate::{Interaction, Limits};

    /// Every documented field, filled in, decodes to what it says: the
    /// schema cannot drift from the decoder unnoticed.
    #[test]
    fn the_documented_json_decodes() {
        let now = 1_800_000_000_000;
        let id = "019aef3c-1b2a-7c3d-8e4f-5a6b7c8d9e0f";
        let doc = BatchJson {
            schema_version: 1,
            site_key: "site".into(),
            anonymous_id: "anon-1".into(),
            user_token: None,
            sent_at: now,
            dropped: Some(2),
            events: vec![EventJson {
                id: id.into(),
                kind: "dwell".into(),
                ts: now,
                item: Some("a1".into()),
                depth_pct: None,
                visible_ms: Some(4_000),
                context: Some(ContextJson {
                    path: Some("/a1".into()),
                    referrer: Some("https://search.example/".into()),
                    viewport: Some((390, 844)),
                    device: Some("mobile".into()),
                }),
                serve_id: None,
                position: None,
            }],
        };
        let json = serde_json::to_vec(&doc).unwrap();
        let limits = Limits {
            min_sent_at_ms: 0,
            ..Limits::default()
        };
        let b = decode_json(&json, &limits).unwrap();
        assert_eq!((b.anonymous_id.as_str(), b.dropped), ("anon-1", 2));
        let e = &b.events[0];
        assert_eq!(e.id.to_string(), id);
        assert_eq!(e.interaction, Interaction::Dwell { visible_ms: 4_000 });
        let c = e.context.as_ref().unwrap();
        assert_eq!(c.referrer.as_deref(), Some("https://search.example/"));
    }
}
