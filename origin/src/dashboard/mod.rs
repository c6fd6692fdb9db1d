//! The live dashboard: `GET /dashboard` (one HTML page, charts drawn in the
//! browser) and `GET /v1/dashboard` (its data, for the site's API key).
//! Per-user panels use the public API (`/v1/profile`, `/v1/recommendations`).

pub mod activity;

use std::collections::{BTreeMap, HashMap};

use axum::extract::State;
use axum::response::Html;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::event_log::lag::GroupLag;
use crate::store::{ConsumerStats, Item};
use crate::AppState;

/// Items and categories listed.
const TOP: usize = 10;

/// An item ranked by decayed popularity.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TopItem {
    /// Item id.
    pub item: String,
    /// Decayed popularity now.
    pub score: f64,
    /// Categories and tags.
    pub tags: Vec<String>,
    /// `metadata.title`, if the catalog has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

/// A category or tag ranked by the summed popularity of its items.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TopCategory {
    /// Category or tag.
    pub tag: String,
    /// Summed decayed popularity now.
    pub score: f64,
}

/// One ranker's served items at one position: shown, clicked, and the rate.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RailPosition {
    /// What ranked the rail (`personal`, `popularity`, `edge`, `unknown`).
    pub ranker: String,
    /// Position bucket, `0` … `9`, then `10+`.
    pub position: String,
    /// Impressions (≥ 50 % visible for ≥ 1 s).
    pub shown: u64,
    /// Clicks.
    pub clicked: u64,
    /// `clicked / shown`; absent before anything was shown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ctr: Option<f64>,
}

/// Reply of `GET /v1/dashboard`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Dashboard {
    /// Server time, Unix ms.
    pub generated_at_ms: i64,
    /// Events this origin process accepted per kind since it started (all
    /// sites); rates come from two readings.
    pub events_total_by_kind: BTreeMap<String, u64>,
    /// The running stream consumers.
    pub consumers: Vec<ConsumerStats>,
    /// The Kafka consumer group's lag, measured by this origin whether or not
    /// any consumer runs (absent in embedded mode, where the consumer reports
    /// its own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consumer_lag: Option<GroupLag>,
    /// Most popular items of the site.
    pub top_items: Vec<TopItem>,
    /// Most popular categories of the site.
    pub top_categories: Vec<TopCategory>,
    /// Users this origin process saw most recently, newest first.
    pub recent_users: Vec<String>,
    /// Served rails' impressions and clicks by ranker and position, each
    /// event counted once by the consumers.
    pub rails: Vec<RailPosition>,
    /// The model versions, which one serves, and each retrain's comparison.
    pub models: crate::model::versions::Registry,
}

/// The dashboard's data for the calling site.
#[utoipa::path(get, path = "/v1/dashboard", tag = "dashboard", security(("bearer" = [])),
    responses((status = 200, body = Dashboard), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn get_dashboard(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Dashboard>, ApiError> {
    let site = &caller.require_server()?.key;
    let (items, popularity, consumers, rails, models) = tokio::try_join!(
        state.store.items(site),
        state.store.popularity(site),
        state.store.consumer_stats(),
        state.store.rail_counts(site),
        state.store.model_registry(),
    )?;
    let now_ms = crate::clock::now_ms();
    let scores: HashMap<&str, f64> = popularity
        .iter()
        .map(|(id, s)| (id.as_str(), s.value_at(now_ms, state.popularity_half_life)))
        .collect();
    let (top_items, top_categories) = top(&items, &scores);
    Ok(Json(Dashboard {
        generated_at_ms: now_ms,
        events_total_by_kind: state
            .activity
            .totals()
            .into_iter()
            .map(|(k, n)| (k.to_owned(), n))
            .collect(),
        consumers,
        consumer_lag: state.consumer_lag.as_ref().and_then(|p| p.latest()),
        top_items,
        top_categories,
        recent_users: state.activity.recent_users(site),
        rails: rails
            .into_iter()
            .map(|((ranker, position), c)| RailPosition {
                ranker: ranker.as_str().into(),
                position: position.into(),
                shown: c.shown,
                clicked: c.clicked,
                ctr: (c.shown > 0).then(|| c.clicked as f64 / c.shown as f64),
            })
            .collect(),
        models,
    }))
}

/// The best items and categories by popularity (already valued now).
fn top(items: &[Item], scores: &HashMap<&str, f64>) -> (Vec<TopItem>, Vec<TopCategory>) {
    let mut by_tag: HashMap<&str, f64> = HashMap::new();
    let mut ranked: Vec<TopItem> = Vec::new();
    for item in items {
        let score = scores.get(item.id.as_str()).copied().unwrap_or(0.0);
        if score <= 0.0 {
            continue;
        }
        for tag in &item.tags {
            *by_tag.entry(tag).or_default() += score;
        }
        ranked.push(TopItem {
            item: item.id.clone(),
            score,
            tags: item.tags.clone(),
            title: item
                .metadata
                .get("title")
                .and_then(|t| t.as_str())
                .map(Into::into),
        });
    }
    ranked.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.item.cmp(&b.item))
    });
    ranked.truncate(TOP);
    let mut categories: Vec<TopCategory> = by_tag
        .into_iter()
        .map(|(tag, score)| TopCategory {
            tag: tag.to_owned(),
            score,
        })
        .collect();
    categories.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.tag.cmp(&b.tag)));
    categories.truncate(TOP);
    (ranked, categories)
}

/// `GET /dashboard`: the page (it asks for the API key, or reads `#key=`).
pub async fn page() -> Html<&'static str> {
    Html(include_str!("page.html"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, tags: &[&str]) -> Item {
        Item {
            id: id.into(),
            length_words: None,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            published_at_ms: None,
            metadata: serde_json::json!({ "title": format!("Title {id}") }),
        }
    }

    #[test]
    fn items_rank_by_popularity_and_categories_by_their_items_sum() {
        let items = [
            item("a", &["sport"]),
            item("b", &["sport"]),
            item("c", &["tech"]),
            item("d", &["tech"]),
        ];
        let scores = HashMap::from([("a", 1.0), ("b", 1.0), ("c", 1.5)]);
        let (items, cats) = top(&items, &scores);
        let ids: Vec<_> = items.iter().map(|i| i.item.as_str()).collect();
        assert_eq!(ids, ["c", "a", "b"], "d has no popularity and is left out");
        assert_eq!(items[0].title.as_deref(), Some("Title c"));
        let tags: Vec<_> = cats.iter().map(|c| (c.tag.as_str(), c.score)).collect();
        assert_eq!(tags, [("sport", 2.0), ("tech", 1.5)]);
    }
}
