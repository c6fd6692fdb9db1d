//! The message on the interaction topics: one validated, enriched event.
//! Written by ingest, read by the consumers. On the wire it is the Protocol
//! Buffers message `attune.record.v1.EventRecord` (`origin/proto/`), so
//! readers in any language decode it from the `.proto` alone; here it is the
//! typed [`EventRecord`], checked on the way in.

mod pb;

use std::collections::BTreeMap;

use attune_core::{DeviceClass, Event};
use prost::Message;
use serde::{Deserialize, Serialize};

pub use pb::{BatchEncoder, BatchFields};

/// The record version this code writes and reads.
pub const VERSION: u32 = 1;

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

/// One event as stored in Kafka (or the embedded log). The serde derives
/// are for tools and for the codec benchmark's MessagePack peer; the log
/// holds protobuf.
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
    pub segments: Vec<String>,
    /// The store could not be asked at receipt: `attributes` says nothing.
    #[serde(default)]
    pub attributes_unknown: bool,
}

/// Why bytes are not a record this code can apply. Each maps to the closed
/// set of dead-letter reasons.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Not a protobuf message of this shape.
    #[error("not an attune.record.v1.EventRecord: {0}")]
    Undecodable(#[from] prost::DecodeError),
    /// A version this reader does not know (a newer writer, or none at all).
    #[error("record version {0}; this reader knows version {VERSION}")]
    UnsupportedVersion(u32),
    /// Decodes, but breaks a rule of the schema's comments.
    #[error("invalid record: {0}")]
    Invalid(String),
}

impl RecordError {
    /// The dead-letter reason: `undecodable`, `unsupported_version` or `invalid`.
    pub fn reason(&self) -> &'static str {
        match self {
            RecordError::Undecodable(_) => "undecodable",
            RecordError::UnsupportedVersion(_) => "unsupported_version",
            RecordError::Invalid(_) => "invalid",
        }
    }
}

impl EventRecord {
    /// Protobuf bytes.
    pub fn encode(&self) -> Vec<u8> {
        pb::EventRecord::from(self).encode_to_vec()
    }

    /// Parses protobuf bytes: the version first, then the version-1 message.
    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        let header = pb::RecordHeader::decode(bytes)?;
        if header.version != VERSION {
            return Err(RecordError::UnsupportedVersion(header.version));
        }
        pb::EventRecord::decode(bytes)?.try_into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use attune_core::{Context, Interaction, Viewport};
    use proptest::prelude::*;
    use uuid::Uuid;

    fn record(interaction: Interaction, item: Option<&str>) -> EventRecord {
        EventRecord {
            site_key: "pk_demo".into(),
            user_id: "anon:a1".into(),
            anonymous_id: "a1".into(),
            event: Event {
                id: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001),
                ts_ms: 1_700_000_000_000,
                interaction,
                item: item.map(str::to_owned),
                context: Some(Context {
                    path: Some("/science/a".into()),
                    referrer: None,
                    viewport: Some(Viewport {
                        width: 390,
                        height: 844,
                    }),
                    device: Some(DeviceClass::Mobile),
                }),
                slot: None,
            },
            received_at_ms: 1_700_000_000_250,
            clock_skew_ms: -40,
            corrected_ts_ms: 1_699_999_999_960,
            device: Device {
                class: Some(DeviceClass::Mobile),
                browser: Some("Safari".into()),
                os: None,
            },
            attributes: BTreeMap::from([("plan".into(), "pro".into())]),
            segments: vec!["device:mobile".into()],
            attributes_unknown: true,
        }
    }

    #[test]
    fn every_interaction_survives_the_round_trip() {
        for interaction in [
            Interaction::PageView,
            Interaction::Click,
            Interaction::Scroll { depth_pct: 100 },
            Interaction::Dwell { visible_ms: 0 },
            Interaction::Dwell {
                visible_ms: u32::MAX,
            },
            Interaction::Impression,
        ] {
            let r = record(interaction, Some("a-1"));
            assert_eq!(EventRecord::decode(&r.encode()).unwrap(), r);
        }
        let mut served = record(Interaction::Impression, Some("a-1"));
        served.event.slot = Some(attune_core::Slot {
            serve_id: "edge.0123456789abcdef0123456789abcdef".into(),
            position: 255,
        });
        assert_eq!(EventRecord::decode(&served.encode()).unwrap(), served);
        served.event.interaction = Interaction::PageView;
        let refused = EventRecord::decode(&served.encode()).unwrap_err();
        assert_eq!(refused.reason(), "invalid", "{refused}");
        let mut bare = record(Interaction::Click, None);
        bare.event.context = None;
        bare.device = Device::default();
        bare.attributes.clear();
        bare.segments.clear();
        assert_eq!(EventRecord::decode(&bare.encode()).unwrap(), bare);
    }

    #[test]
    fn records_start_with_their_version() {
        let bytes = record(Interaction::Click, None).encode();
        assert_eq!(
            &bytes[..2],
            &[0x08, VERSION as u8],
            "field 1, varint, first"
        );
    }

    #[test]
    fn another_version_is_refused_by_name() {
        let mut r = pb::EventRecord::from(&record(Interaction::Click, None));
        for version in [0, 2, 77] {
            r.version = version;
            let e = EventRecord::decode(&r.encode_to_vec()).unwrap_err();
            assert!(matches!(e, RecordError::UnsupportedVersion(v) if v == version));
            assert_eq!(e.reason(), "unsupported_version");
        }
    }

    #[test]
    fn rule_breaking_records_are_invalid() {
        let good = pb::EventRecord::from(&record(Interaction::Scroll { depth_pct: 5 }, None));
        type Break = fn(&mut pb::EventRecord);
        let breaks: [(&str, Break); 5] = [
            ("no event", |r| r.event = None),
            ("short id", |r| r.event.as_mut().unwrap().id.truncate(15)),
            ("no interaction", |r| {
                r.event.as_mut().unwrap().interaction = None
            }),
            ("depth 101", |r| {
                r.event.as_mut().unwrap().interaction =
                    Some(pb::PbInteraction::Scroll(pb::Scroll { depth_pct: 101 }))
            }),
            ("viewport 70000", |r| {
                let ctx = r.event.as_mut().unwrap().context.as_mut().unwrap();
                ctx.viewport.as_mut().unwrap().width = 70_000;
            }),
        ];
        for (name, mut_) in breaks {
            let mut r = good.clone();
            mut_(&mut r);
            let e = EventRecord::decode(&r.encode_to_vec()).unwrap_err();
            assert_eq!(e.reason(), "invalid", "{name}: {e}");
        }
    }

    proptest! {
        /// Whatever the bytes, decoding answers; it never panics.
        #[test]
        fn arbitrary_bytes_decode_or_fail_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = EventRecord::decode(&bytes);
        }
    }
}
