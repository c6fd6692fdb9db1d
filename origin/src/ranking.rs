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

use std::collections::HashMap;

use attune_core::{DecayedScore, HalfLife, RecommendedItem};

use crate::model::covisit::{CovisitConfig, Neighbours};
use crate::model::dot;
use crate::store::{Item, UserModel};

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

/// Freshness halves every three days.
const FRESHNESS_HALF_LIFE_MS: f64 = 3.0 * 86_400_000.0;

/// What the stores hold that ranking reads, for one site.
pub struct Signals<'a> {
    /// The catalog.
    pub items: &'a [Item],
    /// Decayed popularity per item (for a newcomer, blended with their segments').
    pub popularity: &'a HashMap<String, DecayedScore>,
    /// Its half-life.
    pub popularity_half_life: HalfLife,
    /// Item factors.
    pub item_vectors: &'a HashMap<String, Vec<f32>>,
    /// Co-visit rows of the user's recent items, and every item's norm.
    pub neighbours: &'a Neighbours,
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
    let items = s.items;
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

/// Every unconsumed item's score, with its index in `s.items`.
pub fn score(s: &Signals<'_>, user: &UserModel, w: &RankWeights) -> Vec<(f64, usize)> {
    let (consumed, affinities) = (&user.consumed, &user.affinities);
    let model = user.vector.as_deref().map(|u| (u, s.item_vectors));
    let max_affinity = affinities.values().copied().fold(0.0, f64::max);
    let item_pop: HashMap<&str, f64> = s
        .popularity
        .iter()
        .map(|(id, p)| (id.as_str(), p.value_at(s.now_ms, s.popularity_half_life)))
        .collect();
    let mut category_pop: HashMap<&str, f64> = HashMap::new();
    for item in s.items {
        let p = item_pop.get(item.id.as_str()).copied().unwrap_or(0.0);
        for tag in &item.tags {
            *category_pop.entry(tag.as_str()).or_default() += p;
        }
    }
    let covisit = if w.covisit != 0.0 {
        s.neighbours.scores(&user.recent, s.covisit)
    } else {
        HashMap::new()
    };
    let max_item = item_pop.values().copied().fold(0.0, f64::max);
    let max_category = category_pop.values().copied().fold(0.0, f64::max);
    let max_covisit = covisit.values().copied().fold(0.0, f64::max);
    let norm = |v: f64, max: f64| if max > 0.0 { v / max } else { 0.0 };
    let freshness = HalfLife::from_ms(FRESHNESS_HALF_LIFE_MS).expect("positive");
    s.items
        .iter()
        .enumerate()
        .filter(|(_, item)| !consumed.contains(&item.id))
        .map(|(n, item)| {
            let id = item.id.as_str();
            let pop = norm(item_pop.get(id).copied().unwrap_or(0.0), max_item);
            let cat = item
                .tags
                .iter()
                .map(|t| {
                    norm(
                        category_pop.get(t.as_str()).copied().unwrap_or(0.0),
                        max_category,
                    )
                })
                .fold(0.0, f64::max);
            let fresh = item
                .published_at_ms
                .map_or(0.0, |p| freshness.factor(s.now_ms.saturating_sub(p).max(0)));
            let learned = model
                .and_then(|(u, vectors)| vectors.get(id).map(|q| f64::from(dot(u, q))))
                .unwrap_or(0.0);
            let interest = item
                .tags
                .iter()
                .map(|t| norm(affinities.get(t).copied().unwrap_or(0.0), max_affinity))
                .fold(0.0, f64::max);
            let co = norm(covisit.get(id).copied().unwrap_or(0.0), max_covisit);
            let score = w.item * pop
                + w.category * cat
                + w.freshness * fresh
                + w.affinity * interest
                + w.model * learned
                + w.covisit * co;
            (score, n)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::model::covisit::{push, visit};

    fn item(id: &str, tags: &[&str], published: Option<i64>) -> Item {
        Item {
            id: id.into(),
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
        let signals = Signals {
            items,
            popularity: &popularity,
            popularity_half_life: HalfLife::from_hours(24.0).unwrap(),
            item_vectors: vectors,
            neighbours,
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
                n.apply(&visit(&w, i, &cfg).unwrap());
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
