//! `GET /v1/recommendations`: the calling user's top-K candidates, with what
//! the edge needs to rerank them (tags, publish time).
//!
//! Ranking: the online model's score (user · item factors, written by the
//! consumers) plus a popularity score — recency-decayed popularity of the item
//! and of its categories, and freshness — which alone carries new users
//! (cold start) and new items (through their categories). Items the user
//! already clicked or read are left out. Scores are scaled to 0..=1.

use std::collections::HashMap;

use attune_core::{DecayedScore, HalfLife, RecommendedItem};
use axum::extract::{Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::model::dot;
use crate::segments;
use crate::store::{Item, UserModel};
use crate::AppState;

/// Most candidates one call returns.
pub const MAX_K: usize = 500;

/// Query of `GET /v1/recommendations`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct RecommendationsQuery {
    /// How many (1–500, default 20).
    pub k: Option<usize>,
    /// The user (API keys only; a user token reads its own user).
    pub user: Option<String>,
}

/// The reply.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Recommendations {
    /// The user they are for.
    pub user: String,
    /// Which ranking produced them.
    pub model: String,
    /// Server time of the ranking, Unix ms.
    pub generated_at_ms: i64,
    /// Best first.
    pub items: Vec<RecommendedItem>,
}

/// The person's own interest in an item's categories (profile affinities,
/// normalized): a click lifts its category at once, before the model moves.
const AFFINITY_WEIGHT: f64 = 1.0;
/// Blend of the popularity ranking.
const ITEM_WEIGHT: f64 = 0.5;
const CATEGORY_WEIGHT: f64 = 0.3;
const FRESHNESS_WEIGHT: f64 = 0.2;
/// Freshness halves every three days.
const FRESHNESS_HALF_LIFE_MS: f64 = 3.0 * 86_400_000.0;

/// Scores every item by `0.5·item popularity + 0.3·best category popularity +
/// 0.2·freshness + 1.0·the person's interest in its categories` (each
/// normalized to 0..=1), plus `user · item` when the model knows the user and
/// the item (`item_vectors`); leaves out the items the user consumed; with the
/// model, scales to 0..=1; returns the best `k` (ties by id).
pub fn rank(
    items: &[Item],
    popularity: &HashMap<String, DecayedScore>,
    user: &UserModel,
    item_vectors: &HashMap<String, Vec<f32>>,
    now_ms: i64,
    half_life: HalfLife,
    k: usize,
) -> Vec<RecommendedItem> {
    let (consumed, affinities) = (&user.consumed, &user.affinities);
    let model = user.vector.as_deref().map(|u| (u, item_vectors));
    let max_affinity = affinities.values().copied().fold(0.0, f64::max);
    let item_pop: HashMap<&str, f64> = popularity
        .iter()
        .map(|(id, s)| (id.as_str(), s.value_at(now_ms, half_life)))
        .collect();
    let mut category_pop: HashMap<&str, f64> = HashMap::new();
    for item in items {
        let p = item_pop.get(item.id.as_str()).copied().unwrap_or(0.0);
        for tag in &item.tags {
            *category_pop.entry(tag.as_str()).or_default() += p;
        }
    }
    let max_item = item_pop.values().copied().fold(0.0, f64::max);
    let max_category = category_pop.values().copied().fold(0.0, f64::max);
    let norm = |v: f64, max: f64| if max > 0.0 { v / max } else { 0.0 };
    let freshness = HalfLife::from_ms(FRESHNESS_HALF_LIFE_MS).expect("positive");
    // Score every item, but build replies only for the top k.
    let mut scored: Vec<(f64, usize)> = items
        .iter()
        .enumerate()
        .filter(|(_, item)| !consumed.contains(&item.id))
        .map(|(n, item)| {
            let pop = norm(
                item_pop.get(item.id.as_str()).copied().unwrap_or(0.0),
                max_item,
            );
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
                .map_or(0.0, |p| freshness.factor(now_ms.saturating_sub(p).max(0)));
            let learned = model
                .and_then(|(user, vectors)| vectors.get(&item.id).map(|q| f64::from(dot(user, q))))
                .unwrap_or(0.0);
            let interest = item
                .tags
                .iter()
                .map(|t| norm(affinities.get(t).copied().unwrap_or(0.0), max_affinity))
                .fold(0.0, f64::max);
            let score = ITEM_WEIGHT * pop
                + CATEGORY_WEIGHT * cat
                + FRESHNESS_WEIGHT * fresh
                + AFFINITY_WEIGHT * interest
                + learned;
            (score, n)
        })
        .collect();
    let (lo, hi) = scored
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (s, _)| {
            (lo.min(*s), hi.max(*s))
        });
    let best_first = |a: &(f64, usize), b: &(f64, usize)| {
        b.0.total_cmp(&a.0)
            .then_with(|| items[a.1].id.cmp(&items[b.1].id))
    };
    let k = k.min(scored.len());
    if k == 0 {
        return Vec::new();
    }
    if k < scored.len() {
        scored.select_nth_unstable_by(k - 1, best_first);
        scored.truncate(k);
    }
    scored.sort_by(best_first);
    // With the model, scale to 0..=1 (the edge's rerank blends base scores in that range).
    let scale = model.is_some() && hi > lo;
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

/// Recommendations for the calling user.
#[utoipa::path(get, path = "/v1/recommendations", tag = "api", params(RecommendationsQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = Recommendations),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, description = "A user token naming another user", body = ErrorBody),
    ))]
pub async fn get_recommendations(
    State(state): State<AppState>,
    caller: Caller,
    headers: axum::http::HeaderMap,
    Query(q): Query<RecommendationsQuery>,
) -> Result<Json<Recommendations>, ApiError> {
    let user = caller.user(q.user.as_deref())?;
    let k = q.k.unwrap_or(20);
    if k == 0 || k > MAX_K {
        return Err(
            ApiError::bad_request("out_of_range", format!("k must be 1..={MAX_K}")).field("k"),
        );
    }
    let site = &caller.site().key;
    let (items, popularity, user_model, vectors) = tokio::try_join!(
        state.store.items(site),
        state.store.popularity(site),
        state
            .store
            .user_model(site, &user, state.affinity_half_life),
        state.store.item_vectors(site),
    )?;
    let now_ms = crate::clock::now_ms();
    // A newcomer the model does not know: popularity among people like them.
    let popularity = if user_model.vector.is_none() {
        let device = headers
            .get(axum::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .and_then(|ua| state.user_agents.device(ua).class);
        let attrs = state.store.ingest_context(site, &user).await?.attributes;
        let scopes: Vec<String> = segments::of_request(device, &attrs, now_ms)
            .iter()
            .map(|s| segments::scope(site, s))
            .collect();
        let per_segment: Vec<HashMap<String, DecayedScore>> =
            futures::future::try_join_all(scopes.iter().map(|s| state.store.popularity(s))).await?;
        segments::blend(
            &popularity,
            &per_segment,
            now_ms,
            state.popularity_half_life,
        )
    } else {
        popularity
    };
    Ok(Json(Recommendations {
        user,
        model: if user_model.vector.is_some() {
            "mf+popularity"
        } else {
            "popularity"
        }
        .into(),
        generated_at_ms: now_ms,
        items: rank(
            &items,
            &popularity,
            &user_model,
            &vectors,
            now_ms,
            state.popularity_half_life,
            k,
        ),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, tags: &[&str], published: Option<i64>) -> Item {
        Item {
            id: id.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            published_at_ms: published,
            metadata: serde_json::Value::Null,
        }
    }

    #[test]
    fn popular_items_and_their_categories_rank_first() {
        let hl = HalfLife::from_hours(24.0).unwrap();
        let items = [
            item("a", &["sports"], None),
            item("b", &["sports"], None),
            item("c", &["tech"], None),
        ];
        let pop = HashMap::from([("a".to_string(), DecayedScore::point(10.0, 0))]);
        let ranked = rank(
            &items,
            &pop,
            &UserModel::default(),
            &HashMap::new(),
            0,
            hl,
            3,
        );
        let order: Vec<_> = ranked.iter().map(|r| r.item.as_str()).collect();
        // b has no clicks of its own but shares a's popular category.
        assert_eq!(order, ["a", "b", "c"]);
        assert_eq!(ranked[0].score, ITEM_WEIGHT + CATEGORY_WEIGHT);
        assert_eq!(ranked[1].score, CATEGORY_WEIGHT);
    }

    #[test]
    fn without_interactions_fresh_items_lead() {
        let hl = HalfLife::from_hours(24.0).unwrap();
        let day = 86_400_000;
        let items = [item("old", &[], Some(0)), item("new", &[], Some(10 * day))];
        let ranked = rank(
            &items,
            &HashMap::new(),
            &UserModel::default(),
            &HashMap::new(),
            10 * day,
            hl,
            1,
        );
        assert_eq!(ranked.len(), 1);
        assert_eq!(ranked[0].item, "new");
    }
}

#[cfg(test)]
mod model_tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn the_model_reorders_and_consumed_items_are_left_out() {
        let hl = HalfLife::from_hours(24.0).unwrap();
        let item = |id: &str| Item {
            id: id.into(),
            tags: vec![],
            published_at_ms: None,
            metadata: serde_json::Value::Null,
        };
        let items = [item("a"), item("b"), item("c")];
        let vectors = HashMap::from([
            ("a".to_string(), vec![0.0, 1.0]),
            ("b".to_string(), vec![1.0, 0.0]),
            ("c".to_string(), vec![2.0, 0.0]),
        ]);
        let user = UserModel {
            vector: Some(vec![1.0, 0.0]),
            consumed: HashSet::from(["c".to_string()]),
            affinities: HashMap::new(),
        };
        let ranked = rank(&items, &HashMap::new(), &user, &vectors, 0, hl, 3);
        let order: Vec<_> = ranked.iter().map(|r| r.item.as_str()).collect();
        assert_eq!(order, ["b", "a"]);
        assert_eq!((ranked[0].score, ranked[1].score), (1.0, 0.0));
    }
}

#[cfg(test)]
mod affinity_tests {
    use super::*;

    #[test]
    fn interest_in_a_category_lifts_its_items_at_once() {
        let hl = HalfLife::from_hours(24.0).unwrap();
        let item = |id: &str, tag: &str| Item {
            id: id.into(),
            tags: vec![tag.into()],
            published_at_ms: None,
            metadata: serde_json::Value::Null,
        };
        let items = [item("s", "sports"), item("t", "tech")];
        let pop = HashMap::from([("s".to_string(), DecayedScore::point(1.0, 0))]);
        let cold = rank(
            &items,
            &pop,
            &UserModel::default(),
            &HashMap::new(),
            0,
            hl,
            2,
        );
        assert_eq!(cold[0].item, "s");
        let user = UserModel {
            affinities: HashMap::from([("tech".to_string(), 3.0)]),
            ..UserModel::default()
        };
        let warm = rank(&items, &pop, &user, &HashMap::new(), 0, hl, 2);
        assert_eq!(warm[0].item, "t");
    }
}
