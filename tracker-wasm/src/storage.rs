//! The tracker's own localStorage format for unsent events: a small
//! hand-written binary layout rather than serde. Deserializing attune-core's
//! events through rmp-serde measured 70+ KB of wasm (serde's untyped
//! `Content` buffering for tagged enums); this codec is a few hundred bytes.
//! It is local to one browser, versioned, and fully bounds-checked: an
//! unreadable snapshot is ignored, never trusted.
//!
//! ```text
//! snapshot := 0x02 dropped:u32 count:u32 event*
//! event    := id:[u8;16] ts:i64 kind:u8 value:u32 item:str? serve:str? context?
//! str?     := len:u16 bytes | 0xFFFF (none)
//! context? := 0x00 | 0x01 path:str? referrer:str? width:u16 height:u16 device:u8
//! ```
//! Integers are little-endian; kinds and devices are numbered in declaration order.
//! `value` is the scroll depth, the visible ms, or a rail slot's position
//! (with `serve`, its serve id). Version 1 (no `serve`) is still read, so
//! events a previous tracker stored survive its upgrade.

use attune_core::{Context, DeviceClass, Event, Interaction, Slot, Viewport};
use uuid::Uuid;

const VERSION: u8 = 2;
const NONE: u16 = u16::MAX;

fn put_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) if s.len() < usize::from(NONE) => {
            out.extend_from_slice(&(s.len() as u16).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        _ => out.extend_from_slice(&NONE.to_le_bytes()),
    }
}

fn device_code(d: Option<DeviceClass>) -> u8 {
    match d {
        None => 0,
        Some(DeviceClass::Desktop) => 1,
        Some(DeviceClass::Mobile) => 2,
        Some(DeviceClass::Tablet) => 3,
        Some(DeviceClass::Other) => 4,
    }
}

/// Encodes `events` and the dropped count.
pub fn encode(events: &[&Event], dropped: u32) -> Vec<u8> {
    let mut out = vec![VERSION];
    out.extend_from_slice(&dropped.to_le_bytes());
    out.extend_from_slice(&(events.len() as u32).to_le_bytes());
    for e in events {
        out.extend_from_slice(e.id.as_bytes());
        out.extend_from_slice(&e.ts_ms.to_le_bytes());
        let position = e.slot.as_ref().map_or(0, |s| u32::from(s.position));
        let (kind, value) = match e.interaction {
            Interaction::PageView => (0u8, 0u32),
            Interaction::Click => (1, position),
            Interaction::Scroll { depth_pct } => (2, u32::from(depth_pct)),
            Interaction::Dwell { visible_ms } => (3, visible_ms),
            Interaction::Impression => (4, position),
        };
        out.push(kind);
        out.extend_from_slice(&value.to_le_bytes());
        put_str(&mut out, e.item.as_deref());
        put_str(&mut out, e.slot.as_ref().map(|s| s.serve_id.as_str()));
        match &e.context {
            None => out.push(0),
            Some(c) => {
                out.push(1);
                put_str(&mut out, c.path.as_deref());
                put_str(&mut out, c.referrer.as_deref());
                let (w, h) = c.viewport.map_or((0, 0), |v| (v.width, v.height));
                out.extend_from_slice(&w.to_le_bytes());
                out.extend_from_slice(&h.to_le_bytes());
                out.push(device_code(c.device));
            }
        }
    }
    out
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn str(&mut self) -> Option<Option<String>> {
        match self.u16()? {
            NONE => Some(None),
            len => Some(Some(
                String::from_utf8(self.take(usize::from(len))?.to_vec()).ok()?,
            )),
        }
    }
}

/// Decodes a snapshot; `None` if it is not one.
pub fn decode(bytes: &[u8]) -> Option<(Vec<Event>, u32)> {
    let mut r = Reader(bytes);
    let version = r.u8()?;
    if version == 0 || version > VERSION {
        return None;
    }
    let dropped = r.u32()?;
    let count = r.u32()?;
    let mut events = Vec::new();
    for _ in 0..count {
        let id = Uuid::from_bytes(r.take(16)?.try_into().ok()?);
        let ts_ms = r.i64()?;
        let (kind, value) = (r.u8()?, r.u32()?);
        let interaction = match kind {
            0 => Interaction::PageView,
            1 => Interaction::Click,
            2 => Interaction::Scroll {
                depth_pct: value.min(100) as u8,
            },
            3 => Interaction::Dwell { visible_ms: value },
            4 => Interaction::Impression,
            _ => return None,
        };
        let item = r.str()?;
        let serve = if version > 1 { r.str()? } else { None };
        let slot = serve.map(|serve_id| Slot {
            serve_id,
            position: value.min(255) as u8,
        });
        let context = match r.u8()? {
            0 => None,
            1 => {
                let (path, referrer) = (r.str()?, r.str()?);
                let (width, height) = (r.u16()?, r.u16()?);
                let device = match r.u8()? {
                    0 => None,
                    1 => Some(DeviceClass::Desktop),
                    2 => Some(DeviceClass::Mobile),
                    3 => Some(DeviceClass::Tablet),
                    4 => Some(DeviceClass::Other),
                    _ => return None,
                };
                Some(Context {
                    path,
                    referrer,
                    viewport: Some(Viewport { width, height }),
                    device,
                })
            }
            _ => return None,
        };
        events.push(Event {
            id,
            ts_ms,
            interaction,
            item,
            context,
            slot,
        });
    }
    r.0.is_empty().then_some((events, dropped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_damage() {
        let events = [
            Event {
                id: Uuid::from_u128(7),
                ts_ms: 1_800_000_000_000,
                interaction: Interaction::Dwell { visible_ms: 4321 },
                item: Some("a-1".into()),
                context: None,
                slot: None,
            },
            Event {
                id: Uuid::from_u128(9),
                ts_ms: 1_800_000_000_000,
                interaction: Interaction::Impression,
                item: Some("a-2".into()),
                context: None,
                slot: Some(Slot {
                    serve_id: "edge.1".into(),
                    position: 7,
                }),
            },
            Event {
                id: Uuid::from_u128(8),
                ts_ms: 1_800_000_000_001,
                interaction: Interaction::PageView,
                item: None,
                context: Some(Context {
                    path: Some("/é".into()),
                    referrer: None,
                    viewport: Some(Viewport {
                        width: 390,
                        height: 844,
                    }),
                    device: Some(DeviceClass::Mobile),
                }),
                slot: None,
            },
        ];
        let bytes = encode(&events.iter().collect::<Vec<_>>(), 3);
        assert_eq!(decode(&bytes), Some((events.to_vec(), 3)));
        for cut in 0..bytes.len() {
            assert_eq!(decode(&bytes[..cut]), None, "truncated at {cut}");
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert_eq!(decode(&extra), None);
    }

    /// A snapshot the previous tracker (format 1, no serve ids) stored.
    #[test]
    fn a_version_1_snapshot_is_still_read() {
        let mut v1 = vec![1u8];
        v1.extend_from_slice(&2u32.to_le_bytes());
        v1.extend_from_slice(&1u32.to_le_bytes());
        v1.extend_from_slice(Uuid::from_u128(7).as_bytes());
        v1.extend_from_slice(&1_800_000_000_000i64.to_le_bytes());
        v1.push(1);
        v1.extend_from_slice(&0u32.to_le_bytes());
        v1.extend_from_slice(&3u16.to_le_bytes());
        v1.extend_from_slice(b"a-1");
        v1.push(0);
        let (events, dropped) = decode(&v1).expect("a version 1 snapshot");
        assert_eq!(dropped, 2);
        assert_eq!(events[0].interaction, Interaction::Click);
        assert_eq!(
            (events[0].item.as_deref(), &events[0].slot),
            (Some("a-1"), &None)
        );
    }
}
