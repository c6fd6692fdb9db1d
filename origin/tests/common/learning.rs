//! The online model's learning and live validation, checked alike on both
//! backends: a stream of readers with planted tastes, and the same stream
//! replayed offline through `attune_origin::model` — test, then learn —
//! for the numbers the consumers must report.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use attune_core::{Batch, FeedbackWeights, Interaction};
use attune_origin::model::covisit::CovisitConfig;
use attune_origin::model::online::{learn, NegativePool};
use attune_origin::model::validation::Validator;
use attune_origin::model::{initial, MfConfig};

use super::{batch, event, now_ms, TestOrigin};

/// Kinds of items, items per kind, readers per kind.
const KINDS: usize = 3;
const PER_KIND: usize = 10;
const READERS_PER_KIND: usize = 8;
/// Items of its kind each reader holds back for the last phase.
const HELD_BACK: usize = 3;
/// Times each reader clicks the items they do not hold back (new event ids
/// each time) before the last phase.
const PASSES: usize = 3;

/// The catalog: `k<kind>-<n>`, tagged with its kind.
pub fn catalog() -> serde_json::Value {
    let items: Vec<serde_json::Value> = (0..KINDS)
        .flat_map(|k| {
            (0..PER_KIND)
                .map(move |n| serde_json::json!({"id": item(k, n), "tags": [format!("kind{k}")]}))
        })
        .collect();
    serde_json::json!({ "items": items })
}

fn item(kind: usize, n: usize) -> String {
    format!("k{kind}-{n}")
}

fn held_back(reader: usize, n: usize) -> bool {
    (n + reader) % PER_KIND < HELD_BACK
}

/// [`PASSES`] rounds of one batch per reader clicking the items of their
/// kind they do not hold back (only the first round's are new to their
/// windows, and validated), then one per reader clicking the held-back
/// ones: predictions the model has learned enough to make.
pub fn planted_batches(site: &str) -> Vec<Batch> {
    let t = now_ms();
    let mut out = Vec::new();
    let phases = std::iter::repeat_n(false, PASSES).chain([true]);
    for phase in phases {
        for kind in 0..KINDS {
            for r in 0..READERS_PER_KIND {
                let events = (0..PER_KIND)
                    .filter(|&n| held_back(r, n) == phase)
                    .map(|n| event(Interaction::Click, Some(&item(kind, n)), t))
                    .collect();
                out.push(batch(site, &format!("planted{kind}-{r}"), events));
            }
        }
    }
    out
}

/// Posts each batch and waits until its clicks are in the reader's profile,
/// so the consumer applies the batches one at a time, in order.
pub async fn post_each_applied(origin: &TestOrigin, batches: &[Batch]) {
    for b in batches {
        let user = format!("anon:{}", b.anonymous_id);
        let clicks = |profile: &serde_json::Value| profile["counts"]["click"].as_u64();
        let before = origin
            .get_as_site(&format!("/v1/profile?user={user}"))
            .await;
        let want = clicks(&before).unwrap_or(0) + b.events.len() as u64;
        assert_eq!(origin.post_batch(b).await.status(), 202);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let profile = origin
                .get_as_site(&format!("/v1/profile?user={user}"))
                .await;
            if clicks(&profile) == Some(want) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{user}'s clicks never reached {want}: {profile}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The offline prequential run of `batches`: the consumers' steps (negatives
/// drawn from the site's pool as each batch begins, then each click
/// validated when new to the reader's window, then learned). Returns
/// (evaluated, hits at 10, HR@10 of the latest window).
pub fn offline_validation(site: &str, batches: &[Batch]) -> (u64, u64, f64) {
    let (mf, cv) = (MfConfig::default(), CovisitConfig::default());
    let weights = FeedbackWeights::default();
    let mut pool = NegativePool::for_site(site);
    let mut vectors: HashMap<String, Vec<f32>> = HashMap::new();
    let mut users: HashMap<String, (Vec<f32>, Vec<String>)> = HashMap::new();
    let mut validator = Validator::new(1.0);
    for b in batches {
        let user = format!("anon:{}", b.anonymous_id);
        let (u, window) = users
            .entry(user.clone())
            .or_insert_with(|| (initial(&format!("{site}/{user}"), mf.dim), Vec::new()));
        let drawn: Vec<Vec<String>> = b
            .events
            .iter()
            .map(|e| pool.draw(mf.negatives, e.item.as_deref().unwrap()))
            .collect();
        for (e, negatives) in b.events.iter().zip(drawn) {
            let item = e.item.as_deref().unwrap();
            let start = |j: &str| initial(&format!("{site}/{j}"), mf.dim);
            if validator.wants(&e.id.to_string(), item, window) {
                let mut known = vectors.clone();
                known.entry(item.to_owned()).or_insert_with(|| start(item));
                validator.evaluate(u, item, &known, window);
            }
            for j in std::iter::once(item).chain(negatives.iter().map(String::as_str)) {
                vectors.entry(j.to_owned()).or_insert_with(|| start(j));
            }
            let w = weights.event_weight(e) as f32;
            learn(u, window, &mut vectors, item, w, &negatives, &mf, &cv);
            pool.record(item);
        }
    }
    let s = validator.live.summary().expect("the stream has clicks");
    (s.evaluated, s.hits, s.hr10)
}

/// Checks the consumer's live validation against the offline run: after
/// the learning passes and after the last phase, `live` (evaluated, hits,
/// the latest window's HR@10) — polled until the consumer has evaluated as
/// many engagements — equals the offline numbers; and the last phase, predicting what readers held back,
/// hits at least 90 %, where a model that learned nothing hits 10 of the
/// 23 items outside the reader's window, 43 %. (Offline over 100 sites:
/// 98.6 % at worst; with one learning pass instead of three, 57 %.)
pub async fn live_validation_matches_offline<F, Fut>(origin: &TestOrigin, live: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<(u64, u64, f64)>>,
{
    origin.load_items(catalog()).await;
    let site = origin.site.site_key.clone();
    let batches = planted_batches(&site);
    let learned = batches.len() * PASSES / (PASSES + 1);
    let mut seen = Vec::new();
    for upto in [learned, batches.len()] {
        post_each_applied(origin, &batches[seen.len()..upto]).await;
        seen = batches[..upto].to_vec();
        let want = offline_validation(&site, &seen);
        let deadline = Instant::now() + Duration::from_secs(20);
        let got = loop {
            let got = live().await;
            if got.is_some_and(|(n, _, _)| n >= want.0) || Instant::now() > deadline {
                break got;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let got = got.unwrap_or_else(|| panic!("no live validation after {upto} batches"));
        assert_eq!(
            (got.0, got.1),
            (want.0, want.1),
            "live (evaluated, hits) vs offline after {upto} batches"
        );
        assert!(
            (got.2 - want.2).abs() < 1e-9,
            "live HR@10 {} vs offline {}",
            got.2,
            want.2
        );
    }
    let first = offline_validation(&site, &batches[..learned]);
    let all = offline_validation(&site, &batches);
    let (n, hits) = (all.0 - first.0, all.1 - first.1);
    assert!(
        n > 0 && hits as f64 >= 0.9 * n as f64,
        "held-back items hit {hits} of {n}"
    );
}

/// Readers of three planted kinds, each reading 30 of their kind's 40
/// items, one a turn, in an order of their own (the last turns are items
/// new to every window, predictable only from the kind): one batch per
/// reader and turn, in time order.
pub async fn post_planted_turns(origin: &TestOrigin) {
    use attune_core::Interaction;
    let site = origin.site.site_key.clone();
    let items: Vec<serde_json::Value> = (0..3)
        .flat_map(|k| (0..40).map(move |i| serde_json::json!({"id": format!("k{k}-{i}"), "tags": [format!("kind{k}")]})))
        .collect();
    origin
        .load_items(serde_json::json!({ "items": items }))
        .await;
    let t0 = super::now_ms() - 120_000;
    for turn in 0..30 {
        for r in 0..30 {
            let item = format!("k{}-{}", r % 3, (turn * 7 + r * 11) % 40);
            let ts = t0 + turn as i64 * 1_000 + r as i64;
            let e = super::event(Interaction::Click, Some(&item), ts);
            let b = super::batch(&site, &format!("turns{r}"), vec![e]);
            assert_eq!(origin.post_batch(&b).await.status(), 202);
        }
    }
}
