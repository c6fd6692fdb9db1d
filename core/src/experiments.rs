//! Experiment assignment: which arm a unit (a reader, a user) is in, as a
//! pure function of the experiment's seed and the unit's id, so the tracker,
//! the edge and the origin assign alike with no round trip.
//!
//! The scheme is GrowthBook's published one (hash v2, bucket ranges,
//! namespaces), so an experiment can be cross-checked against any of its
//! SDKs; `core/testdata/growthbook.json` holds its cross-language vectors
//! and `tests/experiments.rs` checks every one.
//!
//! Interleaving compares two rankers inside one rail instead of between
//! arms: [`team_draft`] merges their rankings and [`credit`] gives a rail's
//! clicks to the ranker that placed the items.

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

/// The arm `unit` is in, GrowthBook's way: outside the experiment (`None`)
/// unless it falls in the namespace (if any) and in an arm's range for the
/// experiment's `seed`, `coverage` and `weights`.
pub fn assign(
    seed: &str,
    unit: &str,
    coverage: f64,
    weights: &[f64],
    namespace: Option<&Namespace>,
) -> Option<usize> {
    if namespace.is_some_and(|ns| !in_namespace(unit, ns)) {
        return None;
    }
    let ranges = bucket_ranges(weights.len() as i64, coverage, Some(weights));
    choose_arm(hash(seed, unit, 2)?, &ranges)
}

/// Which ranker placed an item in an interleaved rail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Team {
    /// The first ranking (the control).
    A,
    /// The second ranking (the challenger).
    B,
}

/// Team-draft interleaving (Radlinski, Kurup and Joachims, 2008): two
/// rankings merged into one rail of at most `len` items. Like captains
/// picking teams, the team with fewer picks so far (a coin toss on a tie)
/// adds its highest-ranked item not yet in the rail. Each item is credited
/// to the team that placed it, so a click votes for one ranker within one
/// rail, with position bias shared fairly. `seed` makes the coin tosses
/// repeatable (the serve id's hash), so a rail can be rebuilt to credit
/// clicks.
pub fn team_draft<T: Clone + PartialEq>(a: &[T], b: &[T], len: usize, seed: u64) -> Vec<(T, Team)> {
    let mut rail: Vec<(T, Team)> = Vec::with_capacity(len);
    let (mut picks_a, mut picks_b) = (0usize, 0usize);
    let mut state = seed;
    let next_of = |ranking: &[T], rail: &[(T, Team)]| {
        ranking
            .iter()
            .find(|item| !rail.iter().any(|(taken, _)| taken == *item))
            .cloned()
    };
    while rail.len() < len {
        let a_turn = picks_a < picks_b || (picks_a == picks_b && coin(&mut state));
        let (first, second) = if a_turn {
            (Team::A, Team::B)
        } else {
            (Team::B, Team::A)
        };
        // A ranking with nothing left hands the turn to the other.
        let pick = [first, second].into_iter().find_map(|team| {
            let ranking = if team == Team::A { a } else { b };
            next_of(ranking, &rail).map(|item| (item, team))
        });
        let Some((item, team)) = pick else { break };
        match team {
            Team::A => picks_a += 1,
            Team::B => picks_b += 1,
        }
        rail.push((item, team));
    }
    rail
}

/// One fair coin toss from a SplitMix64 state.
fn coin(state: &mut u64) -> bool {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) & 1 == 1
}

/// The team that won one interleaved rail: more clicks on its items
/// (`clicked`: positions in the rail); `None` for a tie or no click.
pub fn credit(rail: &[Team], clicked: &[usize]) -> Option<Team> {
    let mut score = 0i64;
    for team in clicked.iter().filter_map(|&p| rail.get(p)) {
        score += if *team == Team::A { 1 } else { -1 };
    }
    match score.signum() {
        1 => Some(Team::A),
        -1 => Some(Team::B),
        _ => None,
    }
}
