//! Segment's messages (the HTTP Tracking API's JSON) and what each becomes
//! in Attune: an event of a reader, traits for their attributes, or nothing
//! Attune learns from (counted, not an error).
//!
//! | Segment | Attune |
//! |---|---|
//! | `page`, `screen` | a page view, of the item in `properties` if one is named, else of the item the page's path names by the site's `item_path`, else (in [`super`]) of the catalog item whose `metadata.url` has the page's path |
//! | `track` "Product Clicked", "Content Clicked", "Recommendation Clicked" | a click |
//! | `track` "Product Viewed", "Content Viewed" | a page view of the item |
//! | `track` "Product Impression", "Promotion Viewed" | an impression |
//! | `track` "Content Read" with `properties.visible_ms` | a dwell |
//! | `track` "Content Scrolled" with `properties.depth_pct` | a scroll |
//! | `identify` | `traits` as the user's attributes (with the API key as write key) |
//! | `track` named in the site's `[sites.segment]` (`click`, `view`, `impression`, `dwell`, `scroll`) | that interaction |
//! | any other `track` | a custom event: kept in the `attune.custom_events` topic ([`super::custom`]), not learnt from |
//! | `group`, `alias` | unmapped: counted, not stored |
//!
//! The item is the first of `properties.item_id`, `product_id`,
//! `content_id` (string or number). An event's id is `messageId` when that
//! is a UUIDv7 (attune-core's rule), else one derived from the site and
//! `messageId` (a hash, with the version 7 bits set), so an SDK's retry is
//! deduplicated like any event.

use std::collections::BTreeMap;

use attune_core::{Event, Interaction};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::config::SegmentMapping;
use crate::ranking::candidates::path_of;

/// One message, as SDKs send it (unknown fields are ignored, as Segment does).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    /// `track`, `page`, `screen`, `identify`, `group` or `alias` (in a batch;
    /// the single-message endpoints imply it).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// The SDK's id of the message, the same on every retry.
    pub message_id: Option<String>,
    /// The site's id of a known user.
    pub user_id: Option<Value>,
    /// The device's or browser's id.
    pub anonymous_id: Option<Value>,
    /// A `track`'s name.
    pub event: Option<String>,
    /// A `page`'s or `screen`'s name.
    pub name: Option<String>,
    /// A `track`'s, `page`'s or `screen`'s properties.
    #[schema(value_type = Option<Object>)]
    pub properties: Option<Map<String, Value>>,
    /// An `identify`'s traits.
    #[schema(value_type = Option<Object>)]
    pub traits: Option<Map<String, Value>>,
    /// Device, page, user agent…; merged over the batch's.
    #[schema(value_type = Option<Object>)]
    pub context: Option<Map<String, Value>>,
    /// When it happened (ISO 8601), as the server that sent it knows it.
    pub timestamp: Option<String>,
    /// When it happened on the client's clock (ISO 8601); corrected by `sentAt`.
    pub original_timestamp: Option<String>,
    /// When the client sent it (ISO 8601).
    pub sent_at: Option<String>,
    /// The write key, when not sent by HTTP Basic auth.
    pub write_key: Option<String>,
}

/// `POST /v1/batch`'s body.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SegmentBatch {
    /// The messages (at most 2,500).
    #[schema(value_type = Vec<Message>)]
    pub batch: Vec<Value>,
    /// The write key, when not sent by HTTP Basic auth.
    pub write_key: Option<String>,
    /// Merged into each message's context.
    #[schema(value_type = Option<Object>)]
    pub context: Option<Map<String, Value>>,
    /// When the client sent the batch (ISO 8601).
    pub sent_at: Option<String>,
}

/// What a message becomes.
#[derive(Debug, Clone, PartialEq)]
pub enum Mapped {
    /// An event of the reader.
    Event(Event),
    /// Traits for the user's attributes.
    Traits(BTreeMap<String, String>),
    /// A `track` Attune has no interaction for, kept as it is.
    Custom(Custom),
    /// Nothing Attune keeps; the closed-set reason.
    Unmapped(&'static str),
}

/// A `track` kept as a custom event.
#[derive(Debug, Clone, PartialEq)]
pub struct Custom {
    /// The event id, as an interaction's would be.
    pub id: uuid::Uuid,
    /// When it happened, on the server's clock (Unix ms).
    pub ts_ms: i64,
    /// The `track`'s name.
    pub name: String,
    /// Its properties.
    pub properties: Map<String, Value>,
}

/// Longest custom event name, in bytes.
pub const MAX_CUSTOM_NAME_BYTES: usize = 256;

/// Why a message cannot be taken: the field at fault and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The message's field.
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

fn refused(field: &'static str, message: impl Into<String>) -> Refused {
    Refused {
        field,
        message: message.into(),
    }
}

/// An id field as a string (SDKs send numbers too); `None` when absent or empty.
pub fn id_of(v: &Option<Value>) -> Option<String> {
    match v {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

fn millis(field: &'static str, s: &str) -> Result<i64, Refused> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|_| refused(field, format!("`{field}` is not an ISO 8601 time: {s:?}")))
}

/// When the message happened on the server's clock: `timestamp` as given;
/// else `originalTimestamp` moved by the client's clock skew
/// (`received − sentAt`, the message's or the batch's); else `received`.
pub fn event_time(
    m: &Message,
    batch_sent_at: Option<&str>,
    received_ms: i64,
) -> Result<i64, Refused> {
    if let Some(t) = &m.timestamp {
        return millis("timestamp", t);
    }
    let Some(original) = &m.original_timestamp else {
        return Ok(received_ms);
    };
    let original = millis("originalTimestamp", original)?;
    let sent = match m.sent_at.as_deref().or(batch_sent_at) {
        Some(s) => millis("sentAt", s)?,
        None => return Ok(original),
    };
    Ok(original + (received_ms - sent))
}

/// The event id of `message_id` at `site`.
pub fn event_id(site: &str, message_id: &str) -> uuid::Uuid {
    if let Ok(id) = uuid::Uuid::parse_str(message_id) {
        if id.get_version_num() == 7 {
            return id;
        }
    }
    let digest = Sha256::digest(format!("{site}\0{message_id}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    bytes[6] = (bytes[6] & 0x0f) | 0x70; // version 7
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 9562 variant
    uuid::Uuid::from_bytes(bytes)
}

fn item_of(properties: Option<&Map<String, Value>>) -> Option<String> {
    let p = properties?;
    ["item_id", "product_id", "content_id"]
        .iter()
        .find_map(|k| id_of(&p.get(*k).cloned()))
}

/// A page's path: `properties.path`, `context.page.path`, or the path of
/// `properties.url`, in that order.
pub fn page_path(m: &Message) -> Option<String> {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    let props = m.properties.as_ref();
    text(props.and_then(|p| p.get("path")))
        .or_else(|| {
            text(
                m.context
                    .as_ref()
                    .and_then(|c| c.get("page"))
                    .and_then(|p| p.get("path")),
            )
        })
        .or_else(|| path_of(&text(props.and_then(|p| p.get("url")))?))
}

/// The item a page's path names by the site's `item_path`.
fn item_of_path(m: &Message, mapping: &SegmentMapping) -> Option<String> {
    mapping.item_path.as_ref()?.item(&page_path(m)?)
}

fn number(properties: Option<&Map<String, Value>>, key: &str) -> Option<f64> {
    properties?.get(key)?.as_f64()
}

/// The interaction a `track` name records: the site's own names first,
/// then Segment's semantic ones; `None` when neither knows it.
fn interaction_of(name: &str, names: &SegmentMapping) -> Option<&'static str> {
    let name = name.to_ascii_lowercase();
    let own = [
        (&names.click, "click"),
        (&names.view, "view"),
        (&names.impression, "impression"),
        (&names.dwell, "dwell"),
        (&names.scroll, "scroll"),
    ];
    if let Some((_, what)) = own
        .iter()
        .find(|(list, _)| list.iter().any(|n| n.to_ascii_lowercase() == name))
    {
        return Some(what);
    }
    match name.as_str() {
        "product clicked" | "content clicked" | "recommendation clicked" => Some("click"),
        "product viewed" | "content viewed" => Some("view"),
        "product impression" | "promotion viewed" => Some("impression"),
        "content read" => Some("dwell"),
        "content scrolled" => Some("scroll"),
        _ => None,
    }
}

fn message_id(m: &Message) -> Result<&str, Refused> {
    m.message_id
        .as_deref()
        .filter(|id| !id.is_empty())
        .ok_or_else(|| {
            refused(
                "messageId",
                "every message needs a `messageId` (SDKs set one)",
            )
        })
}

/// What the message `kind` (`track`, `page`…) becomes at `ts_ms`, with
/// the site's own `track` `names`.
pub fn map(
    site: &str,
    kind: &str,
    m: &Message,
    ts_ms: i64,
    names: &SegmentMapping,
) -> Result<Mapped, Refused> {
    let props = m.properties.as_ref();
    let interaction = match kind {
        "page" | "screen" => Interaction::PageView,
        "identify" => {
            let traits = m
                .traits
                .iter()
                .flatten()
                .filter_map(|(k, v)| {
                    let v = match v {
                        Value::String(s) => s.clone(),
                        Value::Number(n) => n.to_string(),
                        Value::Bool(b) => b.to_string(),
                        _ => return None,
                    };
                    Some((k.clone(), v))
                })
                .collect();
            return Ok(Mapped::Traits(traits));
        }
        "track" => {
            let name = m
                .event
                .as_deref()
                .filter(|e| !e.is_empty())
                .ok_or_else(|| refused("event", "a track message needs its `event` name"))?;
            match interaction_of(name, names) {
                Some("click") => Interaction::Click,
                Some("view") => Interaction::PageView,
                Some("impression") => Interaction::Impression,
                Some("dwell") => match number(props, "visible_ms") {
                    Some(ms) if ms >= 0.0 => Interaction::Dwell {
                        visible_ms: ms.min(f64::from(u32::MAX)) as u32,
                    },
                    _ => return Ok(Mapped::Unmapped("no_dwell_time")),
                },
                Some("scroll") => match number(props, "depth_pct") {
                    Some(d) if (0.0..=100.0).contains(&d) => {
                        Interaction::Scroll { depth_pct: d as u8 }
                    }
                    _ => return Ok(Mapped::Unmapped("no_scroll_depth")),
                },
                _ => {
                    if name.len() > MAX_CUSTOM_NAME_BYTES {
                        return Err(refused(
                            "event",
                            format!("an event name is at most {MAX_CUSTOM_NAME_BYTES} bytes"),
                        ));
                    }
                    return Ok(Mapped::Custom(Custom {
                        id: event_id(site, message_id(m)?),
                        ts_ms,
                        name: name.to_owned(),
                        properties: m.properties.clone().unwrap_or_default(),
                    }));
                }
            }
        }
        "group" | "alias" => return Ok(Mapped::Unmapped("unused_type")),
        other => {
            return Err(refused(
                "type",
                format!(
                    "unknown message type {other:?}: track, page, screen, identify, group or alias"
                ),
            ))
        }
    };
    let item = match kind {
        "page" => item_of(props).or_else(|| item_of_path(m, names)),
        _ => item_of(props),
    };
    if item.is_none() && interaction != Interaction::PageView {
        // A click or a view of nothing in particular teaches nothing.
        return Ok(Mapped::Unmapped("no_item"));
    }
    Ok(Mapped::Event(Event {
        id: event_id(site, message_id(m)?),
        ts_ms,
        interaction,
        item,
        context: None,
        slot: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ItemPath;
    use serde_json::json;

    fn message(v: Value) -> Message {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn the_semantic_events_map_to_interactions_and_the_rest_is_counted() {
        let none = SegmentMapping::default();
        let m = message(
            json!({"messageId": "m1", "event": "Product Clicked", "properties": {"product_id": 42}}),
        );
        let Mapped::Event(e) = map("s", "track", &m, 7, &none).unwrap() else {
            panic!()
        };
        assert_eq!(
            (e.interaction, e.item.as_deref(), e.ts_ms),
            (Interaction::Click, Some("42"), 7)
        );
        let read = message(
            json!({"messageId": "m2", "event": "Content Read", "properties": {"content_id": "a", "visible_ms": 4000}}),
        );
        let Mapped::Event(e) = map("s", "track", &read, 7, &none).unwrap() else {
            panic!()
        };
        assert_eq!(e.interaction, Interaction::Dwell { visible_ms: 4000 });
        let page = message(json!({"messageId": "m3", "name": "Home"}));
        let Mapped::Event(e) = map("s", "page", &page, 7, &none).unwrap() else {
            panic!()
        };
        assert_eq!((e.interaction, e.item), (Interaction::PageView, None));
        let other = message(
            json!({"messageId": "m4", "event": "Signed Up", "properties": {"plan": "pro"}}),
        );
        let Mapped::Custom(c) = map("s", "track", &other, 7, &none).unwrap() else {
            panic!()
        };
        assert_eq!(
            (c.id, c.ts_ms, c.name.as_str(), &c.properties["plan"]),
            (event_id("s", "m4"), 7, "Signed Up", &json!("pro"))
        );
        let long = message(json!({"messageId": "m", "event": "x".repeat(257)}));
        assert_eq!(
            map("s", "track", &long, 7, &none).unwrap_err().field,
            "event"
        );
        assert_eq!(
            map("s", "group", &other, 7, &none).unwrap(),
            Mapped::Unmapped("unused_type")
        );
        let nameless = message(json!({"messageId": "m5"}));
        assert_eq!(
            map("s", "track", &nameless, 7, &none).unwrap_err().field,
            "event"
        );
        assert_eq!(
            map("s", "bogus", &nameless, 7, &none).unwrap_err().field,
            "type"
        );
        let traits = message(json!({"traits": {"plan": "pro", "age": 41, "nested": {"x": 1}}}));
        let Mapped::Traits(t) = map("s", "identify", &traits, 7, &none).unwrap() else {
            panic!()
        };
        assert_eq!(t.len(), 2);
        assert_eq!(t["age"], "41");
    }

    /// A site's own names record their interaction, whatever their case,
    /// and take precedence over the semantic ones.
    #[test]
    fn a_sites_own_track_names_map_to_its_interactions() {
        let names = SegmentMapping {
            click: vec!["Article Opened".into()],
            impression: vec!["Product Clicked".into()],
            ..SegmentMapping::default()
        };
        let opened = message(
            json!({"messageId": "m", "event": "article opened", "properties": {"item_id": "a"}}),
        );
        let Mapped::Event(e) = map("s", "track", &opened, 7, &names).unwrap() else {
            panic!()
        };
        assert_eq!(e.interaction, Interaction::Click);
        let clicked = message(
            json!({"messageId": "m", "event": "Product Clicked", "properties": {"item_id": "a"}}),
        );
        let Mapped::Event(e) = map("s", "track", &clicked, 7, &names).unwrap() else {
            panic!()
        };
        assert_eq!(e.interaction, Interaction::Impression);
        assert!(matches!(
            map("s", "track", &opened, 7, &SegmentMapping::default()).unwrap(),
            Mapped::Custom(_)
        ));
    }

    /// A page naming no item in its properties is a view of the item its
    /// path names by the site's `item_path`, from `properties.path`,
    /// `context.page.path` or `properties.url`.
    #[test]
    fn a_pages_path_names_its_item_by_the_sites_pattern() {
        let mapping = SegmentMapping {
            item_path: Some(ItemPath::try_from("/articles/{item}".to_owned()).unwrap()),
            ..SegmentMapping::default()
        };
        let item = |v: Value| match map("s", "page", &message(v), 7, &mapping).unwrap() {
            Mapped::Event(e) => e.item,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            item(json!({"messageId": "m", "properties": {"path": "/articles/a7"}})),
            Some("a7".into())
        );
        assert_eq!(
            item(json!({"messageId": "m", "context": {"page": {"path": "/articles/a8"}}})),
            Some("a8".into())
        );
        assert_eq!(
            item(
                json!({"messageId": "m", "properties": {"url": "https://news.example/articles/a9?ref=x"}})
            ),
            Some("a9".into())
        );
        // The properties' item first; a path the pattern does not match names none.
        assert_eq!(
            item(json!({"messageId": "m", "properties": {"item_id": "b", "path": "/articles/a7"}})),
            Some("b".into())
        );
        assert_eq!(
            item(json!({"messageId": "m", "properties": {"path": "/articles/a7/comments"}})),
            None
        );
        assert_eq!(
            item(json!({"messageId": "m", "properties": {"path": "/about"}})),
            None
        );
        assert!(ItemPath::try_from("articles".to_owned()).is_err());
        assert!(ItemPath::try_from("/a/{item}/{item}".to_owned()).is_err());
    }

    #[test]
    fn a_message_id_gives_the_same_event_id_on_every_retry() {
        assert_eq!(
            event_id("s", "node-next-1-abc"),
            event_id("s", "node-next-1-abc")
        );
        assert_ne!(
            event_id("s", "node-next-1-abc"),
            event_id("t", "node-next-1-abc")
        );
        assert_eq!(event_id("s", "node-next-1-abc").get_version_num(), 7);
        let v7 = "019aef3c-1b2a-7c3d-8e4f-5a6b7c8d9e0f";
        assert_eq!(event_id("s", v7).to_string(), v7);
        // A UUIDv4 (analytics-python's) is hashed like any other id.
        let v4 = "0b5c7c16-3d0c-4e1e-9d0c-3c3a5f0b9a11";
        assert_eq!(event_id("s", v4).get_version_num(), 7);
    }

    #[test]
    fn original_timestamps_are_corrected_by_the_clients_clock_skew() {
        let m = message(json!({"originalTimestamp": "2026-12-05T10:00:00.000Z"}));
        let sent = "2026-12-05T10:00:05.000Z";
        let received = millis("x", "2026-12-05T10:01:05.000Z").unwrap();
        let t = event_time(&m, Some(sent), received).unwrap();
        // The client's clock was a minute behind.
        assert_eq!(t, millis("x", "2026-12-05T10:01:00.000Z").unwrap());
        let given = message(json!({"timestamp": "2026-12-05T09:00:00Z"}));
        assert_eq!(
            event_time(&given, Some(sent), received).unwrap(),
            millis("x", "2026-12-05T09:00:00Z").unwrap()
        );
        assert_eq!(
            event_time(&Message::default(), None, received).unwrap(),
            received
        );
        let bad = message(json!({"timestamp": "yesterday"}));
        assert_eq!(
            event_time(&bad, None, received).unwrap_err().field,
            "timestamp"
        );
    }
}
