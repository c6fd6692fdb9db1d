//! The prost types generated from `proto/attune/record/v1/record.proto`
//! (see `build.rs`), and the conversions between them and the checked types.

use std::collections::BTreeMap;

use attune_core::{Context, DeviceClass, Event, Interaction, Slot, Viewport};
use prost::Message;
use uuid::Uuid;

use super::{Device, RecordError, VERSION};

#[allow(clippy::all, clippy::pedantic)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/attune.record.v1.rs"));
}

pub(super) use generated::event::Interaction as PbInteraction;
use generated::{self as g};
pub(super) use generated::{EventRecord, RecordHeader};

#[cfg(test)]
pub(super) use generated::Scroll;

/// Encodes one batch's records: the fields its events share once, then per
/// event those bytes followed by the event's own fields. A protobuf parser
/// merges concatenated messages and the two sets of fields are disjoint, so
/// each record is one whole `EventRecord` (the spec lets fields come in any
/// order); a batch costs one encoding of the sender, not one per event.
pub struct BatchEncoder {
    shared: Vec<u8>,
}

/// What every record of a batch has in common.
pub struct BatchFields<'a> {
    /// Site.
    pub site_key: &'a str,
    /// The user.
    pub user_id: &'a str,
    /// The browser's anonymous id.
    pub anonymous_id: &'a str,
    /// Server clock at receipt, Unix ms.
    pub received_at_ms: i64,
    /// `received_at − sent_at`.
    pub clock_skew_ms: i64,
    /// Parsed from the User-Agent.
    pub device: &'a Device,
    /// The user's stored static attributes at receipt.
    pub attributes: &'a BTreeMap<String, String>,
    /// Popularity segments.
    pub segments: &'a [String],
    /// The store could not be asked for `attributes`.
    pub attributes_unknown: bool,
}

impl BatchEncoder {
    /// Encodes the shared fields, version first.
    pub fn new(f: &BatchFields) -> Self {
        let shared = EventRecord {
            version: VERSION,
            site_key: f.site_key.to_owned(),
            user_id: f.user_id.to_owned(),
            anonymous_id: f.anonymous_id.to_owned(),
            event: None,
            received_at_ms: f.received_at_ms,
            clock_skew_ms: f.clock_skew_ms,
            corrected_ts_ms: 0,
            device: Some(f.device.into()),
            attributes: f.attributes.clone(),
            segments: f.segments.to_vec(),
            attributes_unknown: f.attributes_unknown,
        }
        .encode_to_vec();
        BatchEncoder { shared }
    }

    /// Appends one event's whole record to `out`.
    pub fn encode_into(&self, event: &Event, corrected_ts_ms: i64, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.shared);
        EventRecord {
            event: Some(event.into()),
            corrected_ts_ms,
            ..Default::default()
        }
        .encode(out)
        .expect("a Vec grows");
    }
}

impl From<&super::EventRecord> for EventRecord {
    fn from(r: &super::EventRecord) -> Self {
        EventRecord {
            version: VERSION,
            site_key: r.site_key.clone(),
            user_id: r.user_id.clone(),
            anonymous_id: r.anonymous_id.clone(),
            event: Some((&r.event).into()),
            received_at_ms: r.received_at_ms,
            clock_skew_ms: r.clock_skew_ms,
            corrected_ts_ms: r.corrected_ts_ms,
            device: Some((&r.device).into()),
            attributes: r.attributes.clone(),
            segments: r.segments.clone(),
            attributes_unknown: r.attributes_unknown,
        }
    }
}

impl TryFrom<EventRecord> for super::EventRecord {
    type Error = RecordError;

    fn try_from(r: EventRecord) -> Result<Self, RecordError> {
        let event = r.event.ok_or_else(|| invalid("event missing"))?;
        Ok(super::EventRecord {
            site_key: r.site_key,
            user_id: r.user_id,
            anonymous_id: r.anonymous_id,
            event: event.try_into()?,
            received_at_ms: r.received_at_ms,
            clock_skew_ms: r.clock_skew_ms,
            corrected_ts_ms: r.corrected_ts_ms,
            device: r.device.map(Device::from).unwrap_or_default(),
            attributes: r.attributes,
            segments: r.segments,
            attributes_unknown: r.attributes_unknown,
        })
    }
}

fn invalid(what: &str) -> RecordError {
    RecordError::Invalid(what.to_owned())
}

impl From<&Event> for g::Event {
    fn from(e: &Event) -> Self {
        let interaction = match e.interaction {
            Interaction::PageView => PbInteraction::PageView(g::PageView {}),
            Interaction::Click => PbInteraction::Click(g::Click {}),
            Interaction::Scroll { depth_pct } => PbInteraction::Scroll(g::Scroll {
                depth_pct: depth_pct.into(),
            }),
            Interaction::Dwell { visible_ms } => PbInteraction::Dwell(g::Dwell { visible_ms }),
            Interaction::Impression => PbInteraction::Impression(g::Impression {}),
        };
        g::Event {
            id: e.id.as_bytes().to_vec(),
            ts_ms: e.ts_ms,
            interaction: Some(interaction),
            item: e.item.clone(),
            context: e.context.as_ref().map(|c| g::Context {
                path: c.path.clone(),
                referrer: c.referrer.clone(),
                viewport: c.viewport.map(|v| g::Viewport {
                    width: v.width.into(),
                    height: v.height.into(),
                }),
                device: class_to_pb(c.device) as i32,
            }),
            slot: e.slot.as_ref().map(|s| g::Slot {
                serve_id: s.serve_id.clone(),
                position: s.position.into(),
            }),
        }
    }
}

impl TryFrom<g::Event> for Event {
    type Error = RecordError;

    fn try_from(e: g::Event) -> Result<Self, RecordError> {
        let id = Uuid::from_slice(&e.id).map_err(|_| invalid("event id is not 16 bytes"))?;
        let interaction = match e.interaction.ok_or_else(|| invalid("no interaction set"))? {
            PbInteraction::PageView(_) => Interaction::PageView,
            PbInteraction::Click(_) => Interaction::Click,
            PbInteraction::Scroll(s) => Interaction::Scroll {
                depth_pct: u8::try_from(s.depth_pct)
                    .ok()
                    .filter(|d| *d <= 100)
                    .ok_or_else(|| invalid("scroll depth above 100 %"))?,
            },
            PbInteraction::Dwell(d) => Interaction::Dwell {
                visible_ms: d.visible_ms,
            },
            PbInteraction::Impression(_) => Interaction::Impression,
        };
        let context = e
            .context
            .map(|c| -> Result<Context, RecordError> {
                let viewport = c
                    .viewport
                    .map(|v| {
                        let side = |px: u32| {
                            u16::try_from(px).map_err(|_| invalid("viewport above 65535 px"))
                        };
                        Ok::<_, RecordError>(Viewport {
                            width: side(v.width)?,
                            height: side(v.height)?,
                        })
                    })
                    .transpose()?;
                Ok(Context {
                    path: c.path,
                    referrer: c.referrer,
                    viewport,
                    device: class_from_pb(c.device),
                })
            })
            .transpose()?;
        Ok(Event {
            id,
            ts_ms: e.ts_ms,
            interaction,
            item: e.item,
            context,
            slot: e
                .slot
                .map(|s| {
                    if !matches!(interaction, Interaction::Click | Interaction::Impression) {
                        return Err(invalid("a rail slot on neither a click nor an impression"));
                    }
                    Ok::<_, RecordError>(Slot {
                        position: u8::try_from(s.position)
                            .map_err(|_| invalid("slot position above 255"))?,
                        serve_id: s.serve_id,
                    })
                })
                .transpose()?,
        })
    }
}

impl From<&Device> for g::Device {
    fn from(d: &Device) -> Self {
        g::Device {
            class: class_to_pb(d.class) as i32,
            browser: d.browser.clone(),
            os: d.os.clone(),
        }
    }
}

impl From<g::Device> for Device {
    fn from(d: g::Device) -> Self {
        Device {
            class: class_from_pb(d.class),
            browser: d.browser,
            os: d.os,
        }
    }
}

fn class_to_pb(class: Option<DeviceClass>) -> g::DeviceClass {
    match class {
        None => g::DeviceClass::Unspecified,
        Some(DeviceClass::Desktop) => g::DeviceClass::Desktop,
        Some(DeviceClass::Mobile) => g::DeviceClass::Mobile,
        Some(DeviceClass::Tablet) => g::DeviceClass::Tablet,
        Some(DeviceClass::Other) => g::DeviceClass::Other,
    }
}

/// A class this reader does not know (added later) reads as unknown: the
/// device is enrichment, not the event.
fn class_from_pb(class: i32) -> Option<DeviceClass> {
    match g::DeviceClass::try_from(class).ok()? {
        g::DeviceClass::Unspecified => None,
        g::DeviceClass::Desktop => Some(DeviceClass::Desktop),
        g::DeviceClass::Mobile => Some(DeviceClass::Mobile),
        g::DeviceClass::Tablet => Some(DeviceClass::Tablet),
        g::DeviceClass::Other => Some(DeviceClass::Other),
    }
}
