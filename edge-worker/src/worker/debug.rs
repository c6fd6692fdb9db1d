//! `/__attune/…`, served only with `DEBUG_ENDPOINTS = "1"` (tests and
//! measurements): attune-core's math on golden-vector inputs, computed inside
//! workerd, and a rerank loop for timing.

use attune_core::{
    rerank, Affinities, Candidate, DecayedScore, FeedbackWeights, HalfLife, Interaction,
    RerankConfig,
};
use serde::Deserialize;
use worker::{Request, Response, Result};

use super::{error, Config};
use crate::fixture;

#[derive(Deserialize)]
struct HistoryEntry {
    tags: Vec<String>,
    interaction: Interaction,
    ts_ms: i64,
}

/// A golden rerank case's inputs.
#[derive(Deserialize)]
struct RerankCase {
    half_life_ms: f64,
    affinity_blend: f64,
    now_ms: i64,
    history: Vec<HistoryEntry>,
    candidates: Vec<Candidate>,
}

/// A golden decay case's inputs.
#[derive(Deserialize)]
struct DecayCase {
    half_life_ms: f64,
    contributions: Vec<(f64, i64)>,
    query_ms: i64,
}

fn half_life(ms: f64) -> Result<HalfLife> {
    HalfLife::from_ms(ms)
        .ok_or_else(|| worker::Error::RustError("half_life_ms must be positive".into()))
}

pub async fn handle(mut req: Request, _config: &Config) -> Result<Response> {
    match req.path().as_str() {
        "/__attune/golden/rerank" => {
            let case: RerankCase = req.json().await?;
            let hl = half_life(case.half_life_ms)?;
            let weights = FeedbackWeights::default();
            let mut aff = Affinities::new();
            for h in &case.history {
                aff.record(
                    h.tags.iter().map(String::as_str),
                    weights.weight(&h.interaction),
                    h.ts_ms,
                    hl,
                );
            }
            let config = RerankConfig {
                affinity_blend: case.affinity_blend,
            };
            Response::from_json(&rerank(&case.candidates, &aff, case.now_ms, hl, config))
        }
        "/__attune/golden/decay" => {
            let case: DecayCase = req.json().await?;
            let hl = half_life(case.half_life_ms)?;
            let mut s = DecayedScore::default();
            for (w, t) in &case.contributions {
                s.add(*w, *t, hl);
            }
            Response::from_json(
                &serde_json::json!({"state": s, "value": s.value_at(case.query_ms, hl)}),
            )
        }
        "/__attune/bench/rerank" => {
            let url = req.url()?;
            let n: usize = url
                .query_pairs()
                .find(|(k, _)| k == "n")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            let checksum = fixture::rerank_loop(n);
            Response::from_json(&serde_json::json!({"n": n, "checksum": checksum}))
        }
        path => error(404, "not_found", format!("no debug route {path}"), None),
    }
}
