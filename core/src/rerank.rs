//! Reranks candidates for one person: a candidate's base score (from the
//! origin's model) blended with the person's decayed interest in its tags.

use serde::{Deserialize, Serialize};

use crate::decay::{Affinities, HalfLife};

/// An item the origin proposes, with what the rerank needs to know about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// Item id.
    pub item: String,
    /// The origin's score, expected in 0..=1; non-finite scores count as 0.
    pub base_score: f64,
    /// Categories and tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Publish time, Unix milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_at_ms: Option<i64>,
}

/// How strongly the person's recent interest moves the ranking.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RerankConfig {
    /// 0 keeps the origin's order; 1 ranks by affinity alone.
    pub affinity_blend: f64,
}

impl Default for RerankConfig {
    fn default() -> Self {
        RerankConfig {
            affinity_blend: 0.5,
        }
    }
}

/// A candidate's place in the reranked list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ranked {
    /// Item id.
    pub item: String,
    /// Blended score.
    pub score: f64,
}

/// Orders `candidates` by `(1 − β)·base + β·affinity`, best first (ties by item
/// id). A candidate's affinity is its strongest tag's decayed score at `now_ms`
/// divided by the person's strongest tag overall, so it lies in 0..=1 and one
/// click on a category is enough to lift it at once.
pub fn rerank(
    candidates: &[Candidate],
    affinities: &Affinities,
    now_ms: i64,
    half_life: HalfLife,
    config: RerankConfig,
) -> Vec<Ranked> {
    let beta = if config.affinity_blend.is_finite() {
        config.affinity_blend.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let strongest = affinities
        .values_at(now_ms, half_life)
        .into_iter()
        .map(|(_, v)| v)
        .fold(0.0_f64, f64::max);
    let mut ranked: Vec<Ranked> = candidates
        .iter()
        .map(|c| {
            let affinity = if strongest > 0.0 {
                c.tags
                    .iter()
                    .map(|t| affinities.value_at(t, now_ms, half_life))
                    .fold(0.0_f64, f64::max)
                    / strongest
            } else {
                0.0
            };
            let base = if c.base_score.is_finite() {
                c.base_score
            } else {
                0.0
            };
            Ranked {
                item: c.item.clone(),
                score: (1.0 - beta) * base + beta * affinity,
            }
        })
        .collect();
    ranked.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.item.cmp(&b.item))
    });
    ranked
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(item: &str, base: f64, tags: &[&str]) -> Candidate {
        Candidate {
            item: item.into(),
            base_score: base,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            published_at_ms: None,
        }
    }

    #[test]
    fn a_click_on_a_category_lifts_its_items() {
        let hl = HalfLife::from_hours(1.0).unwrap();
        let cands = [cand("a", 0.9, &["sports"]), cand("b", 0.6, &["tech"])];
        let mut aff = Affinities::new();
        let before = rerank(&cands, &aff, 0, hl, RerankConfig::default());
        assert_eq!(before[0].item, "a");
        aff.record(["tech"], 3.0, 0, hl);
        let after = rerank(&cands, &aff, 0, hl, RerankConfig::default());
        assert_eq!(after[0].item, "b");
        assert_eq!(after[0].score, 0.5 * 0.6 + 0.5 * 1.0);
    }

    #[test]
    fn blend_zero_keeps_the_origin_order_and_nan_sinks() {
        let hl = HalfLife::from_hours(1.0).unwrap();
        let cands = [
            cand("n", f64::NAN, &[]),
            cand("b", 0.2, &[]),
            cand("a", 0.2, &[]),
            cand("c", 0.7, &[]),
        ];
        let cfg = RerankConfig {
            affinity_blend: 0.0,
        };
        let order: Vec<_> = rerank(&cands, &Affinities::new(), 0, hl, cfg)
            .into_iter()
            .map(|r| r.item)
            .collect();
        assert_eq!(order, ["c", "a", "b", "n"]);
    }
}
