//! `cargo xtask bench recommend`: latency of ranking 10,000 items with 64
//! factors for one request (`ranking::rank`: co-visitation over a 20-item
//! window with 200 neighbours per row, model score, popularity, categories,
//! freshness, consumed items, top-K), beside the
//! physical floor — a bare dot product over all items and a top-K selection —
//! in the same run. Also timed: a newcomer's request (segment blend, then
//! rank) and building the site snapshot a request ranks against (once per
//! site per second, `ranking::snapshots`). Writes target/bench/recommend.json.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use attune_core::{DecayedScore, HalfLife};
use std::sync::Arc;

use attune_origin::model::covisit::CovisitConfig;
use attune_origin::model::{dot, initial};
use attune_origin::ranking::{rank, Catalog, Learned, Popularity, RankWeights, Signals};
use attune_origin::store::{CovisitRows, Item, UserModel};

const ITEMS: usize = 10_000;
const DIM: usize = 64;
const K: usize = 20;
const RUNS: usize = 1000;
const NOW: i64 = 1_800_000_000_000;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn time(mut f: impl FnMut(usize)) -> (f64, f64) {
    for i in 0..50 {
        f(i);
    }
    let mut us: Vec<f64> = (0..RUNS)
        .map(|i| {
            let t0 = Instant::now();
            f(i);
            t0.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    us.sort_by(f64::total_cmp);
    (percentile(&us, 0.5), percentile(&us, 0.99))
}

fn main() -> anyhow::Result<()> {
    let now = NOW;
    let items: Vec<Item> = (0..ITEMS)
        .map(|i| Item {
            id: format!("item-{i}"),
            length_words: None,
            tags: vec![format!("cat-{}", i % 40), format!("tag-{}", i % 7)],
            published_at_ms: Some(now - i as i64 * 60_000),
            metadata: serde_json::Value::Null,
        })
        .collect();
    let vectors: HashMap<String, Vec<f32>> = items
        .iter()
        .map(|i| (i.id.clone(), initial(&i.id, DIM)))
        .collect();
    let popularity: HashMap<String, DecayedScore> = items
        .iter()
        .enumerate()
        .map(|(n, i)| {
            (
                i.id.clone(),
                DecayedScore::point(1.0 / (n as f64 + 1.0), now),
            )
        })
        .collect();
    let hl = HalfLife::from_hours(24.0).expect("positive");
    // Users with factors, 50 consumed items and 16 category interests each.
    let users: Vec<UserModel> = (0..64)
        .map(|u| UserModel {
            vector: Some(initial(&format!("user-{u}"), DIM)),
            consumed: (0..50)
                .map(|i| format!("item-{}", i * 13 + u))
                .collect::<HashSet<_>>(),
            affinities: (0..16).map(|c| (format!("cat-{c}"), c as f64)).collect(),
            recent: (0..20).map(|i| format!("item-{}", i * 17 + u)).collect(),
        })
        .collect();
    // A row of 200 neighbours for every item in a window.
    let row = |item: &str| -> HashMap<String, f64> {
        let i: usize = item["item-".len()..].parse().expect("an item id");
        (1..=200)
            .map(|k| (format!("item-{}", (i + k * 37) % ITEMS), k as f64))
            .collect()
    };
    let norms = Arc::new(
        items
            .iter()
            .map(|i| (i.id.clone(), 100.0))
            .collect::<HashMap<_, _>>(),
    );
    // What a request reads: the rows of its user's window only.
    let rows: Vec<CovisitRows> = users
        .iter()
        .map(|u| u.recent.iter().map(|r| (r.clone(), row(r))).collect())
        .collect();
    let covisit = CovisitConfig::default();
    let snapshot = || {
        let catalog = Catalog::new(items.clone());
        let learned = Learned::new(&catalog, &vectors, norms.clone());
        let popularity = Popularity::new(&catalog, &popularity, hl, now);
        (catalog, learned, popularity)
    };
    let (catalog, learned, site_popularity) = snapshot();
    fn signals<'a>(
        (catalog, learned, rows, covisit): (
            &'a Catalog,
            &'a Learned,
            &'a [CovisitRows],
            &'a CovisitConfig,
        ),
        r: usize,
        popularity: &'a Popularity,
    ) -> Signals<'a> {
        Signals {
            catalog,
            learned,
            popularity,
            rows: &rows[r % rows.len()],
            covisit,
            now_ms: NOW,
        }
    }
    let site = (&catalog, &learned, &rows[..], &covisit);

    let (p50, p99) = time(|r| {
        let ranked = rank(
            &signals(site, r, &site_popularity),
            &users[r % 64],
            &RankWeights::default(),
            K,
        );
        assert_eq!(ranked.len(), K);
    });
    // A newcomer: their device's and hour's popularity (a tenth of the
    // catalog each) blended with the site's.
    let segments: Vec<HashMap<String, DecayedScore>> = (0..2)
        .map(|s| {
            items
                .iter()
                .skip(s)
                .step_by(10)
                .map(|i| (i.id.clone(), DecayedScore::point(1.0, now)))
                .collect()
        })
        .collect();
    let newcomer = UserModel::default();
    let (new50, new99) = time(|r| {
        let blended = site_popularity.blend(&catalog, &segments, hl, now);
        let ranked = rank(
            &signals(site, r, &blended),
            &newcomer,
            &RankWeights::default(),
            K,
        );
        assert_eq!(ranked.len(), K);
    });
    let (build50, build99) = time(|_| {
        let (catalog, _, _) = snapshot();
        assert_eq!(catalog.len(), ITEMS);
    });
    // The floor: contiguous factors, one dot product per item, top-K selection.
    let matrix: Vec<f32> = items
        .iter()
        .flat_map(|i| vectors[&i.id].iter().copied())
        .collect();
    let (floor50, floor99) = time(|r| {
        let u = users[r % 64].vector.as_deref().expect("a vector");
        let mut scores: Vec<(f32, usize)> = matrix
            .chunks_exact(DIM)
            .map(|q| dot(u, q))
            .zip(0..)
            .collect();
        scores.select_nth_unstable_by(K, |a, b| b.0.total_cmp(&a.0));
        assert!(scores.len() > K);
    });
    println!("recommend benchmark: {ITEMS} items × {DIM} factors, top {K}, {RUNS} requests");
    println!("  rank (covisit + model + popularity + categories + freshness + consumed): p50 {:.0} us, p99 {:.0} us (target p99 < 5000 us)", p50, p99);
    println!("  newcomer (segment blend + rank):                               p50 {:.0} us, p99 {:.0} us", new50, new99);
    println!("  floor (dot products + top-K):                                  p50 {:.0} us, p99 {:.0} us", floor50, floor99);
    println!("  ratio at p99: {:.1}x the floor", p99 / floor99);
    println!("  site snapshot (catalog, factors, norms, popularity; once per site per second): p50 {:.0} us, p99 {:.0} us", build50, build99);
    let json = serde_json::json!({
        "items": ITEMS, "factors": DIM, "k": K, "requests": RUNS,
        "rank_us": {"p50": p50, "p99": p99},
        "newcomer_us": {"p50": new50, "p99": new99},
        "snapshot_us": {"p50": build50, "p99": build99},
        "floor_us": {"p50": floor50, "p99": floor99},
        "p99_over_floor": p99 / floor99,
    });
    common::write_report("recommend", &json)?;
    Ok(())
}
