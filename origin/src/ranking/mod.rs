//! The production ranking: one pure function from what the stores hold to a
//! user's top K. `GET /v1/recommendations` serves it and `cargo xtask eval`
//! scores this same function on a replayed stream.
//!
//! Every candidate the user has not consumed scores
//!
//! ```text
//!   covisit · what readers of the user's recent items went on to (normalized)
//! + model   · user · item factors (the online matrix factorization)
//! + affinity · the user's decayed interest in the item's categories (normalized)
//! + item · decayed popularity of the item        (normalized)
//! + category · of its best category              (normalized)
//! + freshness · 2^(−age / 3 days)
//! ```
//!
//! Popularity and freshness alone carry new users (cold start, blended per
//! segment by the handler) and new items (through their categories).

pub mod candidates;
pub mod snapshots;

use attune_core::{HalfLife, RecommendedItem};

use crate::model::covisit::CovisitConfig;
use crate::model::dot;
use crate::store::{CovisitRows, UserModel};
pub use candidates::{Catalog, Learned, Popularity};

/// The weight of each term. [`RankWeights::default`] is what serves; how
/// the values were chosen is in `docs/eval.md`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RankWeights {
    /// Co-visitation with the user's recent items, normalized to 0..=1.
    pub covisit: f64,
    /// The factors' dot product (unnormalized).
    pub model: f64,
    /// The person's interest in the item's categories, normalized.
    pub affinity: f64,
    /// The item's decayed popularity, normalized.
    pub item: f64,
    /// Its best category's decayed popularity, normalized.
    pub category: f64,
    /// Freshness.
    pub freshness: f64,
}

impl Default for RankWeights {
    fn default() -> Self {
        RankWeights {
            covisit: 4.0,
            model: 0.5,
            // The tuner chose 0 on MovieLens (genres say little there); kept
            // small so that a lone reader on a site without co-visits yet
            // (a new site, the demo) still sees their categories lift.
            affinity: 0.25,
            item: 0.1,
            category: 0.3,
            freshness: 0.2,
        }
    }
}

impl RankWeights {
    /// Popularity and freshness alone: nothing learned about the person
    /// (an experiment's `popularity` arm; consumed items stay left out).
    pub fn popularity() -> Self {
        RankWeights {
            covisit: 0.0,
            model: 0.0,
            affinity: 0.0,
            ..RankWeights::default()
        }
    }
}

/// Freshness halves every three days.
const FRESHNESS_HALF_LIFE_MS: f64 = 3.0 * 86_400_000.0;

/// What the stores hold that ranking reads, for one site and one request.
pub struct Signals<'a> {
    /// The catalog.
    pub catalog: &'a Catalog,
    /// Item factors and co-visit norms, in catalog order.
    pub learned: &'a Learned,
    /// The site's popularity (for a newcomer, blended with their segments').
    pub popularity: &'a Popularity,
    /// Co-visit rows of the user's recent items (other rows are ignored).
    pub rows: &'a CovisitRows,
    /// Co-visitation's hyper-parameters.
    pub covisit: &'a CovisitConfig,
    /// Server time of the ranking.
    pub now_ms: i64,
}

/// The best `k` items for `user`, ties by id, consumed items left out. With
/// any personal term, scores are scaled to 0..=1 (the edge's rerank blends
/// base scores in that range).
pub fn rank(s: &Signals<'_>, user: &UserModel, w: &RankWeights, k: usize) -> Vec<RecommendedItem> {
    let mut scored = score(s, user, w);
    let k = k.min(scored.len());
    if k == 0 {
        return Vec::new();
    }
    let (lo, hi) = scored
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (s, _)| {
            (lo.min(*s), hi.max(*s))
        });
    let items = s.catalog.items();
    let best_first = |a: &(f64, usize), b: &(f64, usize)| {
        b.0.total_cmp(&a.0)
            .then_with(|| items[a.1].id.cmp(&items[b.1].id))
    };
    if k < scored.len() {
        scored.select_nth_unstable_by(k - 1, best_first);
        scored.truncate(k);
    }
    scored.sort_by(best_first);
    let scale = is_personal(user) && hi > lo;
    scored
        .into_iter()
        .map(|(score, n)| {
            let item = &items[n];
            RecommendedItem {
                item: item.id.clone(),
                score: if scale {
                    (score - lo) / (hi - lo)
                } else {
                    score
                },
                tags: item.tags.clone(),
                published_at_ms: item.published_at_ms,
                metadata: item.metadata.clone(),
            }
        })
        .collect()
}

/// Whether the user has anything personal for the ranking to use.
pub fn is_personal(user: &UserModel) -> bool {
    user.vector.is_some() || !user.recent.is_empty()
}

/// Every unconsumed item's score, with its catalog position. The user's data
/// is looked up by key once (consumed items, interests, window rows); the
/// pass over the catalog then reads columns only.
pub fn score(s: &Signals<'_>, user: &UserModel, w: &RankWeights) -> Vec<(f64, usize)> {
    let catalog = s.catalog;
    let mut consumed = vec![false; catalog.len()];
    for id in &user.consumed {
        if let Some(n) = catalog.position(id) {
            consumed[n] = true;
        }
    }
    let max_affinity = user.affinities.values().copied().fold(0.0, f64::max);
    let mut interest_in = vec![0.0; catalog.tag_count()];
    if max_affinity > 0.0 {
        for (tag, a) in &user.affinities {
            if let Some(t) = catalog.tag(tag) {
                interest_in[t] = a / max_affinity;
            }
        }
    }
    let covisit = if w.covisit != 0.0 {
        covisit_scores(s, &user.recent)
    } else {
        Vec::new()
    };
    let max_covisit = covisit.iter().copied().fold(0.0, f64::max);
    let co_scale = if max_covisit > 0.0 {
        w.covisit / max_covisit
    } else {
        0.0
    };
    let model = user.vector.as_deref().filter(|_| w.model != 0.0);
    let freshness = HalfLife::from_ms(FRESHNESS_HALF_LIFE_MS).expect("positive");
    catalog
        .items()
        .iter()
        .enumerate()
        .filter(|&(n, _)| !consumed[n])
        .map(|(n, item)| {
            let fresh = item
                .published_at_ms
                .map_or(0.0, |p| freshness.factor(s.now_ms.saturating_sub(p).max(0)));
            let learned = model.map_or(0.0, |u| f64::from(dot(u, s.learned.vector(n))));
            let interest = catalog
                .tags_of(n)
                .iter()
                .map(|&t| interest_in[t as usize])
                .fold(0.0, f64::max);
            let co = covisit.get(n).copied().unwrap_or(0.0);
            let score = w.item * s.popularity.item[n]
                + w.category * s.popularity.category[n]
                + w.freshness * fresh
                + w.affinity * interest
                + w.model * learned
                + co_scale * co;
            (score, n)
        })
        .collect()
}

/// The reader's co-visit score per catalog position: Σ over their window
/// (newest first) of `recency_decay^p · similarity(window item, candidate)`.
fn covisit_scores(s: &Signals<'_>, window: &[String]) -> Vec<f64> {
    let cfg = s.covisit;
    let mut out = vec![0.0; s.catalog.len()];
    for (j, p) in window.iter().take(cfg.window).zip(0..) {
        let (Some(row), Some(&nj)) = (s.rows.get(j), s.learned.norms.get(j)) else {
            continue;
        };
        let weight = cfg.row_weight(p, nj);
        for (x, c) in row {
            if let Some(n) = s.catalog.position(x) {
                out[n] += weight * cfg.candidate_share(*c, s.learned.norm_at(n));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use attune_core::DecayedScore;

    use super::*;
    use crate::model::covisit::{push, visit, Neighbours};
    use crate::store::Item;

    fn item(id: &str, tags: &[&str], published: Option<i64>) -> Item {
        Item {
            id: id.into(),
            length_words: None,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            published_at_ms: published,
            metadata: serde_json::Value::Null,
        }
    }

    /// Ranks with the production weights and nothing learned but `popularity`.
    fn ranked(
        items: &[Item],
        popularity: &[(&str, f64)],
        user: &UserModel,
        vectors: &HashMap<String, Vec<f32>>,
        neighbours: &Neighbours,
        now_ms: i64,
        k: usize,
    ) -> Vec<RecommendedItem> {
        let popularity: HashMap<String, DecayedScore> = popularity
            .iter()
            .map(|(id, v)| (id.to_string(), DecayedScore::point(*v, 0)))
            .collect();
        let catalog = Catalog::new(items.to_vec());
        let hl = HalfLife::from_hours(24.0).unwrap();
        let signals = Signals {
            learned: &Learned::new(&catalog, vectors, neighbours.norms.clone()),
            popularity: &Popularity::new(&catalog, &popularity, hl, now_ms),
            catalog: &catalog,
            rows: &neighbours.rows_of(&user.recent),
            covisit: &CovisitConfig::default(),
            now_ms,
        };
        rank(&signals, user, &RankWeights::default(), k)
    }

    fn order(ranked: &[RecommendedItem]) -> Vec<&str> {
        ranked.iter().map(|r| r.item.as_str()).collect()
    }

    #[test]
    fn popular_items_and_their_categories_rank_first() {
        let items = [
            item("a", &["sports"], None),
            item("b", &["sports"], None),
            item("c", &["tech"], None),
        ];
        let r = ranked(
            &items,
            &[("a", 10.0)],
            &UserModel::default(),
            &HashMap::new(),
            &Neighbours::default(),
            0,
            3,
        );
        // b has no clicks of its own but shares a's popular category.
        assert_eq!(order(&r), ["a", "b", "c"]);
        let w = RankWeights::default();
        assert_eq!(r[0].score, w.item + w.category);
        assert_eq!(r[1].score, w.category);
    }

    #[test]
    fn without_interactions_fresh_items_lead() {
        let day = 86_400_000;
        let items = [item("old", &[], Some(0)), item("new", &[], Some(10 * day))];
        let none = (HashMap::new(), Neighbours::default());
        let r = ranked(
            &items,
            &[],
            &UserModel::default(),
            &none.0,
            &none.1,
            10 * day,
            1,
        );
        assert_eq!(order(&r), ["new"]);
    }

    #[test]
    fn the_model_reorders_and_consumed_items_are_left_out() {
        let items = [
            item("a", &[], None),
            item("b", &[], None),
            item("c", &[], None),
        ];
        let vectors = HashMap::from([
            ("a".to_string(), vec![0.0, 1.0]),
            ("b".to_string(), vec![1.0, 0.0]),
            ("c".to_string(), vec![2.0, 0.0]),
        ]);
        let user = UserModel {
            vector: Some(vec![1.0, 0.0]),
            consumed: HashSet::from(["c".to_string()]),
            ..UserModel::default()
        };
        let r = ranked(&items, &[], &user, &vectors, &Neighbours::default(), 0, 3);
        assert_eq!(order(&r), ["b", "a"]);
        assert_eq!((r[0].score, r[1].score), (1.0, 0.0));
    }

    #[test]
    fn interest_in_a_category_lifts_its_items_at_once() {
        let items = [item("s", &["sports"], None), item("t", &["tech"], None)];
        let none = (HashMap::new(), Neighbours::default());
        let pop = [("s", 1.0), ("t", 1.0)];
        let cold = ranked(&items, &pop, &UserModel::default(), &none.0, &none.1, 0, 2);
        assert_eq!(cold[0].item, "s");
        let user = UserModel {
            affinities: HashMap::from([("tech".to_string(), 3.0)]),
            ..UserModel::default()
        };
        let warm = ranked(&items, &pop, &user, &none.0, &none.1, 0, 2);
        assert_eq!(warm[0].item, "t");
    }

    #[test]
    fn what_readers_of_the_last_item_read_next_leads() {
        let cfg = CovisitConfig::default();
        let items = [
            item("a", &[], None),
            item("b", &[], None),
            item("c", &[], None),
        ];
        let mut n = Neighbours::default();
        // Other readers went a → b; c is the most popular item.
        for _ in 0..3 {
            let mut w = Vec::new();
            for i in ["a", "b"] {
                n.apply(&visit(&w, i, &cfg).unwrap(), &cfg);
                push(&mut w, i, cfg.window);
            }
        }
        let user = UserModel {
            recent: vec!["a".into()],
            consumed: HashSet::from(["a".to_string()]),
            ..UserModel::default()
        };
        let r = ranked(
            &items,
            &[("c", 5.0), ("b", 1.0)],
            &user,
            &HashMap::new(),
            &n,
            0,
            2,
        );
        assert_eq!(order(&r), ["b", "c"]);
        // Without the recent item, popularity decides.
        let r = ranked(
            &items,
            &[("c", 5.0), ("b", 1.0)],
            &UserModel::default(),
            &HashMap::new(),
            &n,
            0,
            2,
        );
        assert_eq!(order(&r)[0], "c");
    }
}
