//! The message on the interaction topics: one validated, enriched event.
//! Written by ingest, read by the consumers; MessagePack with field names.

use std::collections::BTreeMap;

use attune_core::{DeviceClass, Event};
use serde::{Deserialize, Serialize};

/// What a User-Agent says about the device.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// Coarse class.
    pub class: Option<DeviceClass>,
    /// Browser name, e.g. `Chrome`.
    pub browser: Option<String>,
    /// Operating system, e.g. `Android`.
    pub os: Option<String>,
}

/// One event as stored in Kafka (or the embedded log).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    /// Site.
    pub site_key: String,
    /// The user: the token's user id, or `anon:<anonymous_id>`.
    pub user_id: String,
    /// The browser's anonymous id.
    pub anonymous_id: String,
    /// The event as the client sent it.
    pub event: Event,
    /// Server clock at receipt, Unix ms.
    pub received_at_ms: i64,
    /// `received_at − sent_at`: how far the client clock lags the server's.
    pub clock_skew_ms: i64,
    /// The event time on the server clock (`ts + clock_skew`).
    pub corrected_ts_ms: i64,
    /// Parsed from the User-Agent.
    pub device: Device,
    /// The user's stored static attributes at receipt.
    pub attributes: BTreeMap<String, String>,
    /// The contextual segments (the origin's `segments` module) whose popularity the event
    /// also counts toward, decided at ingest from its whole batch.
    #[serde(default)]
    pub segments: Vec<String>,
}

/// An [`EventRecord`] made of borrowed parts: ingest encodes these (one batch's
/// events share the sender's strings) and consumers decode them as
/// `EventRecord`. Same field names in the same order, hence the same bytes.
#[derive(Debug, Serialize)]
pub struct EventRecordRef<'a> {
    /// Site.
    pub site_key: &'a str,
    /// The user.
    pub user_id: &'a str,
    /// The browser's anonymous id.
    pub anonymous_id: &'a str,
    /// The event as the client sent it.
    pub event: &'a Event,
    /// Server clock at receipt, Unix ms.
    pub received_at_ms: i64,
    /// `received_at − sent_at`.
    pub clock_skew_ms: i64,
    /// `ts + clock_skew`.
    pub corrected_ts_ms: i64,
    /// Parsed from the User-Agent.
    pub device: &'a Device,
    /// The user's stored static attributes at receipt.
    pub attributes: &'a BTreeMap<String, String>,
    /// Popularity segments.
    pub segments: &'a [String],
}

impl EventRecordRef<'_> {
    /// Appends the MessagePack bytes to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        rmp_serde::encode::write_named(out, self).expect("records serialize");
    }
}

impl EventRecord {
    /// MessagePack bytes.
    pub fn encode(&self) -> Vec<u8> {
        rmp_serde::to_vec_named(self).expect("records serialize")
    }

    /// Parses MessagePack bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, rmp_serde::decode::Error> {
        rmp_serde::from_slice(bytes)
    }
}
