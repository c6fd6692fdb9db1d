//! MessagePack and JSON encodings of a [`Batch`], and the checks that turn
//! untrusted bytes into one.
//!
//! Both encodings share one schema: a map per batch, per event and per context,
//! keyed by short names so the tracker's batches stay small. Decoders also accept
//! the long names (the right-hand column), which is what people type when they
//! write JSON by hand; errors always use the long names.
//!
//! | batch | | event | | context | |
//! |---|---|---|---|---|---|
//! | `v` | schema_version | `i` | id (UUIDv7; 16-byte bin in MessagePack, string in JSON) | `p` | path |
//! | `s` | site_key | `k` | kind | `r` | referrer |
//! | `a` | anonymous_id | `t` | ts (Unix ms) | `w` | viewport (`[width, height]`) |
//! | `u` | user_token | `it` | item | `dc` | device |
//! | `t` | sent_at (Unix ms) | `dp` | depth_pct (scroll only) | | |
//! | `d` | dropped | `ms` | visible_ms (dwell only) | | |
//! | `e` | events | `c` | context | | |
//! | | | `sv` | serve_id (rail slot: clicks and impressions only) | | |
//! | | | `ps` | position (0–255, with `sv`) | | |
//!
//! Unknown keys are ignored, so a newer tracker can add optional fields
//! without a schema version bump. Batches, events and contexts must be maps:
//! an array in their place is refused, since fields bound by position would
//! silently change meaning when one is added. Both encodings take at most
//! 15 levels of nesting (unknown keys included). Decoding never panics: every byte string gets
//! either a [`Batch`] that satisfies [`Limits`] or a [`DecodeError`].

mod encoding;
mod error;
#[cfg(feature = "openapi")]
pub mod schema;
mod wire;
mod writer;

pub use encoding::{content_encoding, decoded_body, gunzip, BodyError, ContentEncoding};
pub use error::{DecodeError, Format, Problem};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

use crate::event::Batch;
use crate::limits::Limits;
use crate::SCHEMA_VERSION;
use wire::{long_path, MapOnly, WireBatch};

/// Deepest nesting either decoder takes, in levels of maps and arrays (the
/// schema needs 5: batch, events, event, context, viewport); unknown keys may
/// nest up to it too.
const MAX_DEPTH: usize = 15;

/// Encodes a batch as compact MessagePack (maps with short keys).
pub fn encode_msgpack(batch: &Batch) -> Vec<u8> {
    writer::write_batch(batch)
}

/// The same bytes through rmp-serde and the wire structs: the reference the
/// hand-written writer is tested against.
#[doc(hidden)]
pub fn encode_msgpack_serde(batch: &Batch) -> Vec<u8> {
    rmp_serde::to_vec_named(&WireBatch::from(batch)).expect("Vec writes cannot fail")
}

/// Encodes a batch as JSON with the same short keys.
pub fn encode_json(batch: &Batch) -> Vec<u8> {
    serde_json::to_vec(&WireBatch::from(batch))
        .expect("the wire types serialize into a Vec without fallible parts")
}

/// Checks a batch built in memory (not decoded: a translation from another
/// API) by the same rules as a decoded one, byte size aside; the batch as a
/// decoder would return it.
pub fn check(batch: &Batch, limits: &Limits) -> Result<Batch, DecodeError> {
    WireBatch::from(batch).validate(limits)
}

/// Decodes and validates a MessagePack batch.
pub fn decode_msgpack(bytes: &[u8], limits: &Limits) -> Result<Batch, DecodeError> {
    decode(bytes, limits, Format::MessagePack)
}

/// Decodes and validates a JSON batch (short or long keys).
pub fn decode_json(bytes: &[u8], limits: &Limits) -> Result<Batch, DecodeError> {
    decode(bytes, limits, Format::Json)
}

/// The encoding a `Content-Type` header names: `application/msgpack` (also
/// `x-msgpack`, `vnd.msgpack`) or `application/json`, parameters ignored.
pub fn format_of(content_type: &str) -> Option<Format> {
    let mime = content_type.split(';').next().unwrap_or("").trim();
    match mime.to_ascii_lowercase().as_str() {
        "application/msgpack" | "application/x-msgpack" | "application/vnd.msgpack" => {
            Some(Format::MessagePack)
        }
        "application/json" => Some(Format::Json),
        _ => None,
    }
}

/// Decodes and validates a batch in either encoding.
pub fn decode(bytes: &[u8], limits: &Limits, format: Format) -> Result<Batch, DecodeError> {
    if bytes.len() > limits.max_batch_bytes {
        return Err(DecodeError::TooLarge {
            actual: bytes.len(),
            limit: limits.max_batch_bytes,
        });
    }
    let wire: WireBatch = match parse::<MapOnly<WireBatch>>(bytes, format) {
        Ok(MapOnly(wire)) => wire,
        // A batch of another version may have failed because its shape changed:
        // say so rather than report the first field that no longer fits.
        Err(malformed) => match parse::<VersionProbe>(bytes, format) {
            Ok(VersionProbe {
                version: Some(found),
            }) if found != u64::from(SCHEMA_VERSION) => {
                return Err(DecodeError::UnsupportedVersion {
                    found,
                    supported: SCHEMA_VERSION,
                })
            }
            _ => return Err(malformed),
        },
    };
    wire.validate(limits)
}

/// Parses `bytes` as `T`, reporting the long-name path where parsing stopped.
/// Tracking the path costs about half of a batch's parse, so a batch is first
/// parsed without it, and only a failure is parsed again to find where.
fn parse<T: DeserializeOwned>(bytes: &[u8], format: Format) -> Result<T, DecodeError> {
    parse_with::<Plain, T>(bytes, format)
        .or_else(|_| parse_with::<TrackingPath, T>(bytes, format))
        .map_err(|(field, detail)| DecodeError::Malformed {
            format,
            field,
            detail,
        })
}

/// Parses all of `bytes` in `format` the `W` way: the value, or the field
/// (`"."` for the whole) and what was wrong there.
fn parse_with<W: Walk, T: DeserializeOwned>(
    bytes: &[u8],
    format: Format,
) -> Result<T, (String, String)> {
    match format {
        Format::MessagePack => {
            // A reader over the slice (not `from_read_ref`) so the unread rest is
            // visible afterwards; rmp-serde's reader grows buffers as bytes
            // arrive, so a forged length prefix cannot force a large allocation.
            let mut rest = bytes;
            let mut de = rmp_serde::Deserializer::new(&mut rest);
            // rmp-serde refuses a value at its limit: one more, for MAX_DEPTH levels.
            de.set_max_depth(MAX_DEPTH + 1);
            let value = W::walk(&mut de)?;
            if !rest.is_empty() {
                let detail = format!("{} trailing bytes after the batch", rest.len());
                return Err((".".into(), detail));
            }
            Ok(value)
        }
        Format::Json => {
            // serde_json's own limit is 128 levels: the same bound as MessagePack's.
            if json_depth(bytes) > MAX_DEPTH {
                return Err((".".into(), format!("nested deeper than {MAX_DEPTH} levels")));
            }
            let mut de = serde_json::Deserializer::from_slice(bytes);
            let value = W::walk(&mut de)?;
            de.end().map_err(|e| (".".into(), e.to_string()))?;
            Ok(value)
        }
    }
}

/// The deepest nesting of arrays and objects in JSON text (strings skipped;
/// malformed text is the parser's to report).
fn json_depth(bytes: &[u8]) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0, false, false);
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// How a parse walks its input.
trait Walk {
    fn walk<'de, D: Deserializer<'de>, T: DeserializeOwned>(de: D) -> Result<T, (String, String)>;
}

/// Straight through; an error knows what went wrong but not where.
struct Plain;

impl Walk for Plain {
    fn walk<'de, D: Deserializer<'de>, T: DeserializeOwned>(de: D) -> Result<T, (String, String)> {
        T::deserialize(de).map_err(|e| (".".into(), e.to_string()))
    }
}

/// Keeping the path to the current field, for the error message.
struct TrackingPath;

impl Walk for TrackingPath {
    fn walk<'de, D: Deserializer<'de>, T: DeserializeOwned>(de: D) -> Result<T, (String, String)> {
        serde_path_to_error::deserialize(de)
            .map_err(|e| (long_path(e.path()), e.inner().to_string()))
    }
}

/// Just the schema version, read when a batch fails to parse.
#[derive(Deserialize)]
struct VersionProbe {
    #[serde(rename = "v", alias = "schema_version", default)]
    version: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, Interaction};
    use uuid::Uuid;

    fn v7(ms: u64, n: u8) -> Uuid {
        uuid::Builder::from_unix_timestamp_millis(ms, &[n; 10]).into_uuid()
    }

    fn batch() -> Batch {
        Batch {
            site_key: "news".into(),
            anonymous_id: "anon-1".into(),
            user_token: None,
            sent_at_ms: 1_800_000_000_000,
            dropped: 0,
            events: vec![Event {
                id: v7(1_800_000_000_000, 1),
                ts_ms: 1_799_999_999_000,
                interaction: Interaction::Scroll { depth_pct: 80 },
                item: Some("a-1".into()),
                context: None,
                slot: None,
            }],
        }
    }

    fn json_err(json: &str) -> DecodeError {
        decode_json(json.as_bytes(), &Limits::default()).unwrap_err()
    }

    #[test]
    fn long_keys_are_accepted_in_json() {
        let json = r#"{"schema_version":1,"site_key":"news","anonymous_id":"anon-1",
            "sent_at":1800000000000,"events":[{"id":"0197e3c5-8000-7000-8000-000000000001",
            "kind":"click","ts":1800000000000,"item":"a-1"}]}"#;
        let b = decode_json(json.as_bytes(), &Limits::default()).unwrap();
        assert_eq!(b.events[0].interaction, Interaction::Click);
        assert_eq!(b.events[0].item.as_deref(), Some("a-1"));
    }

    #[test]
    fn a_rail_slot_is_a_serve_and_a_position_on_a_click_or_an_impression() {
        let event = |kind: &str, extra: &str| {
            format!(
                r#"{{"v":1,"s":"news","a":"x","t":1800000000000,"e":[{{"i":"0197e3c5-8000-7000-8000-000000000001","k":"{kind}","t":1800000000000,"it":"a-1"{extra}}}]}}"#
            )
        };
        let b = decode_json(
            event("impression", r#","serve_id":"edge.1","position":3"#).as_bytes(),
            &Limits::default(),
        )
        .unwrap();
        let slot = b.events[0].slot.clone().unwrap();
        assert_eq!((slot.serve_id.as_str(), slot.position), ("edge.1", 3));
        for (kind, extra, field, code) in [
            (
                "click",
                r#","sv":"edge.1""#,
                "events[0].position",
                "missing",
            ),
            ("click", r#","ps":1"#, "events[0].serve_id", "missing"),
            (
                "click",
                r#","sv":"edge.1","ps":256"#,
                "events[0].position",
                "out_of_range",
            ),
            (
                "click",
                r#","sv":"a b","ps":1"#,
                "events[0].serve_id",
                "bad_chars",
            ),
            (
                "page_view",
                r#","sv":"edge.1","ps":1"#,
                "events[0].serve_id",
                "not_allowed",
            ),
        ] {
            let e = json_err(&event(kind, extra));
            assert_eq!(
                (e.field(), e.code()),
                (Some(field), code),
                "{kind} {extra}: {e}"
            );
        }
        let e = json_err(&event("click", r#","sv":"edge.1""#));
        assert!(e.to_string().contains("required with `serve_id`"), "{e}");
    }

    #[test]
    fn malformed_errors_name_the_long_field() {
        let e = json_err(
            r#"{"v":1,"s":"news","a":"x","t":1800000000000,"e":[{"i":"0197e3c5-8000-7000-8000-000000000001","k":"click","t":"soon"}]}"#,
        );
        assert_eq!(e.field(), Some("events[0].ts"), "{e}");
        assert_eq!(e.code(), "malformed");
    }

    #[test]
    fn batches_and_events_must_be_maps_not_arrays() {
        let batch_as_array = r#"[1,"news","x",null,1800000000000,0,[]]"#;
        let e = json_err(batch_as_array);
        assert_eq!((e.code(), e.field()), ("malformed", Some(".")), "{e}");
        assert!(e.to_string().contains("expected a map"), "{e}");
        let event_as_array = r#"{"v":1,"s":"news","a":"x","t":1800000000000,"e":[["0197e3c5-8000-7000-8000-000000000001","click",1800000000000,"item-1"]]}"#;
        let e = json_err(event_as_array);
        assert_eq!(e.field(), Some("events[0]"), "{e}");
        // MessagePack: the same batch written as arrays (rmp-serde's compact form).
        let compact = rmp_serde::to_vec(&WireBatch::from(&batch())).unwrap();
        let e = decode_msgpack(&compact, &Limits::default()).unwrap_err();
        assert_eq!((e.code(), e.field()), ("malformed", Some(".")), "{e}");
        assert!(e.to_string().contains("expected a map"), "{e}");
    }

    /// A valid batch with an unknown key holding `levels` nested arrays, in
    /// both encodings (the batch map is one more level).
    fn nested(levels: usize) -> (Vec<u8>, Vec<u8>) {
        let json = encode_json(&batch());
        let value = format!("{}null{}", "[".repeat(levels), "]".repeat(levels));
        let json = format!(
            "{{\"x\":{value},{}",
            std::str::from_utf8(&json[1..]).unwrap()
        );
        let mut msgpack = encode_msgpack(&batch());
        assert_eq!(msgpack[0] & 0xf0, 0x80, "a fixmap");
        msgpack[0] += 1;
        let mut extra = vec![0xa1, b'x'];
        extra.extend(std::iter::repeat_n(0x91, levels));
        extra.push(0xc0);
        msgpack.splice(1..1, extra);
        (json.into_bytes(), msgpack)
    }

    #[test]
    fn both_encodings_refuse_the_same_nesting_depth() {
        let limits = Limits::default();
        let (json, msgpack) = nested(MAX_DEPTH - 1);
        assert!(decode_json(&json, &limits).is_ok());
        assert!(decode_msgpack(&msgpack, &limits).is_ok());
        let (json, msgpack) = nested(MAX_DEPTH);
        let from_json = decode_json(&json, &limits).unwrap_err();
        assert_eq!(from_json.code(), "malformed");
        assert!(
            from_json.to_string().contains("nested deeper than 15"),
            "{from_json}"
        );
        let from_msgpack = decode_msgpack(&msgpack, &limits).unwrap_err();
        assert_eq!(from_msgpack.code(), "malformed", "{from_msgpack}");
        // Brackets inside strings are text, not nesting.
        let quoted = format!(
            r#"{{"x":"{}",{}"#,
            "[".repeat(100),
            &std::str::from_utf8(&encode_json(&batch())).unwrap()[1..]
        );
        assert!(decode_json(quoted.as_bytes(), &limits).is_ok());
    }

    #[test]
    fn semantic_errors_name_field_and_limit() {
        let mut b = batch();
        b.events[0].interaction = Interaction::Scroll { depth_pct: 101 };
        let e = decode_msgpack(&encode_msgpack(&b), &Limits::default()).unwrap_err();
        assert_eq!(
            e,
            DecodeError::Invalid {
                field: "events[0].depth_pct".into(),
                problem: Problem::OutOfRange {
                    value: 101,
                    min: 0,
                    max: 100
                }
            }
        );
        assert_eq!(
            e.to_string(),
            "`events[0].depth_pct` is 101; the allowed range is 0..=100"
        );
    }

    #[test]
    fn unknown_kind_is_named() {
        let e = json_err(
            r#"{"v":1,"s":"news","a":"x","t":1800000000000,"e":[{"i":"0197e3c5-8000-7000-8000-000000000001","k":"hover","t":1800000000000}]}"#,
        );
        assert_eq!(e.field(), Some("events[0].kind"));
        assert_eq!(e.code(), "unknown_kind");
    }

    #[test]
    fn newer_schema_version_is_reported_even_when_its_shape_differs() {
        let e = json_err(r#"{"v":2,"batch":{"whatever":true}}"#);
        assert_eq!(
            e,
            DecodeError::UnsupportedVersion {
                found: 2,
                supported: 1
            }
        );
    }

    #[test]
    fn duplicate_ids_in_one_batch_are_rejected() {
        let mut b = batch();
        b.events.push(b.events[0].clone());
        let e = decode_msgpack(&encode_msgpack(&b), &Limits::default()).unwrap_err();
        assert_eq!(e.field(), Some("events[1].id"));
        assert_eq!(e.code(), "duplicate_id");
    }

    #[test]
    fn timestamps_outside_the_window_are_rejected() {
        let mut b = batch();
        b.events[0].ts_ms = b.sent_at_ms + 10 * 60_000;
        let e = decode_msgpack(&encode_msgpack(&b), &Limits::default()).unwrap_err();
        assert_eq!(e.field(), Some("events[0].ts"));
        assert_eq!(e.code(), "out_of_range");
    }

    /// A batch built in memory meets the decoders' rules: the same errors,
    /// and the same batch back when it is valid.
    #[test]
    fn a_built_batch_is_checked_as_a_decoded_one_is() {
        let b = batch();
        assert_eq!(check(&b, &Limits::default()).unwrap(), b);
        let mut late = batch();
        late.events[0].ts_ms = late.sent_at_ms + 10 * 60_000;
        let e = check(&late, &Limits::default()).unwrap_err();
        let d = decode_msgpack(&encode_msgpack(&late), &Limits::default()).unwrap_err();
        assert_eq!((e.field(), e.code()), (d.field(), d.code()));
        assert_eq!(e.code(), "out_of_range");
    }

    #[test]
    fn non_v7_ids_are_rejected() {
        let mut b = batch();
        b.events[0].id = Uuid::from_u128(0x1234_5678_9abc_4def_8123_4567_89ab_cdef);
        let e = decode_msgpack(&encode_msgpack(&b), &Limits::default()).unwrap_err();
        assert_eq!(e.code(), "not_uuid_v7");
    }

    #[test]
    fn oversized_input_is_rejected_before_parsing() {
        let limits = Limits {
            max_batch_bytes: 8,
            ..Limits::default()
        };
        let e = decode_msgpack(&[0u8; 9], &limits).unwrap_err();
        assert_eq!(
            e,
            DecodeError::TooLarge {
                actual: 9,
                limit: 8
            }
        );
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut bytes = encode_msgpack(&batch());
        bytes.push(0xc0);
        let e = decode_msgpack(&bytes, &Limits::default()).unwrap_err();
        assert_eq!(e.code(), "malformed");
    }

    #[test]
    fn item_ids_cannot_smuggle_separators() {
        let mut b = batch();
        b.events[0].item = Some("a/1".into());
        let e = decode_msgpack(&encode_msgpack(&b), &Limits::default()).unwrap_err();
        assert_eq!(e.field(), Some("events[0].item"));
    }
}
