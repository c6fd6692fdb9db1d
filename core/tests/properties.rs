//! Property tests of the codec and the decay math.

use attune_core::codec::{decode_json, decode_msgpack, encode_json, encode_msgpack};
use attune_core::{
    Affinities, Batch, Context, DecayedScore, DeviceClass, Event, HalfLife, Interaction, Limits,
    Slot, Viewport,
};
use proptest::prelude::*;

const SENT_AT: i64 = 1_800_000_000_000;

fn id_string() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_.:-]{1,64}"
}

fn interaction() -> impl Strategy<Value = Interaction> {
    prop_oneof![
        Just(Interaction::PageView),
        Just(Interaction::Click),
        Just(Interaction::Impression),
        (0u8..=100).prop_map(|depth_pct| Interaction::Scroll { depth_pct }),
        (0u32..=86_400_000).prop_map(|visible_ms| Interaction::Dwell { visible_ms }),
    ]
}

fn context() -> impl Strategy<Value = Context> {
    (
        proptest::option::of("/[a-z0-9/é-]{0,40}"),
        proptest::option::of("https://[a-z]{1,12}\\.example/[a-z]{0,10}"),
        proptest::option::of((any::<u16>(), any::<u16>())),
        proptest::option::of(prop_oneof![
            Just(DeviceClass::Desktop),
            Just(DeviceClass::Mobile),
            Just(DeviceClass::Tablet),
            Just(DeviceClass::Other),
        ]),
    )
        .prop_map(|(path, referrer, viewport, device)| Context {
            path,
            referrer,
            viewport: viewport.map(|(width, height)| Viewport { width, height }),
            device,
        })
}

fn event() -> impl Strategy<Value = Event> {
    (
        any::<[u8; 10]>(),
        -7 * 24 * 3_600_000i64..=300_000,
        interaction(),
        proptest::option::of("[A-Za-z0-9_-]{1,128}"),
        proptest::option::of(context()),
        proptest::option::of(("[A-Za-z0-9_.:-]{1,64}", any::<u8>())),
    )
        .prop_map(|(rand, offset, interaction, item, context, slot)| {
            let ts_ms = SENT_AT + offset;
            let needs_item = matches!(interaction, Interaction::Click | Interaction::Impression);
            Event {
                id: uuid::Builder::from_unix_timestamp_millis(ts_ms as u64, &rand).into_uuid(),
                ts_ms,
                interaction,
                item: if needs_item {
                    Some(item.unwrap_or_else(|| "item".into()))
                } else {
                    item
                },
                context,
                slot: slot
                    .filter(|_| needs_item)
                    .map(|(serve_id, position)| Slot { serve_id, position }),
            }
        })
}

fn batch() -> impl Strategy<Value = Batch> {
    (
        id_string(),
        id_string(),
        proptest::option::of("[A-Za-z0-9._-]{1,300}"),
        any::<u32>(),
        proptest::collection::vec(event(), 1..40),
    )
        .prop_map(
            |(site_key, anonymous_id, user_token, dropped, mut events)| {
                // Ids are random; make them unique the way a real tracker would.
                events.sort_by_key(|e| e.id);
                events.dedup_by_key(|e| e.id);
                Batch {
                    site_key,
                    anonymous_id,
                    user_token,
                    sent_at_ms: SENT_AT,
                    dropped,
                    events,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn msgpack_round_trips_any_valid_batch(b in batch()) {
        let bytes = encode_msgpack(&b);
        prop_assert_eq!(decode_msgpack(&bytes, &Limits::default()), Ok(b));
    }

    #[test]
    fn the_msgpack_writer_equals_rmp_serde(b in batch()) {
        prop_assert_eq!(encode_msgpack(&b), attune_core::codec::encode_msgpack_serde(&b));
    }

    #[test]
    fn json_round_trips_any_valid_batch(b in batch()) {
        let bytes = encode_json(&b);
        prop_assert_eq!(decode_json(&bytes, &Limits::default()), Ok(b));
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = decode_msgpack(&bytes, &Limits::default());
        let _ = decode_json(&bytes, &Limits::default());
    }

    /// Random bytes rarely get past the first marker; corrupting a valid batch
    /// reaches every field's decoding and validation.
    #[test]
    fn decoding_corrupted_batches_never_panics(
        b in batch(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        for mut bytes in [encode_msgpack(&b), encode_json(&b)] {
            for (at, byte) in &edits {
                let i = at.index(bytes.len());
                bytes[i] = *byte;
            }
            let _ = decode_msgpack(&bytes, &Limits::default());
            let _ = decode_json(&bytes, &Limits::default());
            bytes.truncate(cut.index(bytes.len()));
            let _ = decode_msgpack(&bytes, &Limits::default());
            let _ = decode_json(&bytes, &Limits::default());
        }
    }

    /// Any order of the same events, and any split into two partial sums merged
    /// afterwards, reaches the same decayed score (up to rounding).
    #[test]
    fn decay_merge_is_order_independent(
        events in proptest::collection::vec((0.0f64..10.0, 0i64..30 * 86_400_000), 1..60),
        seed in any::<u64>(),
        split in any::<prop::sample::Index>(),
        half_life_h in 0.1f64..500.0,
    ) {
        let hl = HalfLife::from_hours(half_life_h).unwrap();
        let fold = |evs: &[(f64, i64)]| evs.iter().fold(DecayedScore::default(), |mut s, (w, t)| {
            s.add(*w, *t, hl);
            s
        });
        let in_order = fold(&events);
        let mut shuffled = events.clone();
        // Deterministic shuffle from the seed (Fisher-Yates with an LCG).
        let mut x = seed | 1;
        for i in (1..shuffled.len()).rev() {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            shuffled.swap(i, (x >> 33) as usize % (i + 1));
        }
        let reordered = fold(&shuffled);
        let (left, right) = shuffled.split_at(split.index(shuffled.len() + 1));
        let merged = fold(left).merge(fold(right), hl);

        let at = events.iter().map(|e| e.1).max().unwrap();
        let expected = in_order.value_at(at, hl);
        for got in [reordered.value_at(at, hl), merged.value_at(at, hl)] {
            prop_assert!((got - expected).abs() <= 1e-12 * expected.abs().max(1.0),
                "{got} != {expected}");
        }
    }

    #[test]
    fn affinity_merge_equals_recording_everything_in_one_place(
        events in proptest::collection::vec((0usize..4, 0.0f64..5.0, 0i64..86_400_000), 1..40),
        split in any::<prop::sample::Index>(),
    ) {
        const TAGS: [&str; 4] = ["arts", "sports", "tech", "world"];
        let hl = HalfLife::from_hours(6.0).unwrap();
        let record = |evs: &[(usize, f64, i64)]| {
            let mut a = Affinities::new();
            for (tag, w, t) in evs {
                a.record([TAGS[*tag]], *w, *t, hl);
            }
            a
        };
        let whole = record(&events);
        let (l, r) = events.split_at(split.index(events.len() + 1));
        let mut merged = record(r);
        merged.merge(&record(l), hl);
        let now = 86_400_000;
        for tag in TAGS {
            let (a, b) = (whole.value_at(tag, now, hl), merged.value_at(tag, now, hl));
            prop_assert!((a - b).abs() <= 1e-12 * a.abs().max(1.0), "{tag}: {a} != {b}");
        }
    }
}
