//! Candidate lists from the origin, how long the edge trusts a cached one, and
//! the per-request rerank with the person's edge state.

use attune_core::{rerank, segment, Candidate, HalfLife, RecommendedItem, RerankConfig};
use serde::{Deserialize, Serialize};

use crate::state::EdgeState;

/// The origin's reply (the fields the edge uses).
#[derive(Debug, Clone, Deserialize)]
pub struct OriginRecommendations {
    /// Candidates, best first.
    pub items: Vec<RecommendedItem>,
    /// What ranked them (attune-core's `rail::Ranker`).
    #[serde(default)]
    pub ranker: String,
    /// The origin's serve id.
    #[serde(default)]
    pub serve_id: String,
    /// The experiment arm that chose the ranking, if any.
    #[serde(default)]
    pub experiment: Option<OriginArm>,
}

/// The experiment arm of an origin reply (the fields the edge uses).
#[derive(Debug, Clone, Deserialize)]
pub struct OriginArm {
    /// The variant's ranker: `production` or `popularity`.
    pub ranker: String,
    /// `ab` or `interleave`.
    pub mode: String,
}

/// A rail the edge serves as the origin ranked it: the origin's ranker and
/// serve id go with it, so its impressions and clicks count for that arm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AsServed {
    pub ranker: String,
    pub serve_id: String,
}

impl OriginRecommendations {
    /// Whether the edge must serve this list unchanged: an experiment arm
    /// whose ranking is not the production one (the edge's rerank is part
    /// of production), or an interleaved rail, whose serve id says which
    /// ranking placed each slot.
    pub fn as_served(&self) -> Option<AsServed> {
        let arm = self.experiment.as_ref()?;
        (arm.mode == "interleave" || arm.ranker != "production").then(|| AsServed {
            ranker: self.ranker.clone(),
            serve_id: self.serve_id.clone(),
        })
    }
}

/// What the edge caches per user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedCandidates {
    /// Edge clock when the origin answered.
    pub fetched_at_ms: i64,
    /// The candidates.
    pub items: Vec<RecommendedItem>,
    /// Set when the list is served unchanged ([`OriginRecommendations::as_served`]).
    #[serde(default)]
    pub as_served: Option<AsServed>,
}

impl CachedCandidates {
    /// The tags of `item`, if it is a candidate.
    pub fn tags_of(&self, item: &str) -> Option<&[String]> {
        self.items
            .iter()
            .find(|c| c.item == item)
            .map(|c| c.tags.as_slice())
    }
}

/// The list a reader the edge has no state for gets: one per combination of
/// the cold-start segments the origin ranks newcomers by (attune-core's
/// `segment`: device class from the User-Agent, time of day, the page's
/// referrer kind), so a phone reader from search is not served the list
/// cached for a desktop reader who came direct. The name is the origin's
/// user for it (`anon:_cold`) and the segments.
pub fn cold_list(user_agent: Option<&str>, referrer: Option<&str>, now_ms: i64) -> ColdList {
    let device = user_agent
        .and_then(segment::parse_user_agent)
        .map(|a| a.class);
    ColdList {
        segments: segment::of_request(device, referrer, [], now_ms).join(","),
    }
}

/// A newcomer's list: see [`cold_list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColdList {
    /// The segments it is ranked for, comma-separated.
    pub segments: String,
}

impl ColdList {
    /// The user the origin ranks it for.
    pub const USER: &'static str = attune_core::routing::COLD_LIST_USER;

    /// Its name in the edge cache.
    pub fn cache_name(&self) -> String {
        format!("{}/{}", Self::USER, self.segments)
    }
}

/// How a cached list may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Younger than the TTL: use it.
    Fresh,
    /// Past the TTL but within stale-while-revalidate: use it, refresh in the background.
    Stale,
    /// Older: fetch anew (and fall back to it only if the origin is down).
    Expired,
}

/// The freshness of a list `age_ms` old.
pub fn freshness(age_ms: i64, ttl_ms: i64, swr_ms: i64) -> Freshness {
    if age_ms < ttl_ms {
        Freshness::Fresh
    } else if age_ms < ttl_ms.saturating_add(swr_ms) {
        Freshness::Stale
    } else {
        Freshness::Expired
    }
}

/// Reranks `candidates` with the person's affinities (attune-core's rerank, the
/// same math as everywhere) and returns the best `k`, leaving out items the
/// person just clicked.
pub fn rerank_for(
    candidates: &[RecommendedItem],
    state: Option<&EdgeState>,
    now_ms: i64,
    half_life: HalfLife,
    config: RerankConfig,
    k: usize,
) -> Vec<RecommendedItem> {
    let unseen: Vec<&RecommendedItem> = candidates
        .iter()
        .filter(|c| !state.is_some_and(|s| s.clicked(&c.item)))
        .collect();
    let core: Vec<Candidate> = unseen
        .iter()
        .map(|c| Candidate {
            item: c.item.clone(),
            base_score: c.score,
            tags: c.tags.clone(),
            published_at_ms: c.published_at_ms,
        })
        .collect();
    let empty = attune_core::Affinities::new();
    let affinities = state.map_or(&empty, |s| &s.affinities);
    rerank(&core, affinities, now_ms, half_life, config)
        .into_iter()
        .take(k)
        .filter_map(|ranked| {
            let c = unseen.iter().find(|c| c.item == ranked.item)?;
            Some(RecommendedItem {
                item: ranked.item,
                score: ranked.score,
                tags: c.tags.clone(),
                published_at_ms: c.published_at_ms,
                metadata: c.metadata.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use attune_core::EventKind;

    fn item(id: &str, score: f64, tag: &str) -> RecommendedItem {
        RecommendedItem {
            item: id.into(),
            score,
            tags: vec![tag.into()],
            published_at_ms: None,
            metadata: serde_json::Value::Null,
        }
    }

    #[test]
    fn only_the_production_arm_is_reranked_at_the_edge() {
        let reply = |experiment: Option<(&str, &str)>| OriginRecommendations {
            items: Vec::new(),
            ranker: "popularity".into(),
            serve_id: "popularity.0123456789abcdef0123456789abcdef".into(),
            experiment: experiment.map(|(ranker, mode)| OriginArm {
                ranker: ranker.into(),
                mode: mode.into(),
            }),
        };
        assert_eq!(reply(None).as_served(), None, "no experiment");
        assert_eq!(reply(Some(("production", "ab"))).as_served(), None);
        let served = reply(Some(("popularity", "ab"))).as_served().unwrap();
        assert_eq!(served.ranker, "popularity");
        assert!(served.serve_id.starts_with("popularity."));
        assert!(reply(Some(("production", "interleave")))
            .as_served()
            .is_some());
        assert!(
            reply(Some(("production_no_rerank", "ab")))
                .as_served()
                .is_some(),
            "the arm that measures the rerank goes without it"
        );
    }

    #[test]
    fn freshness_windows() {
        assert_eq!(freshness(0, 30_000, 300_000), Freshness::Fresh);
        assert_eq!(freshness(30_000, 30_000, 300_000), Freshness::Stale);
        assert_eq!(freshness(330_000, 30_000, 300_000), Freshness::Expired);
    }

    #[test]
    fn a_click_lifts_its_category_and_hides_the_clicked_item() {
        let hl = HalfLife::from_hours(1.0).unwrap();
        let cands = [
            item("s1", 0.9, "sports"),
            item("s2", 0.8, "sports"),
            item("t1", 0.5, "tech"),
            item("t2", 0.4, "tech"),
        ];
        let before = rerank_for(&cands, None, 0, hl, RerankConfig::default(), 2);
        assert_eq!(before[0].item, "s1");
        let mut state = EdgeState::new("news", "a");
        state.record(EventKind::Click, 3.0, "t1", &["tech".into()], 0, hl);
        let after = rerank_for(&cands, Some(&state), 1000, hl, RerankConfig::default(), 2);
        let order: Vec<_> = after.iter().map(|i| i.item.as_str()).collect();
        assert_eq!(order, ["t2", "s1"]);
    }

    #[test]
    fn newcomers_of_different_segments_get_different_lists() {
        let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1";
        let linux = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
        let morning = 8 * 3_600_000;
        let name = |ua, referrer, t| cold_list(ua, referrer, t).cache_name();
        assert_eq!(
            name(Some(iphone), Some("https://www.google.com/"), morning),
            "anon:_cold/device:mobile,hour:morning,ref:search"
        );
        assert_eq!(
            name(Some(linux), None, morning),
            "anon:_cold/device:desktop,hour:morning"
        );
        // Each segment kind alone makes another list.
        let base = name(Some(linux), Some("https://t.co/x"), morning);
        assert_ne!(base, name(Some(iphone), Some("https://t.co/x"), morning));
        assert_ne!(base, name(Some(linux), Some("https://bing.com/"), morning));
        assert_ne!(
            base,
            name(Some(linux), Some("https://t.co/x"), 20 * 3_600_000)
        );
        // A User-Agent nobody knows leaves the device out.
        assert_eq!(
            name(Some("no browser at all"), None, morning),
            "anon:_cold/hour:morning"
        );
        assert_eq!(name(None, Some(""), morning), "anon:_cold/hour:morning");
    }
}
