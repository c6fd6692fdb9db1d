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
        "/__attune/golden/experiments" => {
            let vectors: serde_json::Value = req.json().await?;
            Response::from_json(&experiment_vectors(&vectors))
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

/// attune-core's answers to GrowthBook's assignment vectors (the sections of
/// `core/testdata/growthbook.json`), in the vectors' own shapes.
fn experiment_vectors(v: &serde_json::Value) -> serde_json::Value {
    use attune_core::experiments::{bucket_ranges, choose_arm, hash, in_namespace, Namespace};
    let cases = |section: &str| v[section].as_array().cloned().unwrap_or_default();
    let floats = |x: &serde_json::Value| -> Vec<f64> {
        x.as_array()
            .map(|a| a.iter().filter_map(serde_json::Value::as_f64).collect())
            .unwrap_or_default()
    };
    let ranges = |x: &serde_json::Value| -> Vec<(f64, f64)> {
        x.as_array()
            .map(|a| {
                a.iter()
                    .map(|r| (r[0].as_f64().unwrap_or(0.0), r[1].as_f64().unwrap_or(0.0)))
                    .collect()
            })
            .unwrap_or_default()
    };
    let text = |x: &serde_json::Value| x.as_str().unwrap_or_default().to_owned();
    serde_json::json!({
        "hash": cases("hash").iter().map(|c| {
            hash(&text(&c[0]), &text(&c[1]), c[2].as_u64().unwrap_or(0) as u32)
        }).collect::<Vec<_>>(),
        "getBucketRange": cases("getBucketRange").iter().map(|c| {
            let args = &c[1];
            let weights = args[2].as_array().map(|_| floats(&args[2]));
            bucket_ranges(args[0].as_i64().unwrap_or(0), args[1].as_f64().unwrap_or(0.0), weights.as_deref())
                .into_iter().map(|(s, e)| [s, e]).collect::<Vec<_>>()
        }).collect::<Vec<_>>(),
        "chooseVariation": cases("chooseVariation").iter().map(|c| {
            choose_arm(c[1].as_f64().unwrap_or(0.0), &ranges(&c[2])).map_or(-1, |i| i as i64)
        }).collect::<Vec<_>>(),
        "inNamespace": cases("inNamespace").iter().map(|c| {
            let ns = &c[2];
            in_namespace(&text(&c[1]), &Namespace {
                id: text(&ns[0]),
                start: ns[1].as_f64().unwrap_or(0.0),
                end: ns[2].as_f64().unwrap_or(0.0),
            })
        }).collect::<Vec<_>>(),
    })
}
