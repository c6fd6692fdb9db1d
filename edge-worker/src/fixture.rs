//! Synthetic candidates and state for timing the rerank: 200 candidates with
//! 3 tags each out of 20, and a full edge state (16 tags, 8 clicks). The worker
//! (`/__attune/bench/rerank`) and the native bench use the same data.

use attune_core::{EventKind, HalfLife, RecommendedItem, RerankConfig};

use crate::candidates::rerank_for;
use crate::state::EdgeState;

/// The candidates.
pub fn candidates(n: usize) -> Vec<RecommendedItem> {
    (0..n)
        .map(|i| RecommendedItem {
            item: format!("article-{i:04}"),
            score: 1.0 - i as f64 / n as f64,
            tags: (0..3)
                .map(|t| format!("tag-{}", (i * 7 + t * 5) % 20))
                .collect(),
            published_at_ms: Some(1_800_000_000_000 - i as i64 * 60_000),
            metadata: serde_json::Value::Null,
        })
        .collect()
}

/// A full state built from clicks on the first candidates.
pub fn state(candidates: &[RecommendedItem], half_life: HalfLife) -> EdgeState {
    let mut s = EdgeState::new("bench", "anon-bench");
    for (i, c) in candidates.iter().take(30).enumerate() {
        s.record(
            EventKind::Click,
            3.0,
            &c.item,
            &c.tags,
            1_800_000_000_000 + i as i64 * 1000,
            half_life,
        );
    }
    s.prune(1_800_000_030_000, half_life);
    s
}

/// The timed work: `n` reranks of the fixture (top 10, a minute apart);
/// returns a checksum so the work cannot be optimized away.
pub fn rerank_loop(n: usize) -> f64 {
    let hl = HalfLife::from_hours(1.0).expect("positive");
    let candidates = candidates(200);
    let state = state(&candidates, hl);
    (0..n)
        .map(|i| {
            let now = 1_800_000_060_000 + i as i64;
            rerank_for(
                &candidates,
                Some(&state),
                now,
                hl,
                RerankConfig::default(),
                10,
            )[0]
            .score
        })
        .sum()
}
