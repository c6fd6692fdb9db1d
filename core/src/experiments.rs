//! Experiment assignment: which arm a unit (a reader, a user) is in, as a
//! pure function of the experiment's seed and the unit's id, so the tracker,
//! the edge and the origin assign alike with no round trip.
//!
//! The scheme is GrowthBook's published one (hash v2, bucket ranges,
//! namespaces), so an experiment can be cross-checked against any of its
//! SDKs; `core/testdata/growthbook.json` holds its cross-language vectors
//! and `tests/experiments.rs` checks every one.

/// 32-bit FNV-1a over the string's UTF-16 code units, as GrowthBook's
/// JavaScript SDK (the reference) computes it (`charCodeAt`).
pub fn fnv1a32(s: &str) -> u32 {
    s.encode_utf16().fold(0x811c_9dc5_u32, |h, unit| {
        (h ^ u32::from(unit)).wrapping_mul(0x0100_0193)
    })
}

/// The unit's position in `[0, 1)` for an experiment's `seed`: hash
/// version 2 (version 1 is kept for namespaces); `None` for other versions.
pub fn hash(seed: &str, value: &str, version: u32) -> Option<f64> {
    match version {
        2 => {
            let inner = fnv1a32(&format!("{seed}{value}"));
            Some(f64::from(fnv1a32(&inner.to_string()) % 10_000) / 10_000.0)
        }
        1 => Some(f64::from(fnv1a32(&format!("{value}{seed}")) % 1_000) / 1_000.0),
        _ => None,
    }
}

/// `n` equal weights (none for `n` ≤ 0).
pub fn equal_weights(n: i64) -> Vec<f64> {
    if n <= 0 {
        return Vec::new();
    }
    vec![1.0 / n as f64; n as usize]
}

/// Each arm's `[start, end)` of the unit interval: arms take consecutive
/// shares by weight, each covering `coverage` of its share (units outside
/// every range are not in the experiment). Weights that do not match the
/// arms or do not sum to 1 (±0.01) fall back to equal weights.
pub fn bucket_ranges(arms: i64, coverage: f64, weights: Option<&[f64]>) -> Vec<(f64, f64)> {
    let coverage = coverage.clamp(0.0, 1.0);
    let equal = equal_weights(arms);
    let weights = match weights {
        Some(w) if w.len() == equal.len() && (0.99..=1.01).contains(&w.iter().sum::<f64>()) => {
            w.to_vec()
        }
        _ => equal,
    };
    let mut start = 0.0;
    weights
        .iter()
        .map(|w| {
            let range = (start, start + coverage * w);
            start += w;
            range
        })
        .collect()
}

/// The arm whose range holds `position`, or `None`.
pub fn choose_arm(position: f64, ranges: &[(f64, f64)]) -> Option<usize> {
    ranges
        .iter()
        .position(|&(start, end)| position >= start && position < end)
}

/// A mutually exclusive layer: the unit takes part when its namespace
/// position falls in `[start, end)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Namespace {
    /// The layer's name.
    pub id: String,
    /// Where the experiment's share of the layer starts, in `[0, 1]`.
    pub start: f64,
    /// Where it ends (exclusive).
    pub end: f64,
}

/// Whether `unit` falls in `namespace` (hash version 1 of `"__" + id`).
pub fn in_namespace(unit: &str, namespace: &Namespace) -> bool {
    hash(&format!("__{}", namespace.id), unit, 1)
        .is_some_and(|n| n >= namespace.start && n < namespace.end)
}
