//! `cargo xtask bench records`: the interaction topics' record format.
//! Protobuf (`origin/proto`, what ingest writes) beside named MessagePack
//! (rmp-serde on the same `EventRecord`, the format before it) in the same
//! run: bytes per event, and encode and decode time per event over a
//! realistic mix (all five kinds, page context, a logged-in sender with
//! attributes, three segments, batches of 10). Writes target/bench/records.json.

mod common;

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Instant;

use attune_core::{Context, DeviceClass, Event, Interaction, Viewport};
use attune_origin::record::{BatchEncoder, BatchFields, Device, EventRecord};
use uuid::Uuid;

const BATCHES: usize = 2_000;
const PER_BATCH: usize = 10;
const ROUNDS: usize = 15;

fn events(batch: usize) -> Vec<Event> {
    (0..PER_BATCH)
        .map(|i| {
            let n = batch * PER_BATCH + i;
            let interaction = match n % 5 {
                0 => Interaction::PageView,
                1 => Interaction::Click,
                2 => Interaction::Scroll {
                    depth_pct: (n % 101) as u8,
                },
                3 => Interaction::Dwell {
                    visible_ms: 1_000 + n as u32 * 7,
                },
                _ => Interaction::Impression,
            };
            Event {
                id: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 + n as u128),
                ts_ms: 1_800_000_000_000 + n as i64 * 250,
                interaction,
                item: (!n.is_multiple_of(5)).then(|| format!("article-{}", n % 997)),
                context: Some(Context {
                    path: Some(format!("/science/article-{}", n % 997)),
                    referrer: (i == 0).then(|| "https://news.example/".to_owned()),
                    viewport: Some(Viewport {
                        width: 390,
                        height: 844,
                    }),
                    device: Some(DeviceClass::Mobile),
                }),
                slot: None,
            }
        })
        .collect()
}

struct Format {
    name: &'static str,
    encode: fn(&[EventRecord], &mut Vec<Vec<u8>>),
    decode: fn(&[u8]) -> EventRecord,
}

fn protobuf_encode(batch: &[EventRecord], out: &mut Vec<Vec<u8>>) {
    let first = &batch[0];
    let encoder = BatchEncoder::new(&BatchFields {
        site_key: &first.site_key,
        user_id: &first.user_id,
        anonymous_id: &first.anonymous_id,
        received_at_ms: first.received_at_ms,
        clock_skew_ms: first.clock_skew_ms,
        device: &first.device,
        attributes: &first.attributes,
        segments: &first.segments,
        attributes_unknown: first.attributes_unknown,
    });
    for r in batch {
        let mut buf = Vec::with_capacity(256);
        encoder.encode_into(&r.event, r.corrected_ts_ms, &mut buf);
        out.push(buf);
    }
}

fn msgpack_encode(batch: &[EventRecord], out: &mut Vec<Vec<u8>>) {
    for r in batch {
        let mut buf = Vec::with_capacity(256);
        rmp_serde::encode::write_named(&mut buf, r).expect("records serialize");
        out.push(buf);
    }
}

fn main() -> anyhow::Result<()> {
    let device = Device {
        class: Some(DeviceClass::Mobile),
        browser: Some("Mobile Safari".into()),
        os: Some("iPhone".into()),
    };
    let attributes = BTreeMap::from([
        ("locale".to_owned(), "fr".to_owned()),
        ("plan".to_owned(), "premium".to_owned()),
    ]);
    let segments = vec![
        "attr:locale=fr".to_owned(),
        "device:mobile".to_owned(),
        "hour:evening".to_owned(),
    ];
    let batches: Vec<Vec<EventRecord>> = (0..BATCHES)
        .map(|b| {
            events(b)
                .into_iter()
                .map(|event| EventRecord {
                    site_key: "pk_live_news_example".into(),
                    user_id: format!("user-{}", b % 300),
                    anonymous_id: "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".into(),
                    corrected_ts_ms: event.ts_ms - 40,
                    event,
                    received_at_ms: 1_800_000_000_500,
                    clock_skew_ms: -40,
                    device: device.clone(),
                    attributes: attributes.clone(),
                    segments: segments.clone(),
                    attributes_unknown: false,
                })
                .collect()
        })
        .collect();
    let formats = [
        Format {
            name: "protobuf",
            encode: protobuf_encode,
            decode: |b| EventRecord::decode(b).expect("decodes"),
        },
        Format {
            name: "msgpack_named",
            encode: msgpack_encode,
            decode: |b| rmp_serde::from_slice(b).expect("decodes"),
        },
    ];
    let n = (BATCHES * PER_BATCH) as f64;
    // Rounds alternate the formats, so drift on a shared machine hits both;
    // the median round is reported.
    let mut encode_ns: Vec<Vec<f64>> = vec![Vec::new(); formats.len()];
    let mut decode_ns: Vec<Vec<f64>> = vec![Vec::new(); formats.len()];
    let mut bytes = vec![0usize; formats.len()];
    for _ in 0..ROUNDS {
        for (f, format) in formats.iter().enumerate() {
            let mut encoded = Vec::with_capacity(BATCHES * PER_BATCH);
            let t0 = Instant::now();
            for batch in &batches {
                (format.encode)(batch, &mut encoded);
            }
            encode_ns[f].push(t0.elapsed().as_nanos() as f64 / n);
            let t0 = Instant::now();
            for b in &encoded {
                black_box((format.decode)(b));
            }
            decode_ns[f].push(t0.elapsed().as_nanos() as f64 / n);
            bytes[f] = encoded.iter().map(Vec::len).sum();
            let all: Vec<&EventRecord> = batches.iter().flatten().collect();
            assert!(
                encoded
                    .iter()
                    .zip(&all)
                    .all(|(b, r)| (format.decode)(b) == **r),
                "{} round-trips",
                format.name
            );
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "records benchmark: {} events in batches of {PER_BATCH}, median of {ROUNDS} rounds",
        BATCHES * PER_BATCH
    );
    let mut json = serde_json::Map::new();
    for (f, format) in formats.iter().enumerate() {
        let (enc, dec) = (median(&mut encode_ns[f]), median(&mut decode_ns[f]));
        let per_event = bytes[f] as f64 / n;
        println!(
            "  {:14} {per_event:6.1} bytes/event   encode {enc:6.0} ns/event   decode {dec:6.0} ns/event",
            format.name
        );
        json.insert(
            format.name.into(),
            serde_json::json!({"bytes_per_event": per_event, "encode_ns": enc, "decode_ns": dec}),
        );
    }
    let ratio = |m: &serde_json::Map<String, serde_json::Value>, key: &str| {
        m["protobuf"][key].as_f64().unwrap() / m["msgpack_named"][key].as_f64().unwrap()
    };
    let ratios = serde_json::json!({
        "bytes": ratio(&json, "bytes_per_event"),
        "encode": ratio(&json, "encode_ns"),
        "decode": ratio(&json, "decode_ns"),
    });
    println!(
        "  protobuf / msgpack: bytes {:.2}x, encode {:.2}x, decode {:.2}x",
        ratios["bytes"].as_f64().unwrap(),
        ratios["encode"].as_f64().unwrap(),
        ratios["decode"].as_f64().unwrap()
    );
    json.insert("protobuf_over_msgpack".into(), ratios);
    common::write_report("records", &json)?;
    Ok(())
}
