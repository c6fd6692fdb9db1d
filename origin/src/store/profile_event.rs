//! One event as the profile rules receive it: the Redis profile script
//! (MessagePack through `cmsgpack`, so the wire names stay short) and its
//! embedded twin, `StoredProfile::apply`. `consume::apply::by_user` builds them.

use attune_core::rail::Ranker;
use serde::Serialize;

/// A session starts with an event more than this after the latest one
/// before it (web analytics' usual 30 minutes); the profile counts them.
pub const SESSION_GAP_MS: i64 = 30 * 60_000;

/// An event, with its weight and its item's tags, ready for the profile rules.
#[derive(Debug, Clone, Serialize)]
pub struct ProfileEvent {
    /// Event id (simple UUID form).
    pub id: String,
    /// `topic:partition` of the watermark.
    #[serde(rename = "tp")]
    pub topic_partition: String,
    /// Offset in that partition.
    #[serde(rename = "off")]
    pub offset: i64,
    /// Interaction kind (`click`, `dwell`…).
    pub kind: &'static str,
    /// Event time on the server clock, Unix ms.
    #[serde(rename = "ts")]
    pub ts_ms: i64,
    /// The item, if the event names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item: Option<String>,
    /// Visible dwell (dwell events).
    #[serde(rename = "ms", skip_serializing_if = "Option::is_none")]
    pub dwell_ms: Option<u32>,
    /// A dwell long enough to be a read of its item (not a glance): what,
    /// with a click, marks the item consumed.
    #[serde(rename = "rd", skip_serializing_if = "std::ops::Not::not")]
    pub read: bool,
    /// A dwell that is a read if the reader has scrolled the item to this
    /// depth (percent; attune-core's `FeedbackWeights::is_read_through`):
    /// the profile rules compare it with the item's deepest scroll so far.
    #[serde(rename = "rt", skip_serializing_if = "Option::is_none")]
    pub read_through: Option<u8>,
    /// Scroll depth (scroll events).
    #[serde(rename = "dp", skip_serializing_if = "Option::is_none")]
    pub depth_pct: Option<u8>,
    /// The item's tags, from the catalog.
    pub tags: Vec<String>,
    /// Feedback weight.
    #[serde(rename = "w")]
    pub weight: f64,
    /// The user vector's change from this event (the online model).
    #[serde(rename = "ud", skip_serializing_if = "Option::is_none")]
    pub user_delta: Option<Vec<f32>>,
    /// Device class, from the User-Agent.
    #[serde(rename = "dc", skip_serializing_if = "Option::is_none")]
    pub device_class: Option<&'static str>,
    /// Browser.
    #[serde(rename = "br", skip_serializing_if = "Option::is_none")]
    pub browser: Option<String>,
    /// Operating system.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    /// The popularity segments the event also counts toward (from ingest).
    #[serde(skip)]
    pub segments: Vec<String>,
    /// A served item's impression or click: the ranker its serve id names
    /// and the position it was shown at.
    #[serde(skip)]
    pub slot: Option<(Ranker, u8)>,
    /// A click on an interleaved rail: `a` or `b`, the ranking that placed
    /// the item (attune-core's `rail::team_at`); the profile counts it.
    #[serde(rename = "tm", skip_serializing_if = "Option::is_none")]
    pub team: Option<&'static str>,
    /// The model's step toward 0 for this event — an impression of a served
    /// item (attune-core's `FeedbackWeights::exposure`); 0 for any other.
    #[serde(skip)]
    pub exposure: f64,
    /// False when the user already had this id as the round began, or it came
    /// earlier in the same round: what the round learns (model, popularity)
    /// skips it, as the profile rules do.
    #[serde(skip)]
    pub unseen: bool,
    /// True when this record is the first with its id (as the user's
    /// `first` hash says): a replay for a model version catching up
    /// learns it even though the profile already has it.
    #[serde(skip)]
    pub first_record: bool,
}
