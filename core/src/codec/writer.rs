//! The MessagePack writer for batches: the exact bytes rmp-serde produces
//! for the wire structs (maps with short keys, smallest integer forms), written
//! by hand. Through serde the encoder measured ~15 KB of the tracker's wasm;
//! this is ~2 KB. `codec::tests` and the property tests check it byte for byte
//! against rmp-serde, and the golden vectors pin the result.

use crate::event::{Batch, Event, Interaction};
use crate::SCHEMA_VERSION;

struct Writer(Vec<u8>);

impl Writer {
    fn map(&mut self, len: usize) {
        match len {
            0..=15 => self.0.push(0x80 | len as u8),
            _ => {
                self.0.push(0xde);
                self.0.extend_from_slice(&(len as u16).to_be_bytes());
            }
        }
    }

    fn array(&mut self, len: usize) {
        match len {
            0..=15 => self.0.push(0x90 | len as u8),
            16..=0xffff => {
                self.0.push(0xdc);
                self.0.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                self.0.push(0xdd);
                self.0.extend_from_slice(&(len as u32).to_be_bytes());
            }
        }
    }

    fn str(&mut self, s: &str) {
        let len = s.len();
        match len {
            0..=31 => self.0.push(0xa0 | len as u8),
            32..=0xff => self.0.extend_from_slice(&[0xd9, len as u8]),
            0x100..=0xffff => {
                self.0.push(0xda);
                self.0.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                self.0.push(0xdb);
                self.0.extend_from_slice(&(len as u32).to_be_bytes());
            }
        }
        self.0.extend_from_slice(s.as_bytes());
    }

    fn uint(&mut self, n: u64) {
        match n {
            0..=0x7f => self.0.push(n as u8),
            0x80..=0xff => self.0.extend_from_slice(&[0xcc, n as u8]),
            0x100..=0xffff => {
                self.0.push(0xcd);
                self.0.extend_from_slice(&(n as u16).to_be_bytes());
            }
            0x1_0000..=0xffff_ffff => {
                self.0.push(0xce);
                self.0.extend_from_slice(&(n as u32).to_be_bytes());
            }
            _ => {
                self.0.push(0xcf);
                self.0.extend_from_slice(&n.to_be_bytes());
            }
        }
    }

    fn int(&mut self, n: i64) {
        if n >= 0 {
            return self.uint(n as u64);
        }
        match n {
            -32..=-1 => self.0.push(n as i8 as u8),
            -128..=-33 => self.0.extend_from_slice(&[0xd0, n as i8 as u8]),
            -32768..=-129 => {
                self.0.push(0xd1);
                self.0.extend_from_slice(&(n as i16).to_be_bytes());
            }
            -2_147_483_648..=-32769 => {
                self.0.push(0xd2);
                self.0.extend_from_slice(&(n as i32).to_be_bytes());
            }
            _ => {
                self.0.push(0xd3);
                self.0.extend_from_slice(&n.to_be_bytes());
            }
        }
    }

    fn bin16(&mut self, bytes: &[u8; 16]) {
        self.0.extend_from_slice(&[0xc4, 16]);
        self.0.extend_from_slice(bytes);
    }
}

fn event(w: &mut Writer, e: &Event) {
    let value = match e.interaction {
        Interaction::Scroll { depth_pct } => Some(("dp", u64::from(depth_pct))),
        Interaction::Dwell { visible_ms } => Some(("ms", u64::from(visible_ms))),
        _ => None,
    };
    w.map(
        3 + usize::from(e.item.is_some())
            + usize::from(value.is_some())
            + usize::from(e.context.is_some())
            + 2 * usize::from(e.slot.is_some()),
    );
    w.str("i");
    w.bin16(e.id.as_bytes());
    w.str("k");
    w.str(e.kind().as_str());
    w.str("t");
    w.int(e.ts_ms);
    if let Some(item) = &e.item {
        w.str("it");
        w.str(item);
    }
    if let Some((key, v)) = value {
        w.str(key);
        w.uint(v);
    }
    if let Some(c) = &e.context {
        let n = [
            c.path.is_some(),
            c.referrer.is_some(),
            c.viewport.is_some(),
            c.device.is_some(),
        ]
        .iter()
        .filter(|p| **p)
        .count();
        w.str("c");
        w.map(n);
        if let Some(p) = &c.path {
            w.str("p");
            w.str(p);
        }
        if let Some(r) = &c.referrer {
            w.str("r");
            w.str(r);
        }
        if let Some(v) = c.viewport {
            w.str("w");
            w.array(2);
            w.uint(u64::from(v.width));
            w.uint(u64::from(v.height));
        }
        if let Some(d) = c.device {
            w.str("dc");
            w.str(d.as_str());
        }
    }
    if let Some(slot) = &e.slot {
        w.str("sv");
        w.str(&slot.serve_id);
        w.str("ps");
        w.uint(u64::from(slot.position));
    }
}

/// The batch as MessagePack.
pub fn write_batch(b: &Batch) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(64 + 48 * b.events.len()));
    w.map(5 + usize::from(b.user_token.is_some()) + usize::from(b.dropped != 0));
    w.str("v");
    w.uint(u64::from(SCHEMA_VERSION));
    w.str("s");
    w.str(&b.site_key);
    w.str("a");
    w.str(&b.anonymous_id);
    if let Some(t) = &b.user_token {
        w.str("u");
        w.str(t);
    }
    w.str("t");
    w.int(b.sent_at_ms);
    if b.dropped != 0 {
        w.str("d");
        w.uint(u64::from(b.dropped));
    }
    w.str("e");
    w.array(b.events.len());
    for e in &b.events {
        event(&mut w, e);
    }
    w.0
}
