//! `cargo xtask bench experiment`: experiments proven on simulated readers
//! whose tastes are known. Writes target/bench/experiment.json (and xtask
//! draws experiment.png from it).
//!
//! The readers are `attune_origin::simulate::readers` (the demo's simulated
//! traffic) over a catalog shaped like the demo's (240 articles, 10
//! categories): a favourite and a second category, position bias, log-normal
//! activity. Because the bench knows their click probabilities, it knows each
//! served rail's expected clicks and impressions, and so each arm's true CTR.
//!
//! 1. **A/B through the real pipeline** (origin → Kafka → consumers → Redis):
//!    `production` against `popularity`, readers visiting over simulated
//!    minutes; the results endpoint is read after every minute (peeking).
//!    Checks: the pipeline's per-arm CTR equals what the readers did, and the
//!    measured lift's always-valid interval covers the true lift.
//! 2. **SRM**: a share of one arm's stored exposures is deleted; the results
//!    must flag the mismatch.
//! 3. **A/A**, replayed offline from the recorded per-unit data of one arm,
//!    split in two by 400 seeds and read every minute: the false-positive
//!    rate of the always-valid interval beside the fixed-horizon one.
//! 4. **Interleaving against A/B** on one pair of rankers, offline with the
//!    same reader model: units each needs before its always-valid interval
//!    excludes no difference.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use attune_core::codec::encode_msgpack;
use attune_core::experiments::{assign, credit, team_draft, Team};
use attune_core::Batch;
use attune_origin::experiments::stats::{self, Moments, RatioMoments, Settings};
use attune_origin::simulate::rail_events;
use attune_origin::simulate::readers::{look, Outcome, World};
use attune_origin::store::redis::exposures_key;
use common::{now_ms, Bench, API_KEY};
use futures::StreamExt;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

const CATEGORIES: usize = 10;
const PER_CATEGORY: usize = 24;
const ITEMS: usize = CATEGORIES * PER_CATEGORY;
const RAIL: usize = 6;
const READERS: usize = 1_000;
const MINUTES: usize = 30;
const VISIT_P: f64 = 0.5;
const EXPERIMENT: &str = "bench-ab";
const AA_SPLITS: usize = 400;
const INTERLEAVING_RUNS: usize = 40;
const SRM_DROP: f64 = 0.3;
/// Noise on ranker B's scores in the interleaving comparison: larger, the
/// closer B is to A and the harder the difference is to see.
const NOISES: [f64; 3] = [0.3, 0.6, 1.0];
/// Units after which a comparison counts as undecided.
const CAP: usize = 20_000;

fn item_id(item: usize) -> String {
    format!("c{}-{}", item / PER_CATEGORY, item % PER_CATEGORY)
}

fn item_of(id: &str) -> Option<usize> {
    let (c, n) = id.strip_prefix('c')?.split_once('-')?;
    Some(c.parse::<usize>().ok()? * PER_CATEGORY + n.parse::<usize>().ok()?)
}

fn clicked_positions(seen: &[(bool, bool)]) -> Vec<usize> {
    seen.iter()
        .enumerate()
        .filter(|(_, (_, c))| *c)
        .map(|(p, _)| p)
        .collect()
}

/// One visit through the origin: the rail, the reader's impressions, clicks
/// and reads sent back with the rail's serve id. Returns the arm and what
/// the rail did.
async fn visit(
    bench: &Bench,
    world: &World,
    reader: usize,
    minute: usize,
) -> anyhow::Result<(usize, Outcome)> {
    let user = format!("anon:sim{reader}");
    let rail = bench
        .get_json(&format!("/v1/recommendations?user={user}&k={RAIL}"))
        .await
        .ok_or_else(|| anyhow::anyhow!("no rail for {user}"))?;
    let arm = match rail["experiment"]["variant"].as_str() {
        Some("control") => 0,
        Some("treatment") => 1,
        _ => anyhow::bail!("{user} was served outside the experiment: {rail}"),
    };
    let serve_id = rail["serve_id"].as_str().unwrap_or_default().to_owned();
    let items: Vec<usize> = rail["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| item_of(i["item"].as_str()?))
        .collect();
    let mut rng = SmallRng::seed_from_u64((reader * 1_000 + minute) as u64);
    let (outcome, seen) = look(world, reader, &items, &mut rng);
    let t = now_ms();
    let ids: Vec<String> = items.iter().map(|&i| item_id(i)).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let events = rail_events(&serve_id, &ids, &seen, t);
    if !events.is_empty() {
        let body = encode_msgpack(&Batch {
            site_key: bench.site_key.clone(),
            anonymous_id: format!("sim{reader}"),
            user_token: None,
            sent_at_ms: t,
            dropped: 0,
            events,
        });
        let r = bench.post(body).await?;
        anyhow::ensure!(r.status() == 202, "ingest answered {}", r.status());
    }
    Ok((arm, outcome))
}

/// A reader's running totals.
#[derive(Debug, Clone, Copy, Default)]
struct Unit {
    arm: Option<usize>,
    clicks: u32,
    impressions: u32,
}

/// Each arm's clicks ÷ impressions over its readers, as they were sent.
fn sent_ctr(units: &[Unit]) -> Vec<f64> {
    (0..2)
        .map(|arm| {
            let (c, i) = units
                .iter()
                .filter(|u| u.arm == Some(arm))
                .fold((0u64, 0u64), |(c, i), u| {
                    (c + u64::from(u.clicks), i + u64::from(u.impressions))
                });
            c as f64 / i as f64
        })
        .collect()
}

/// The results once the pipeline has applied everything in `units`: the
/// same exposed readers and, per arm, the very CTR the readers made.
async fn applied(bench: &Bench, units: &[Unit]) -> anyhow::Result<Value> {
    let sent = sent_ctr(units);
    let exposed = units.iter().filter(|u| u.arm.is_some()).count() as u64;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let r = bench
            .get_json(&format!("/v1/experiments/{EXPERIMENT}/results"))
            .await
            .unwrap_or_default();
        let values: Vec<f64> = r["metrics"][0]["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_f64)
            .collect();
        let same = |a: &f64, b: &f64| (a - b).abs() < 1e-9 || (a.is_nan() && b.is_nan());
        if r["units"] == exposed
            && values.len() == 2
            && values.iter().zip(&sent).all(|(a, b)| same(a, b))
        {
            return Ok(r);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the pipeline never matched what the readers did (CTR {sent:?}, {exposed} units): {r}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn wilson(hits: usize, n: usize) -> [f64; 2] {
    let (p, n, z) = (hits as f64 / n as f64, n as f64, 1.96);
    let centre = (p + z * z / (2.0 * n)) / (1.0 + z * z / n);
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / (1.0 + z * z / n);
    [centre - half, centre + half]
}

/// A/A from the recorded per-minute totals of one arm's units, split by
/// `AA_SPLITS` seeds and read every minute: (always-valid, fixed-horizon)
/// false positives.
fn replay_aa(history: &[Vec<Unit>], arm: usize) -> (usize, usize, usize) {
    let units = history
        .last()
        .map_or(0, |h| h.iter().filter(|u| u.arm == Some(arm)).count());
    let settings = Settings {
        planned_units: units as f64,
        ..Settings::default()
    };
    let (mut always, mut fixed) = (0, 0);
    for split in 0..AA_SPLITS {
        let seed = format!("aa-{split}");
        let (mut a_hit, mut f_hit) = (false, false);
        for minute in history {
            let mut halves = [RatioMoments::default(), RatioMoments::default()];
            for (reader, u) in minute.iter().enumerate() {
                if u.arm != Some(arm) {
                    continue;
                }
                let half = assign(&seed, &format!("sim{reader}"), 1.0, &[0.5, 0.5], None)
                    .expect("full coverage");
                halves[half].push(f64::from(u.clicks), f64::from(u.impressions));
            }
            let Some(c) = stats::compare(halves[0].estimate(), halves[1].estimate(), &settings)
            else {
                continue;
            };
            let d = c.difference;
            a_hit |= d.always_valid.low > 0.0 || d.always_valid.high < 0.0;
            f_hit |= d.fixed.low > 0.0 || d.fixed.high < 0.0;
        }
        always += usize::from(a_hit);
        fixed += usize::from(f_hit);
    }
    (always, fixed, units)
}

/// Units until the always-valid interval of A/B (per-unit CTR, two arms)
/// and of team-draft interleaving (per-unit preference, one rail) each
/// excludes no difference, for popularity (A) against a personal ranker (B).
fn interleaving_vs_ab(world: &World, noise: f64, run: u64) -> (usize, usize) {
    let mut rng = SmallRng::seed_from_u64(1_000 + run);
    // A: the catalog by its mean click probability over all readers.
    let mut popular: Vec<usize> = (0..ITEMS).collect();
    let mean = |i: usize| (0..READERS).map(|r| world.p_click(r, i)).sum::<f64>();
    popular.sort_by(|a, b| mean(*b).total_cmp(&mean(*a)));
    let personal = |reader: usize, rng: &mut SmallRng| {
        let mut items: Vec<(f64, usize)> = (0..ITEMS)
            .map(|i| {
                (
                    world.p_click(reader, i) + rng.random_range(-noise..noise),
                    i,
                )
            })
            .collect();
        items.sort_by(|a, b| b.0.total_cmp(&a.0));
        items.into_iter().map(|(_, i)| i).collect::<Vec<_>>()
    };
    let settings = Settings::default();
    let (mut ab_needed, mut il_needed) = (None, None::<usize>);
    let mut arms = [RatioMoments::default(), RatioMoments::default()];
    let mut prefs = Moments::default();
    for n in 1..=CAP {
        let reader = rng.random_range(0..READERS);
        let mine = personal(reader, &mut rng);
        if ab_needed.is_none() {
            let arm = n % 2;
            let rail: Vec<usize> = if arm == 0 { &popular } else { &mine }[..RAIL].to_vec();
            let (o, _) = look(world, reader, &rail, &mut rng);
            arms[arm].push(f64::from(o.clicks), f64::from(o.impressions));
            if let Some(c) = stats::compare(arms[0].estimate(), arms[1].estimate(), &settings) {
                let d = c.difference.always_valid;
                if d.low > 0.0 || d.high < 0.0 {
                    ab_needed = Some(n);
                }
            }
        }
        if il_needed.is_none() {
            let merged = team_draft(&popular, &mine, RAIL, rng.random());
            let rail: Vec<usize> = merged.iter().map(|(i, _)| *i).collect();
            let teams: Vec<Team> = merged.iter().map(|(_, t)| *t).collect();
            let (_, seen) = look(world, reader, &rail, &mut rng);
            prefs.push(match credit(&teams, &clicked_positions(&seen)) {
                Some(Team::B) => 1.0,
                Some(Team::A) => -1.0,
                None => 0.0,
            });
            if let Some(var) = prefs.variance().filter(|_| n >= 10) {
                let half = stats::always_valid_half_width(
                    var,
                    n as f64,
                    settings.alpha,
                    settings.planned_units,
                );
                if prefs.mean.abs() > half {
                    il_needed = Some(n);
                }
            }
        }
        if ab_needed.is_some() && il_needed.is_some() {
            break;
        }
    }
    (ab_needed.unwrap_or(CAP), il_needed.unwrap_or(CAP))
}

/// The median; undecided runs count as [`CAP`].
fn median(mut v: Vec<usize>) -> usize {
    v.sort_unstable();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let bench = Bench::start("experiment").await?;
    let _consumer = bench.consumer()?;
    let category_of = (0..ITEMS).map(|i| i / PER_CATEGORY).collect();
    let world = World::new(7, READERS, category_of, CATEGORIES);
    let published = now_ms() - 3_600_000;
    let catalog: Vec<Value> = (0..ITEMS)
        .map(|i| json!({"id": item_id(i), "tags": [format!("cat{}", i / PER_CATEGORY)], "published_at_ms": published}))
        .collect();
    let r = bench
        .http
        .post(format!("{}/v1/items", bench.base))
        .bearer_auth(API_KEY)
        .json(&json!({ "items": catalog }))
        .send()
        .await?;
    anyhow::ensure!(r.status() == 200, "catalog load answered {}", r.status());
    let r = bench
        .http
        .put(format!("{}/v1/experiments/{EXPERIMENT}", bench.base))
        .bearer_auth(API_KEY)
        .json(&json!({"variants": [
            {"name": "control", "ranker": "popularity", "weight": 0.5},
            {"name": "treatment", "ranker": "production", "weight": 0.5},
        ]}))
        .send()
        .await?;
    anyhow::ensure!(
        r.status() == 200,
        "the experiment was refused: {}",
        r.text().await?
    );

    println!("==> A/B through the pipeline: {READERS} readers, {MINUTES} simulated minutes");
    let progress = indicatif::ProgressBar::new(MINUTES as u64);
    let mut units = vec![Unit::default(); READERS];
    let mut history: Vec<Vec<Unit>> = Vec::new();
    let mut expected = [(0.0f64, 0.0f64); 2];
    let mut peeks = Vec::new();
    let t0 = Instant::now();
    for minute in 0..MINUTES {
        let mut rng = SmallRng::seed_from_u64(minute as u64);
        let visitors: Vec<usize> = (0..READERS)
            .filter(|_| rng.random::<f64>() < VISIT_P)
            .collect();
        let outcomes: Vec<anyhow::Result<(usize, usize, Outcome)>> =
            futures::stream::iter(visitors)
                .map(|reader| {
                    let (bench, world) = (&bench, &world);
                    async move {
                        let (arm, o) = visit(bench, world, reader, minute).await?;
                        Ok((reader, arm, o))
                    }
                })
                .buffer_unordered(16)
                .collect()
                .await;
        for outcome in outcomes {
            let (reader, arm, o) = outcome?;
            let u = &mut units[reader];
            u.arm = Some(arm);
            u.clicks += o.clicks;
            u.impressions += o.impressions;
            expected[arm].0 += o.expected_clicks;
            expected[arm].1 += o.expected_impressions;
        }
        history.push(units.clone());
        // Peek, as someone watching the dashboard would, once the consumers
        // have applied this minute: the results must then show exactly what
        // the readers did.
        let r = applied(&bench, &units).await?;
        let ctr = &r["metrics"][0];
        let lift = &ctr["comparisons"][0]["lift"];
        peeks.push(json!({
            "minute": minute + 1,
            "units": r["units"],
            "lift": lift["value"],
            "always_valid": [lift["always_valid"]["low"], lift["always_valid"]["high"]],
            "fixed": [lift["fixed"]["low"], lift["fixed"]["high"]],
            "decision": ctr["comparisons"][0]["decision"],
        }));
        progress.inc(1);
    }
    progress.finish();
    let sent_ctr = sent_ctr(&units);
    let exposed = units.iter().filter(|u| u.arm.is_some()).count() as u64;
    let last = applied(&bench, &units).await?;
    let pipeline_s = t0.elapsed().as_secs_f64();
    let true_ctr = [expected[0].0 / expected[0].1, expected[1].0 / expected[1].1];
    let true_lift = true_ctr[1] / true_ctr[0] - 1.0;
    let lift = &last["metrics"][0]["comparisons"][0]["lift"];
    let (low, high) = (
        lift["always_valid"]["low"].as_f64().unwrap_or(f64::NAN),
        lift["always_valid"]["high"].as_f64().unwrap_or(f64::NAN),
    );
    let covered = low <= true_lift && true_lift <= high;
    // Units the always-valid interval needs to exclude 0 at the true lift,
    // from the per-unit variance this run measured (the fixed interval's).
    let fixed_half = (lift["fixed"]["high"].as_f64().unwrap_or(f64::NAN)
        - lift["fixed"]["low"].as_f64().unwrap_or(f64::NAN))
        / 2.0;
    let per_unit_variance = (fixed_half / 1.96).powi(2) * exposed as f64;
    let settings = Settings::default();
    let units_needed = (1..=40)
        .map(|k| 250.0 * f64::from(k) * f64::from(k))
        .find(|&n| {
            stats::always_valid_half_width(
                per_unit_variance,
                n,
                settings.alpha,
                settings.planned_units,
            ) < true_lift.abs()
        });
    let decided_at = peeks
        .iter()
        .find(|p| p["decision"] == "b_wins" || p["decision"] == "a_wins")
        .cloned();
    println!(
        "  true lift {:+.1} %, measured {:+.1} % [{:+.1} %, {:+.1} %] always-valid: {}",
        100.0 * true_lift,
        100.0 * lift["value"].as_f64().unwrap_or(f64::NAN),
        100.0 * low,
        100.0 * high,
        if covered { "covered" } else { "NOT covered" }
    );

    println!(
        "==> SRM: {:.0} % of the treatment's exposures deleted",
        100.0 * SRM_DROP
    );
    let key = exposures_key(&bench.site_key, EXPERIMENT, 1);
    let mut redis = attune_origin::store::redis::conn::SyncConn::open(&bench.redis_url)?;
    let treated: Vec<usize> = (0..READERS).filter(|r| units[*r].arm == Some(1)).collect();
    let dropped = (treated.len() as f64 * SRM_DROP).round() as usize;
    for reader in &treated[..dropped] {
        let _: i64 = redis::cmd("HDEL")
            .arg(&key)
            .arg(format!("anon:sim{reader}"))
            .query(&mut redis)?;
    }
    let srm = bench
        .get_json(&format!("/v1/experiments/{EXPERIMENT}/results"))
        .await
        .unwrap_or_default();
    let srm_flagged = srm["srm"]["mismatch"] == true;
    let sweep: Vec<Value> = [0.05, 0.1, 0.2, 0.3, 0.5]
        .iter()
        .map(|share| {
            let kept = treated.len() - (treated.len() as f64 * share).round() as usize;
            let control = exposed as usize - treated.len();
            let s = stats::srm(&[control as u64, kept as u64], &[0.5, 0.5]);
            json!({"dropped_share": share, "p_value": s.map(|s| s.p_value), "flagged": s.map(|s| s.mismatch)})
        })
        .collect();
    println!(
        "  p = {:.2e}: {}",
        srm["srm"]["p_value"].as_f64().unwrap_or(f64::NAN),
        if srm_flagged {
            "flagged"
        } else {
            "NOT flagged"
        }
    );

    println!("==> A/A: {AA_SPLITS} splits of the control's readers, read every minute");
    let (always, fixed, aa_units) = replay_aa(&history, 0);
    let fpr = always as f64 / AA_SPLITS as f64;
    println!(
        "  false positives: always-valid {always}/{AA_SPLITS}, fixed-horizon read every minute {fixed}/{AA_SPLITS}"
    );

    println!(
        "==> interleaving vs A/B: {INTERLEAVING_RUNS} runs per gap between the rankers, units to a decision"
    );
    let bar = indicatif::ProgressBar::new((INTERLEAVING_RUNS * NOISES.len()) as u64);
    let mut gaps = Vec::new();
    for noise in NOISES {
        let (mut ab, mut il) = (Vec::new(), Vec::new());
        for run in 0..INTERLEAVING_RUNS as u64 {
            let (a, i) = interleaving_vs_ab(&world, noise, run);
            ab.push(a);
            il.push(i);
            bar.inc(1);
        }
        let (ab_median, il_median) = (median(ab.clone()), median(il.clone()));
        println!(
            "  B's noise ±{noise}: median units A/B {ab_median}, interleaving {il_median}: {:.2}×",
            ab_median as f64 / il_median as f64
        );
        gaps.push(json!({
            "b_noise": noise,
            "ab_units_median": ab_median,
            "interleaving_units_median": il_median,
            "ab_over_interleaving": ab_median as f64 / il_median as f64,
            "ab_units": ab,
            "interleaving_units": il,
        }));
    }
    bar.finish();

    let by_arm: BTreeMap<&str, Value> = [("control (popularity)", 0), ("treatment (production)", 1)]
        .into_iter()
        .map(|(name, arm)| {
            (
                name,
                json!({"true_ctr": true_ctr[arm], "sent_ctr": sent_ctr[arm], "pipeline_ctr": last["metrics"][0]["values"][arm]}),
            )
        })
        .collect();
    common::write_report(
        "experiment",
        &json!({
            "model": "readers with a favourite (0.7) and a second (0.2) category over 240 articles in 10 categories; examine position p with 1/(1+p)^0.7; click an examined article with (0.02 + 0.8 · taste · quality) · activity (log-normal, σ 0.8)",
            "ab": {
                "readers": READERS,
                "minutes": MINUTES,
                "units": exposed,
                "pipeline_seconds": pipeline_s,
                "arms": by_arm,
                "true_lift": true_lift,
                "measured_lift": lift["value"],
                "always_valid": [low, high],
                "fixed": [lift["fixed"]["low"], lift["fixed"]["high"]],
                "true_lift_covered": covered,
                "decided_at": decided_at,
                "units_needed_estimate": units_needed,
                "decision": last["decision"],
                "peeks": peeks,
            },
            "srm": {
                "dropped_share_of_treatment": SRM_DROP,
                "p_value": srm["srm"]["p_value"],
                "flagged": srm_flagged,
                "sweep_at_these_units": sweep,
            },
            "aa": {
                "splits": AA_SPLITS,
                "units": aa_units,
                "looks": MINUTES,
                "false_positive_rate_always_valid": fpr,
                "false_positive_rate_always_valid_95": wilson(always, AA_SPLITS),
                "false_positive_rate_fixed_peeking": fixed as f64 / AA_SPLITS as f64,
                "false_positive_rate_fixed_peeking_95": wilson(fixed, AA_SPLITS),
            },
            "interleaving_vs_ab": {
                "runs": INTERLEAVING_RUNS,
                "cap": CAP,
                "rankers": "A: the catalog by mean click probability (popularity); B: each reader's own click probabilities plus uniform noise (a larger noise: B closer to A)",
                "by_gap": gaps,
            },
        }),
    )?;
    bench.delete_topics().await?;
    anyhow::ensure!(covered, "the always-valid interval missed the true lift");
    anyhow::ensure!(
        srm_flagged,
        "the injected sample ratio mismatch was not flagged"
    );
    anyhow::ensure!(fpr <= 0.05, "A/A false-positive rate {fpr} above α");
    Ok(())
}
