//! The serde shape of a batch on the wire (short keys, lenient types) and its
//! validation into the typed [`Batch`](crate::event::Batch).

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

use super::{DecodeError, Problem};
use crate::event::{Batch, Context, DeviceClass, Event, EventKind, Interaction, Slot, Viewport};
use crate::limits::Limits;
use crate::SCHEMA_VERSION;

/// Rewrites a parser path of short keys (`e[3].c.w`) with long names
/// (`events[3].context.viewport`).
pub(super) fn long_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    #[derive(Clone, Copy)]
    enum Level {
        Batch,
        Event,
        Context,
        Other,
    }
    let mut level = Level::Batch;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                let long = match level {
                    Level::Batch => BATCH_KEYS.iter().find(|(s, _)| s == key),
                    Level::Event => EVENT_KEYS.iter().find(|(s, _)| s == key),
                    Level::Context => CONTEXT_KEYS.iter().find(|(s, _)| s == key),
                    Level::Other => None,
                }
                .map_or(key.as_str(), |(_, long)| long);
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(long);
                level = match (level, long) {
                    (Level::Batch, "events") => Level::Event,
                    (Level::Event, "context") => Level::Context,
                    _ => Level::Other,
                };
            }
            Segment::Unknown => out.push_str(".?"),
        }
    }
    if out.is_empty() {
        out.push('.');
    }
    out
}

const BATCH_KEYS: &[(&str, &str)] = &[
    ("v", "schema_version"),
    ("s", "site_key"),
    ("a", "anonymous_id"),
    ("u", "user_token"),
    ("t", "sent_at"),
    ("d", "dropped"),
    ("e", "events"),
];
const EVENT_KEYS: &[(&str, &str)] = &[
    ("i", "id"),
    ("k", "kind"),
    ("t", "ts"),
    ("it", "item"),
    ("dp", "depth_pct"),
    ("ms", "visible_ms"),
    ("c", "context"),
    ("sv", "serve_id"),
    ("ps", "position"),
];
const CONTEXT_KEYS: &[(&str, &str)] = &[
    ("p", "path"),
    ("r", "referrer"),
    ("w", "viewport"),
    ("dc", "device"),
];

/// A struct the protocol sends as a map. serde's derived structs also take a
/// sequence (fields by position), which would silently rebind values when a
/// field is added: the protocol says maps, so a sequence is refused ("invalid
/// type: sequence, expected a map") in both encodings.
pub(super) struct MapOnly<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for MapOnly<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct MapVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for MapVisitor<T> {
            type Value = MapOnly<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(MapOnly)
            }
        }
        d.deserialize_map(MapVisitor(PhantomData))
    }
}

impl<T: Serialize> Serialize for MapOnly<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

#[derive(Serialize, Deserialize)]
pub(super) struct WireBatch<'a> {
    #[serde(rename = "v", alias = "schema_version")]
    version: u64,
    #[serde(rename = "s", alias = "site_key")]
    site_key: Cow<'a, str>,
    #[serde(rename = "a", alias = "anonymous_id")]
    anonymous_id: Cow<'a, str>,
    #[serde(
        rename = "u",
        alias = "user_token",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    user_token: Option<Cow<'a, str>>,
    #[serde(rename = "t", alias = "sent_at")]
    sent_at: i64,
    #[serde(
        rename = "d",
        alias = "dropped",
        default,
        skip_serializing_if = "is_zero"
    )]
    dropped: u32,
    #[serde(rename = "e", alias = "events")]
    events: Vec<MapOnly<WireEvent<'a>>>,
}

#[derive(Serialize, Deserialize)]
struct WireEvent<'a> {
    #[serde(rename = "i", alias = "id")]
    id: Uuid,
    #[serde(rename = "k", alias = "kind")]
    kind: Cow<'a, str>,
    #[serde(rename = "t", alias = "ts")]
    ts: i64,
    #[serde(
        rename = "it",
        alias = "item",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    item: Option<Cow<'a, str>>,
    #[serde(
        rename = "dp",
        alias = "depth_pct",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    depth_pct: Option<i64>,
    #[serde(
        rename = "ms",
        alias = "visible_ms",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    visible_ms: Option<i64>,
    #[serde(
        rename = "c",
        alias = "context",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    context: Option<MapOnly<WireContext<'a>>>,
    #[serde(
        rename = "sv",
        alias = "serve_id",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    serve_id: Option<Cow<'a, str>>,
    #[serde(
        rename = "ps",
        alias = "position",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    position: Option<i64>,
}

#[derive(Serialize, Deserialize)]
struct WireContext<'a> {
    #[serde(
        rename = "p",
        alias = "path",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    path: Option<Cow<'a, str>>,
    #[serde(
        rename = "r",
        alias = "referrer",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    referrer: Option<Cow<'a, str>>,
    #[serde(
        rename = "w",
        alias = "viewport",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    viewport: Option<(u16, u16)>,
    #[serde(
        rename = "dc",
        alias = "device",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    device: Option<Cow<'a, str>>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl<'a> From<&'a Batch> for WireBatch<'a> {
    fn from(b: &'a Batch) -> Self {
        WireBatch {
            version: u64::from(SCHEMA_VERSION),
            site_key: Cow::Borrowed(&b.site_key),
            anonymous_id: Cow::Borrowed(&b.anonymous_id),
            user_token: b.user_token.as_deref().map(Cow::Borrowed),
            sent_at: b.sent_at_ms,
            dropped: b.dropped,
            events: b
                .events
                .iter()
                .map(|e| MapOnly(WireEvent::from(e)))
                .collect(),
        }
    }
}

impl<'a> From<&'a Event> for WireEvent<'a> {
    fn from(e: &'a Event) -> Self {
        let (depth_pct, visible_ms) = match e.interaction {
            Interaction::Scroll { depth_pct } => (Some(i64::from(depth_pct)), None),
            Interaction::Dwell { visible_ms } => (None, Some(i64::from(visible_ms))),
            _ => (None, None),
        };
        WireEvent {
            id: e.id,
            kind: Cow::Borrowed(e.kind().as_str()),
            ts: e.ts_ms,
            item: e.item.as_deref().map(Cow::Borrowed),
            depth_pct,
            visible_ms,
            context: e.context.as_ref().map(|c| {
                MapOnly(WireContext {
                    path: c.path.as_deref().map(Cow::Borrowed),
                    referrer: c.referrer.as_deref().map(Cow::Borrowed),
                    viewport: c.viewport.map(|v| (v.width, v.height)),
                    device: c.device.map(|d| Cow::Borrowed(d.as_str())),
                })
            }),
            serve_id: e.slot.as_ref().map(|s| Cow::Borrowed(s.serve_id.as_str())),
            position: e.slot.as_ref().map(|s| i64::from(s.position)),
        }
    }
}

fn invalid(field: impl Into<String>, problem: Problem) -> DecodeError {
    DecodeError::Invalid {
        field: field.into(),
        problem,
    }
}

/// Checks a string's length (in bytes) and that it is not empty.
fn check_str(field: &str, s: &str, max: usize) -> Result<(), DecodeError> {
    if s.is_empty() {
        return Err(invalid(field, Problem::Empty));
    }
    if s.len() > max {
        return Err(invalid(field, Problem::TooLong { len: s.len(), max }));
    }
    Ok(())
}

/// Ids become Kafka keys and Redis key parts: printable ASCII, no spaces, and
/// no `/`, which separates the site from the user in the partition key.
fn check_id(field: &str, s: &str, max: usize) -> Result<(), DecodeError> {
    check_str(field, s, max)?;
    if !s.bytes().all(|b| b.is_ascii_graphic() && b != b'/') {
        return Err(invalid(
            field,
            Problem::BadChars("printable ASCII without spaces or `/`"),
        ));
    }
    Ok(())
}

fn check_range(field: &str, value: i64, min: i64, max: i64) -> Result<(), DecodeError> {
    if value < min || value > max {
        return Err(invalid(field, Problem::OutOfRange { value, min, max }));
    }
    Ok(())
}

impl WireBatch<'_> {
    pub(super) fn validate(self, limits: &Limits) -> Result<Batch, DecodeError> {
        if self.version != u64::from(SCHEMA_VERSION) {
            return Err(DecodeError::UnsupportedVersion {
                found: self.version,
                supported: SCHEMA_VERSION,
            });
        }
        check_id("site_key", &self.site_key, limits.max_id_len)?;
        check_id("anonymous_id", &self.anonymous_id, limits.max_id_len)?;
        if let Some(token) = &self.user_token {
            check_str("user_token", token, limits.max_token_len)?;
        }
        check_range(
            "sent_at",
            self.sent_at,
            limits.min_sent_at_ms,
            limits.max_sent_at_ms,
        )?;
        if self.events.is_empty() {
            return Err(invalid("events", Problem::Empty));
        }
        if self.events.len() > limits.max_events {
            return Err(invalid(
                "events",
                Problem::TooMany {
                    len: self.events.len(),
                    max: limits.max_events,
                },
            ));
        }
        let ts_window = (
            self.sent_at.saturating_sub(limits.max_event_age_ms),
            self.sent_at.saturating_add(limits.max_event_lead_ms),
        );
        let mut seen: HashMap<Uuid, usize> = HashMap::with_capacity(self.events.len());
        let mut events = Vec::with_capacity(self.events.len());
        for (index, MapOnly(event)) in self.events.into_iter().enumerate() {
            if let Some(first) = seen.insert(event.id, index) {
                return Err(invalid(
                    format!("events[{index}].id"),
                    Problem::DuplicateId(first),
                ));
            }
            events.push(event.validate(index, ts_window, limits)?);
        }
        Ok(Batch {
            site_key: self.site_key.into_owned(),
            anonymous_id: self.anonymous_id.into_owned(),
            user_token: self.user_token.map(Cow::into_owned),
            sent_at_ms: self.sent_at,
            dropped: self.dropped,
            events,
        })
    }
}

impl WireEvent<'_> {
    fn validate(
        self,
        index: usize,
        (ts_min, ts_max): (i64, i64),
        limits: &Limits,
    ) -> Result<Event, DecodeError> {
        let field = |name: &str| format!("events[{index}].{name}");
        if self.id.get_version_num() != 7 {
            return Err(invalid(
                field("id"),
                Problem::NotUuidV7(self.id.get_version_num()),
            ));
        }
        let kind = EventKind::parse(&self.kind)
            .ok_or_else(|| invalid(field("kind"), Problem::UnknownKind(self.kind.to_string())))?;
        check_range(&field("ts"), self.ts, ts_min, ts_max)?;
        let forbid = |name: &str, present: bool| match present {
            true => Err(invalid(field(name), Problem::NotAllowedFor(kind))),
            false => Ok(()),
        };
        let interaction = match kind {
            EventKind::Scroll => {
                forbid("visible_ms", self.visible_ms.is_some())?;
                let depth = self
                    .depth_pct
                    .ok_or_else(|| invalid(field("depth_pct"), Problem::Missing))?;
                check_range(&field("depth_pct"), depth, 0, 100)?;
                Interaction::Scroll {
                    depth_pct: depth as u8,
                }
            }
            EventKind::Dwell => {
                forbid("depth_pct", self.depth_pct.is_some())?;
                let ms = self
                    .visible_ms
                    .ok_or_else(|| invalid(field("visible_ms"), Problem::Missing))?;
                check_range(&field("visible_ms"), ms, 0, i64::from(limits.max_dwell_ms))?;
                Interaction::Dwell {
                    visible_ms: ms as u32,
                }
            }
            other => {
                forbid("depth_pct", self.depth_pct.is_some())?;
                forbid("visible_ms", self.visible_ms.is_some())?;
                match other {
                    EventKind::PageView => Interaction::PageView,
                    EventKind::Click => Interaction::Click,
                    _ => Interaction::Impression,
                }
            }
        };
        if let Some(item) = &self.item {
            check_id(&field("item"), item, limits.max_item_len)?;
        }
        let on_item = matches!(kind, EventKind::Click | EventKind::Impression);
        if on_item && self.item.is_none() {
            return Err(invalid(field("item"), Problem::Missing));
        }
        // A rail slot is a serve and a position together, on a click or an
        // impression of the item it placed.
        let slot = match (self.serve_id, self.position) {
            (None, None) => None,
            _ if !on_item => {
                return Err(invalid(field("serve_id"), Problem::NotAllowedFor(kind)));
            }
            (Some(serve_id), Some(position)) => {
                check_id(&field("serve_id"), &serve_id, limits.max_id_len)?;
                check_range(&field("position"), position, 0, i64::from(u8::MAX))?;
                Some(Slot {
                    serve_id: serve_id.into_owned(),
                    position: position as u8,
                })
            }
            (None, Some(_)) => {
                return Err(invalid(
                    field("serve_id"),
                    Problem::RequiredWith("position"),
                ))
            }
            (Some(_), None) => {
                return Err(invalid(
                    field("position"),
                    Problem::RequiredWith("serve_id"),
                ))
            }
        };
        let context = match self.context {
            None => None,
            Some(MapOnly(c)) => {
                let url = |name: &str, v: &Option<Cow<str>>| match v {
                    Some(v) => check_str(&field(name), v, limits.max_url_len),
                    None => Ok(()),
                };
                url("context.path", &c.path)?;
                url("context.referrer", &c.referrer)?;
                let device = match c.device {
                    None => None,
                    Some(name) => Some(DeviceClass::parse(&name).ok_or_else(|| {
                        invalid(
                            field("context.device"),
                            Problem::UnknownDevice(name.to_string()),
                        )
                    })?),
                };
                Some(Context {
                    path: c.path.map(Cow::into_owned),
                    referrer: c.referrer.map(Cow::into_owned),
                    viewport: c.viewport.map(|(width, height)| Viewport { width, height }),
                    device,
                })
            }
        };
        Ok(Event {
            id: self.id,
            ts_ms: self.ts,
            interaction,
            item: self.item.map(Cow::into_owned),
            context,
            slot,
        })
    }
}
