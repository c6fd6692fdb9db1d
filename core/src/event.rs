//! Typed events and batches: what the rest of the code works with once the
//! [`codec`](crate::codec) has checked the bytes.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The kinds of interaction the tracker reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A page (or a single-page-app route) was shown.
    PageView,
    /// An element carrying an item id was clicked.
    Click,
    /// The deepest point of a page or item reached, in percent.
    Scroll,
    /// Milliseconds a page or item was actually visible to the person.
    Dwell,
    /// A recommended item was shown (≥ 50 % visible for ≥ 1 s).
    Impression,
}

impl EventKind {
    /// Every kind, in wire order.
    pub const ALL: [EventKind; 5] = [
        EventKind::PageView,
        EventKind::Click,
        EventKind::Scroll,
        EventKind::Dwell,
        EventKind::Impression,
    ];

    /// The name used on the wire and in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::PageView => "page_view",
            EventKind::Click => "click",
            EventKind::Scroll => "scroll",
            EventKind::Dwell => "dwell",
            EventKind::Impression => "impression",
        }
    }

    /// Parses a wire name; `None` for anything else.
    pub fn parse(name: &str) -> Option<Self> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An interaction with the data only its kind carries.
///
/// The serde form (`{"kind": "scroll", "depth_pct": 80}`) is for the origin's
/// internal records; the tracker's wire format is in [`codec`](crate::codec).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Interaction {
    /// See [`EventKind::PageView`].
    PageView,
    /// See [`EventKind::Click`].
    Click,
    /// See [`EventKind::Scroll`].
    Scroll {
        /// Maximum depth reached, 0–100.
        depth_pct: u8,
    },
    /// See [`EventKind::Dwell`].
    Dwell {
        /// Visible time, paused while hidden, blurred or idle.
        visible_ms: u32,
    },
    /// See [`EventKind::Impression`].
    Impression,
}

impl Interaction {
    /// The kind of this interaction.
    pub fn kind(&self) -> EventKind {
        match self {
            Interaction::PageView => EventKind::PageView,
            Interaction::Click => EventKind::Click,
            Interaction::Scroll { .. } => EventKind::Scroll,
            Interaction::Dwell { .. } => EventKind::Dwell,
            Interaction::Impression => EventKind::Impression,
        }
    }
}

/// Coarse device class, reported by the client or derived from the User-Agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceClass {
    /// Laptops and desktops.
    Desktop,
    /// Phones.
    Mobile,
    /// Tablets.
    Tablet,
    /// TVs, consoles, bots, anything else.
    Other,
}

impl DeviceClass {
    /// Every class.
    pub const ALL: [DeviceClass; 4] = [
        DeviceClass::Desktop,
        DeviceClass::Mobile,
        DeviceClass::Tablet,
        DeviceClass::Other,
    ];

    /// The name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceClass::Desktop => "desktop",
            DeviceClass::Mobile => "mobile",
            DeviceClass::Tablet => "tablet",
            DeviceClass::Other => "other",
        }
    }

    /// Parses a wire name; `None` for anything else.
    pub fn parse(name: &str) -> Option<Self> {
        DeviceClass::ALL.into_iter().find(|d| d.as_str() == name)
    }
}

/// Viewport size in CSS pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Viewport {
    /// Width.
    pub width: u16,
    /// Height.
    pub height: u16,
}

/// Where an event happened. Every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Context {
    /// Page path (no query string: the tracker strips it for privacy).
    pub path: Option<String>,
    /// Referrer URL.
    pub referrer: Option<String>,
    /// Viewport size.
    pub viewport: Option<Viewport>,
    /// Device class.
    pub device: Option<DeviceClass>,
}

/// One interaction, as the client recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Client-generated UUIDv7; kept across every retry so the server can deduplicate.
    pub id: Uuid,
    /// Client clock, Unix milliseconds.
    pub ts_ms: i64,
    /// What happened.
    pub interaction: Interaction,
    /// The item (article, product…) it happened to, if any.
    pub item: Option<String>,
    /// Where it happened.
    pub context: Option<Context>,
    /// The rail slot of a recommended item clicked or shown (clicks and
    /// impressions only).
    pub slot: Option<Slot>,
}

/// Where a recommended item was shown: the serve (one reply of the origin or
/// the edge, see [`crate::rail`]) that placed it, and its position in the
/// rail as the page showed it, 0 first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slot {
    /// The reply's `serve_id`.
    pub serve_id: String,
    /// 0-based position in the rail.
    pub position: u8,
}

impl Event {
    /// The kind of this event.
    pub fn kind(&self) -> EventKind {
        self.interaction.kind()
    }
}

/// What the tracker sends in one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Public, write-only key of the site.
    pub site_key: String,
    /// Stable anonymous id of the browser (or app install).
    pub anonymous_id: String,
    /// Signed user token minted by the site's back end, when the person is known.
    pub user_token: Option<String>,
    /// Client clock when the batch was sent, Unix milliseconds; the server corrects
    /// client clock skew with it.
    pub sent_at_ms: i64,
    /// Events the client had to drop (storage full) since its last delivered batch.
    pub dropped: u32,
    /// The events, oldest first.
    pub events: Vec<Event>,
}
