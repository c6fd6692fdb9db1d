//! Golden vectors: `testdata/golden.json` pins the exact MessagePack bytes of
//! batches, the errors bad batches get, and the weights, decayed scores and
//! rankings the math gives. The JS and edge tests load the same file, so every
//! tier agrees bit for bit.
//!
//! After an intended change of format or math, regenerate the expected values
//! with `ATTUNE_BLESS_GOLDEN=1 cargo test -p attune-core --test golden` and
//! review the diff; inputs are never rewritten.

use attune_core::codec::{decode_json, decode_msgpack, encode_msgpack};
use attune_core::{
    rerank, Affinities, Candidate, DecayedScore, FeedbackWeights, HalfLife, Interaction, Limits,
    Ranked, RerankConfig,
};
use serde::{Deserialize, Serialize};

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/golden.json");

#[derive(Serialize, Deserialize)]
struct Golden {
    #[serde(rename = "_about")]
    about: Vec<String>,
    codec: Vec<CodecCase>,
    invalid: Vec<InvalidCase>,
    weights: Vec<WeightCase>,
    decay: Vec<DecayCase>,
    rerank: Vec<RerankCase>,
}

/// A valid batch in JSON (long keys) and its exact MessagePack encoding.
#[derive(Serialize, Deserialize)]
struct CodecCase {
    name: String,
    batch: serde_json::Value,
    msgpack_hex: String,
}

/// A bad batch, as JSON and as MessagePack, and the error both must give.
#[derive(Serialize, Deserialize)]
struct InvalidCase {
    name: String,
    batch: serde_json::Value,
    msgpack_hex: String,
    error_code: String,
    error_field: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy)]
struct WireInteraction {
    kind: attune_core::EventKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    depth_pct: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    visible_ms: Option<u32>,
}

impl WireInteraction {
    fn typed(self) -> Interaction {
        use attune_core::EventKind::*;
        match self.kind {
            PageView => Interaction::PageView,
            Click => Interaction::Click,
            Impression => Interaction::Impression,
            Scroll => Interaction::Scroll {
                depth_pct: self.depth_pct.expect("scroll cases give depth_pct"),
            },
            Dwell => Interaction::Dwell {
                visible_ms: self.visible_ms.expect("dwell cases give visible_ms"),
            },
        }
    }
}

/// The default weight of one interaction.
#[derive(Serialize, Deserialize)]
struct WeightCase {
    interaction: WireInteraction,
    weight: f64,
}

/// `(weight, t_ms)` contributions folded in the listed order, the resulting
/// state, and its value at `query_ms`.
#[derive(Serialize, Deserialize)]
struct DecayCase {
    name: String,
    half_life_ms: f64,
    contributions: Vec<(f64, i64)>,
    query_ms: i64,
    state: DecayedScore,
    value: f64,
}

#[derive(Serialize, Deserialize)]
struct HistoryEntry {
    tags: Vec<String>,
    interaction: WireInteraction,
    ts_ms: i64,
}

/// A person's history (default weights), candidates, and the reranked list.
#[derive(Serialize, Deserialize)]
struct RerankCase {
    name: String,
    half_life_ms: f64,
    affinity_blend: f64,
    now_ms: i64,
    history: Vec<HistoryEntry>,
    candidates: Vec<Candidate>,
    expected: Vec<Ranked>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// A JSON batch as the tracker would write it in MessagePack: event ids as
/// 16-byte binaries rather than strings.
struct AsMsgpack<'a>(&'a serde_json::Value, bool);

impl Serialize for AsMsgpack<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        use serde_json::Value;
        match (self.0, self.1) {
            (Value::String(text), true) => match uuid::Uuid::parse_str(text) {
                Ok(id) => s.serialize_bytes(id.as_bytes()),
                Err(_) => s.serialize_str(text),
            },
            (Value::Object(fields), _) => {
                let mut map = s.serialize_map(Some(fields.len()))?;
                for (k, v) in fields {
                    map.serialize_entry(k, &AsMsgpack(v, k == "i" || k == "id"))?;
                }
                map.end()
            }
            (Value::Array(items), _) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for v in items {
                    seq.serialize_element(&AsMsgpack(v, false))?;
                }
                seq.end()
            }
            (other, _) => other.serialize(s),
        }
    }
}

fn json_bytes(v: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

/// Computes every expected value from the inputs.
fn compute(g: &mut Golden) {
    let limits = Limits::default();
    for case in &mut g.codec {
        let batch = decode_json(&json_bytes(&case.batch), &limits)
            .unwrap_or_else(|e| panic!("codec case {}: {e}", case.name));
        case.msgpack_hex = hex(&encode_msgpack(&batch));
    }
    for case in &mut g.invalid {
        case.msgpack_hex = hex(&rmp_serde::to_vec_named(&AsMsgpack(&case.batch, false)).unwrap());
        let err = decode_json(&json_bytes(&case.batch), &limits)
            .expect_err(&format!("invalid case {} decodes", case.name));
        case.error_code = err.code().into();
        case.error_field = err.field().map(Into::into);
    }
    let weights = FeedbackWeights::default();
    for case in &mut g.weights {
        case.weight = weights.weight(&case.interaction.typed());
    }
    for case in &mut g.decay {
        let hl = HalfLife::from_ms(case.half_life_ms).unwrap();
        let mut s = DecayedScore::default();
        for (w, t) in &case.contributions {
            s.add(*w, *t, hl);
        }
        case.state = s;
        case.value = s.value_at(case.query_ms, hl);
    }
    for case in &mut g.rerank {
        let hl = HalfLife::from_ms(case.half_life_ms).unwrap();
        let mut aff = Affinities::new();
        for h in &case.history {
            let w = weights.weight(&h.interaction.typed());
            aff.record(h.tags.iter().map(String::as_str), w, h.ts_ms, hl);
        }
        let config = RerankConfig {
            affinity_blend: case.affinity_blend,
        };
        case.expected = rerank(&case.candidates, &aff, case.now_ms, hl, config);
    }
}

fn load() -> Golden {
    let text = std::fs::read_to_string(PATH).expect("read core/testdata/golden.json");
    serde_json::from_str(&text).expect("golden.json parses")
}

#[test]
fn golden_vectors_match() {
    let mut golden = load();
    let before = serde_json::to_value(&golden).unwrap();
    compute(&mut golden);
    let after = serde_json::to_value(&golden).unwrap();
    if std::env::var_os("ATTUNE_BLESS_GOLDEN").is_some() {
        let text = serde_json::to_string_pretty(&golden).unwrap() + "\n";
        std::fs::write(PATH, text).unwrap();
        return;
    }
    // Compare case by case so a failure names the case.
    for section in ["codec", "invalid", "weights", "decay", "rerank"] {
        let (b, a) = (&before[section], &after[section]);
        for (i, (want, got)) in b
            .as_array()
            .unwrap()
            .iter()
            .zip(a.as_array().unwrap())
            .enumerate()
        {
            assert_eq!(got, want, "{section}[{i}] differs from golden.json");
        }
    }
}

#[test]
fn golden_msgpack_bytes_decode_to_their_batches() {
    let limits = Limits::default();
    let golden = load();
    assert!(!golden.codec.is_empty());
    for case in &golden.codec {
        let from_bytes = decode_msgpack(&unhex(&case.msgpack_hex), &limits)
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let from_json = decode_json(&json_bytes(&case.batch), &limits).unwrap();
        assert_eq!(from_bytes, from_json, "{}", case.name);
    }
    for case in &golden.invalid {
        let err = decode_msgpack(&unhex(&case.msgpack_hex), &limits)
            .expect_err(&format!("{} decodes", case.name));
        assert_eq!(err.code(), case.error_code, "{}: {err}", case.name);
        assert_eq!(err.field(), case.error_field.as_deref(), "{}", case.name);
    }
}

/// Values checked by hand, so the blessed file cannot drift from the math
/// unnoticed: one half-life halves, two quarter.
#[test]
fn golden_decay_values_agree_with_hand_computation() {
    let golden = load();
    let case = golden
        .decay
        .iter()
        .find(|c| c.name == "one click, two half-lives later")
        .expect("hand-checked case present");
    assert_eq!(case.value, 3.0 / 4.0);
    let case = golden
        .decay
        .iter()
        .find(|c| c.name == "late arrival of an older event")
        .expect("hand-checked case present");
    // 1.0 at 2h plus 4.0 made at 0h, valued at 2h (two half-lives): 1 + 1 = 2.
    assert_eq!(case.state.value, 2.0);
}
