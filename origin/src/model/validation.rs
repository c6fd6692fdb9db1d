//! Live progressive validation: the online model's holdout that never ends.
//!
//! Before a consumer learns a positive engagement with an item new to the
//! reader's window, it asks where the current factors would have ranked
//! that item — among every item with factors, leaving out the reader's
//! window (what they just read) — and records HR@10 and NDCG@10 of that
//! rank. The same test-then-learn protocol as `cargo xtask eval`, on live
//! traffic: the numbers say how well the model predicts what readers do
//! next, while it runs. Events are sampled by their id, so a replay samples
//! the same events and the cost is bounded by the rate.
//!
//! [`LiveValidation`] keeps the last outcomes and says when the latest
//! window is worse than the model's own recent history.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::dot;

/// The cut-off of HR@K and NDCG@K.
pub const K: usize = 10;
/// Outcomes the reported HR@10 and NDCG@10 cover: the latest window.
pub const RECENT: usize = 500;
/// Outcomes before the latest window that it is compared with.
pub const REFERENCE: usize = 2_000;
/// How many standard errors below the reference the latest HR@10 must fall
/// to count as degraded (a one-sided two-proportion z-test; at 3, a model
/// that did not change is flagged about once in 700 full windows).
pub const DEGRADED_Z: f64 = 3.0;

/// The 1-based rank of `target` by `user · item` among `vectors`, leaving
/// out `skip` (the reader's window); items scoring the same as the target
/// count as ahead of it when their id sorts first, so ranks are
/// deterministic. `None` when the target has no factors.
pub fn rank_of(
    user: &[f32],
    target: &str,
    vectors: &HashMap<String, Vec<f32>>,
    skip: &[String],
) -> Option<usize> {
    let own = dot(user, vectors.get(target)?);
    let ahead = vectors
        .iter()
        .filter(|(id, _)| id.as_str() != target && !skip.contains(id))
        .filter(|(id, v)| {
            let s = dot(user, v);
            s > own || (s == own && id.as_str() < target)
        })
        .count();
    Some(ahead + 1)
}

/// NDCG@10 of one relevant item at `rank` (1-based): 1/log2(rank + 1).
pub fn ndcg_at(rank: usize) -> f64 {
    if rank <= K {
        1.0 / ((rank + 1) as f64).log2()
    } else {
        0.0
    }
}

/// Whether the event with `id` is in a `rate` sample: a hash of the id
/// (FNV-1a), so every process and every replay picks the same events.
pub fn sampled(id: &str, rate: f64) -> bool {
    if rate >= 1.0 {
        return true;
    }
    let h = super::fnv1a(id);
    ((h >> 11) as f64 / (1u64 << 53) as f64) < rate
}

/// A consumer's validation: which engagements to evaluate, and their outcomes.
#[derive(Debug, Clone, Default)]
pub struct Validator {
    /// Share of engagements evaluated (0 turns validation off).
    pub rate: f64,
    /// The outcomes so far.
    pub live: LiveValidation,
}

impl Validator {
    /// Evaluates at `rate`.
    pub fn new(rate: f64) -> Self {
        Validator {
            rate,
            live: LiveValidation::default(),
        }
    }

    /// Whether the engagement `id` with `item` is evaluated: sampled, and a
    /// prediction of something new (a dwell after the click on the same
    /// item is not).
    pub fn wants(&self, id: &str, item: &str, window: &[String]) -> bool {
        self.rate > 0.0 && !window.iter().any(|w| w == item) && sampled(id, self.rate)
    }

    /// Records where `user`'s factors rank `item` among `vectors`, before the
    /// engagement is learned.
    pub fn evaluate(
        &mut self,
        user: &[f32],
        item: &str,
        vectors: &HashMap<String, Vec<f32>>,
        window: &[String],
    ) {
        if let Some(rank) = rank_of(user, item, vectors, window) {
            self.live.record(rank);
        }
    }
}

/// The running validation of one model.
#[derive(Debug, Clone, Default)]
pub struct LiveValidation {
    /// The last `RECENT + REFERENCE` ranks, oldest first.
    ranks: VecDeque<usize>,
    evaluated: u64,
    hits: u64,
}

/// What the latest window says, for `/metrics` and the dashboard.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ValidationSummary {
    /// Engagements evaluated since the process started.
    pub evaluated: u64,
    /// Of those, ranked in the top 10.
    pub hits: u64,
    /// Outcomes in the latest window (up to [`RECENT`]).
    pub window: usize,
    /// HR@10 over the latest window.
    pub hr10: f64,
    /// NDCG@10 over the latest window.
    pub ndcg10: f64,
    /// HR@10 over the [`REFERENCE`] outcomes before it, once there are that many.
    pub reference_hr10: Option<f64>,
    /// The latest window is worse than the reference beyond chance.
    pub degraded: bool,
}

impl LiveValidation {
    /// Records one evaluated engagement's rank.
    pub fn record(&mut self, rank: usize) {
        self.evaluated += 1;
        self.hits += u64::from(rank <= K);
        self.ranks.push_back(rank);
        if self.ranks.len() > RECENT + REFERENCE {
            self.ranks.pop_front();
        }
    }

    /// The summary, or `None` before the first evaluation.
    pub fn summary(&self) -> Option<ValidationSummary> {
        if self.ranks.is_empty() {
            return None;
        }
        let split = self.ranks.len().saturating_sub(RECENT);
        let recent: Vec<usize> = self.ranks.iter().skip(split).copied().collect();
        let hr = |ranks: &mut dyn Iterator<Item = &usize>| {
            let (n, hits) = ranks.fold((0usize, 0usize), |(n, h), &r| {
                (n + 1, h + usize::from(r <= K))
            });
            (n, hits as f64 / n.max(1) as f64)
        };
        let (window, hr10) = hr(&mut recent.iter());
        let ndcg10 = recent.iter().map(|&r| ndcg_at(r)).sum::<f64>() / window as f64;
        let reference = (split == REFERENCE).then(|| hr(&mut self.ranks.iter().take(split)).1);
        let degraded = reference.is_some_and(|p0| {
            let pooled =
                (p0 * REFERENCE as f64 + hr10 * RECENT as f64) / (REFERENCE + RECENT) as f64;
            let se =
                (pooled * (1.0 - pooled) * (1.0 / RECENT as f64 + 1.0 / REFERENCE as f64)).sqrt();
            se > 0.0 && (p0 - hr10) / se > DEGRADED_Z
        });
        Some(ValidationSummary {
            evaluated: self.evaluated,
            hits: self.hits,
            window,
            hr10,
            ndcg10,
            reference_hr10: reference,
            degraded,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vectors(pairs: &[(&str, [f32; 2])]) -> HashMap<String, Vec<f32>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_vec()))
            .collect()
    }

    #[test]
    fn the_rank_counts_better_items_outside_the_window_and_breaks_ties_by_id() {
        let v = vectors(&[
            ("a", [1.0, 0.0]),
            ("b", [0.9, 0.0]),
            ("c", [0.5, 0.0]),
            ("d", [0.5, 0.0]),
            ("e", [0.1, 0.0]),
        ]);
        let u = [1.0, 0.0];
        assert_eq!(rank_of(&u, "a", &v, &[]), Some(1));
        assert_eq!(rank_of(&u, "c", &v, &[]), Some(3));
        assert_eq!(rank_of(&u, "d", &v, &[]), Some(4), "c ties and sorts first");
        assert_eq!(rank_of(&u, "e", &v, &["a".into(), "b".into()]), Some(3));
        assert_eq!(rank_of(&u, "x", &v, &[]), None);
    }

    #[test]
    fn ndcg_is_one_at_the_top_and_zero_past_k() {
        assert_eq!(ndcg_at(1), 1.0);
        assert!((ndcg_at(3) - 0.5).abs() < 1e-12);
        assert_eq!(ndcg_at(K + 1), 0.0);
    }

    #[test]
    fn a_sample_is_the_same_for_an_id_and_near_its_rate() {
        let ids: Vec<String> = (0..10_000).map(|i| format!("01890000-{i:08}")).collect();
        let n = ids.iter().filter(|id| sampled(id, 0.2)).count();
        assert!((1_800..2_200).contains(&n), "{n}");
        assert!(ids.iter().all(|id| sampled(id, 0.2) == sampled(id, 0.2)));
        assert!(ids.iter().all(|id| sampled(id, 1.0)));
        assert!(!ids.iter().any(|id| sampled(id, 0.0)));
    }

    /// The latest window's HR@10 and NDCG@10, and the degradation flag: a
    /// model that keeps its hit rate is not flagged, one whose hit rate
    /// falls from 0.4 to 0.2 is.
    #[test]
    fn the_window_reports_its_rates_and_a_fall_is_flagged() {
        let mut steady = LiveValidation::default();
        let mut falling = LiveValidation::default();
        for i in 0..REFERENCE {
            let rank = if i % 5 < 2 { 1 } else { 50 };
            steady.record(rank);
            falling.record(rank);
        }
        for i in 0..RECENT {
            steady.record(if i % 5 < 2 { 1 } else { 50 });
            falling.record(if i % 5 < 1 { 3 } else { 50 });
        }
        let s = steady.summary().unwrap();
        assert_eq!((s.window, s.hr10, s.ndcg10), (RECENT, 0.4, 0.4));
        assert_eq!(s.reference_hr10, Some(0.4));
        assert!(!s.degraded);
        let f = falling.summary().unwrap();
        assert!((f.hr10 - 0.2).abs() < 1e-12);
        assert!((f.ndcg10 - 0.1).abs() < 1e-12);
        assert!(f.degraded, "{f:?}");
        assert_eq!(f.evaluated, (REFERENCE + RECENT) as u64);
        assert!(LiveValidation::default().summary().is_none());
    }
}
