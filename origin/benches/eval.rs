//! `cargo xtask eval` (Rust side): MovieLens-100k replayed in time order,
//! test-then-learn, for Attune's production ranking (`ranking::rank`, the
//! function `GET /v1/recommendations` serves) with its state built by the
//! consumers' own code, its ablations, and the Rust peers (item-kNN,
//! recency-decayed popularity). Writes JSON to ATTUNE_EVAL_OUT; the data
//! directory is ATTUNE_EVAL_DATA (ml-100k.inter and .item from the recbole
//! wheel). With ATTUNE_EVAL_TUNE=1 it tunes the hyper-parameters on the
//! validation part of the stream instead (see `docs/eval.md`);
//! ATTUNE_EVAL_SYSTEMS=attune,item-knn runs only the systems named.
//!
//! Protocol: 10 % warm-up (learn only); then each rating is first predicted
//! (HR@10 / NDCG@10 of its item among the items the user has not rated) and
//! then learned, up to 90 %; the last 10 % is a holdout predicted without
//! learning. Tuning only ever sees the stream before [`VALIDATION_END`].
//!
//! Ratings become events as a site would see them: 4–5★ a click and a
//! 60-second dwell, 3★ a click, 1–2★ a 5-second dwell, weighted by
//! attune-core's default feedback weights.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use attune_core::{DecayedScore, Event, FeedbackWeights, HalfLife, Interaction};
use attune_origin::config::SiteWeights;
use attune_origin::consume::apply::{by_user, CatalogFacts, Incoming};
use attune_origin::consume::popularity::credit_of;
use attune_origin::model::covisit::{CovisitConfig, Neighbours};
use attune_origin::model::online::{age_weighted, learn, NegativePool};
use attune_origin::model::{initial, MfConfig};
use attune_origin::ranking::{rank, Catalog, Learned, Popularity, RankWeights, Signals};
use attune_origin::record::{Device, EventRecord};
use attune_origin::store::embedded::StoredProfile;
use attune_origin::store::profile_event::ProfileEvent;
use attune_origin::store::Item;
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// The origin binary's allocator, so the costs measured are those of what serves.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const K: usize = 10;
const WARMUP: f64 = 0.1;
const HOLDOUT: f64 = 0.1;
/// Tuning sees only the prequential part before this point of the stream.
const VALIDATION_END: f64 = 0.5;
const WINDOW: usize = 2000;
const SITE: &str = "ml";
const BOOTSTRAP: usize = 1000;

struct Rating {
    user: usize,
    item: usize,
    stars: f64,
    t_ms: i64,
}

struct Data {
    ratings: Vec<Rating>,
    /// Catalog in item-index order (tags are the genres).
    items: Vec<Item>,
}

fn load(dir: &str) -> anyhow::Result<Data> {
    let inter = std::fs::read_to_string(format!("{dir}/ml-100k.inter"))?;
    let (mut users, mut index) = (HashMap::new(), HashMap::new());
    let mut ratings = Vec::new();
    let mut ids: Vec<String> = Vec::new();
    for line in inter.lines().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() < 4 {
            continue;
        }
        let n = users.len();
        let user = *users.entry(f[0].to_owned()).or_insert(n);
        let item = *index.entry(f[1].to_owned()).or_insert_with(|| {
            ids.push(f[1].to_owned());
            ids.len() - 1
        });
        ratings.push(Rating {
            user,
            item,
            stars: f[2].parse()?,
            t_ms: (f[3].parse::<f64>()? * 1000.0) as i64,
        });
    }
    ratings.sort_by_key(|r| r.t_ms);
    let mut genres: HashMap<String, Vec<String>> = HashMap::new();
    let meta = std::fs::read_to_string(format!("{dir}/ml-100k.item"))?;
    for line in meta.lines().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        if let (Some(id), Some(classes)) = (f.first(), f.get(3)) {
            genres.insert(
                id.to_string(),
                classes.split_whitespace().map(str::to_owned).collect(),
            );
        }
    }
    let items = ids
        .iter()
        .map(|id| Item {
            id: id.clone(),
            length_words: None,
            tags: genres.get(id).cloned().unwrap_or_default(),
            published_at_ms: None,
            metadata: serde_json::Value::Null,
        })
        .collect();
    Ok(Data { ratings, items })
}

/// The events a site would have seen for a rating.
fn interactions(stars: f64) -> &'static [Interaction] {
    if stars >= 4.0 {
        &[
            Interaction::Click,
            Interaction::Dwell { visible_ms: 60_000 },
        ]
    } else if stars >= 3.0 {
        &[Interaction::Click]
    } else {
        &[Interaction::Dwell { visible_ms: 5_000 }]
    }
}

trait Recommender {
    fn name(&self) -> String;
    /// The best K items (indices) the user has not rated.
    fn top(&mut self, user: usize, now_ms: i64, rated: &HashSet<usize>) -> Vec<usize>;
    /// Learns the rating; returns the seconds the model's update took
    /// (without building the events a rating becomes).
    fn learn(&mut self, r: &Rating) -> f64;
    /// What else its costs are, after `ratings` were learned.
    fn costs(&self, _ratings: usize) -> serde_json::Value {
        serde_json::Value::Null
    }
}

/// Hyper-parameters of the production ranking that the eval may vary.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Params {
    weights: RankWeights,
    covisit: CovisitConfig,
    popularity_half_life_h: f64,
    affinity_half_life_h: f64,
}

impl Default for Params {
    /// What serves: the library's defaults and the origin's default affinity
    /// half-life. Popularity's half-life is a site's setting
    /// (`ATTUNE_POPULARITY_HALF_LIFE_H`, 24 h by default for news); a film
    /// catalog, whose interest fades over weeks, sets 30 days (chosen on
    /// validation from 1, 7 and 30 days; the popularity peer uses the same).
    fn default() -> Self {
        Params {
            weights: RankWeights::default(),
            covisit: CovisitConfig::default(),
            popularity_half_life_h: 720.0,
            affinity_half_life_h: 24.0,
        }
    }
}

/// The production ranking over state built by the consumers' code: the
/// profile rules (`StoredProfile::apply`, the embedded twin of the Redis
/// script), the online learner (`model::online::learn`, what the Redis
/// trainer runs), ingest's popularity credit.
struct Attune {
    label: String,
    p: Params,
    mf: MfConfig,
    feedback: FeedbackWeights,
    items: Vec<Item>,
    catalog: Catalog,
    index: HashMap<String, usize>,
    popularity: HashMap<String, DecayedScore>,
    profiles: HashMap<usize, (StoredProfile, Option<Vec<f32>>)>,
    vectors: HashMap<String, Vec<f32>>,
    neighbours: Neighbours,
    pool: NegativePool,
    seq: u128,
    /// Time in the profile rules (not the model: eALS keeps no profile).
    profile_s: f64,
}

impl Attune {
    fn new(label: &str, p: Params, items: &[Item]) -> Self {
        // The model's window is the profile's (one window per reader).
        assert_eq!(p.covisit.window, CovisitConfig::default().window);
        let mf = MfConfig::default();
        Attune {
            label: label.to_owned(),
            p,
            mf,
            feedback: FeedbackWeights::default(),
            index: items
                .iter()
                .enumerate()
                .map(|(n, i)| (i.id.clone(), n))
                .collect(),
            vectors: items
                .iter()
                .map(|i| (i.id.clone(), initial(&format!("{SITE}/{}", i.id), mf.dim)))
                .collect(),
            items: items.to_vec(),
            catalog: Catalog::new(items.to_vec()),
            popularity: HashMap::new(),
            profiles: HashMap::new(),
            neighbours: Neighbours::default(),
            pool: NegativePool::new(0x5eed),
            seq: 0,
            profile_s: 0.0,
        }
    }

    fn half_life(h: f64) -> HalfLife {
        HalfLife::from_hours(h).expect("positive")
    }

    /// The rating's events as the consumers receive them.
    fn script_events(&mut self, r: &Rating) -> Vec<ProfileEvent> {
        let user = format!("u{}", r.user);
        let item = self.items[r.item].id.clone();
        let incoming: Vec<Incoming> = interactions(r.stars)
            .iter()
            .map(|interaction| {
                self.seq += 1;
                Incoming {
                    topic: "eval".into(),
                    partition: 0,
                    offset: self.seq as i64,
                    record: EventRecord {
                        site_key: SITE.into(),
                        user_id: user.clone(),
                        anonymous_id: user.clone(),
                        event: Event {
                            id: uuid::Uuid::from_u128(self.seq),
                            ts_ms: r.t_ms,
                            interaction: *interaction,
                            item: Some(item.clone()),
                            context: None,
                            slot: None,
                        },
                        received_at_ms: r.t_ms,
                        clock_skew_ms: 0,
                        corrected_ts_ms: r.t_ms,
                        device: Device::default(),
                        attributes: Default::default(),
                        segments: Vec::new(),
                        attributes_unknown: false,
                    },
                }
            })
            .collect();
        let tags = self.items[r.item].tags.clone();
        by_user(
            &incoming,
            &SiteWeights::uniform(self.feedback.clone()),
            &mut |_, _| CatalogFacts {
                tags: tags.clone(),
                length_words: None,
            },
        )
        .into_values()
        .flatten()
        .collect()
    }
}

impl Recommender for Attune {
    fn name(&self) -> String {
        self.label.clone()
    }

    fn top(&mut self, user: usize, now_ms: i64, _rated: &HashSet<usize>) -> Vec<usize> {
        let empty = (StoredProfile::default(), None);
        let (profile, vector) = self.profiles.get(&user).unwrap_or(&empty);
        let model = profile.user_model(
            vector.clone(),
            now_ms,
            Self::half_life(self.p.affinity_half_life_h),
        );
        // What a request's site snapshot would hold at this moment.
        let learned = Learned::new(&self.catalog, &self.vectors, self.neighbours.norms.clone());
        let popularity = Popularity::new(
            &self.catalog,
            &self.popularity,
            Self::half_life(self.p.popularity_half_life_h),
            now_ms,
        );
        let signals = Signals {
            catalog: &self.catalog,
            learned: &learned,
            popularity: &popularity,
            // What the store answers for the reader's window.
            rows: &self.neighbours.rows_of(&model.recent),
            covisit: &self.p.covisit,
            now_ms,
        };
        // The consumed filter inside `rank` leaves out what the user rated.
        rank(&signals, &model, &self.p.weights, K)
            .iter()
            .map(|r| self.index[&r.item])
            .collect()
    }

    fn learn(&mut self, r: &Rating) -> f64 {
        let events = self.script_events(r);
        let t0 = Instant::now();
        let (pop_hl, aff_hl) = (
            Self::half_life(self.p.popularity_half_life_h),
            Self::half_life(self.p.affinity_half_life_h),
        );
        let dim = self.mf.dim;
        let mut profile_s = 0.0;
        let (profile, vector) = self.profiles.entry(r.user).or_default();
        for e in &events {
            let Some(item) = e.item.as_deref() else {
                continue;
            };
            // The consumers' rule for what an event credits (site-wide here).
            if let Some((_, c)) = credit_of(SITE, e) {
                match self.popularity.get_mut(item) {
                    Some(p) => p.add(c.weight, c.ts_ms, pop_hl),
                    None => {
                        let p = DecayedScore::point(c.weight, c.ts_ms);
                        self.popularity.insert(item.to_owned(), p);
                    }
                }
            }
            if e.weight > 0.0 {
                let u = vector.get_or_insert_with(|| initial(&format!("{SITE}/u{}", r.user), dim));
                let negatives = self.pool.draw(self.mf.negatives, item);
                // The reader's window, as the trainer reads it; `learn` moves
                // the item to its front, which the profile rules do next too.
                let learned = learn(
                    u,
                    &mut profile.recent,
                    &mut self.vectors,
                    item,
                    age_weighted(e.weight, e.ts_ms, e.ts_ms) as f32,
                    &negatives,
                    &self.mf,
                    &self.p.covisit,
                );
                if let Some(d) = &learned.covisit {
                    self.neighbours.apply(d, &self.p.covisit);
                }
                self.pool.record(item);
            }
            let t1 = Instant::now();
            profile.apply(e, aff_hl);
            profile_s += t1.elapsed().as_secs_f64();
        }
        self.profile_s += profile_s;
        t0.elapsed().as_secs_f64() - profile_s
    }

    /// Profile time, and the state's payload per item and per user (ids and
    /// values as stored, without the store's own per-key overhead).
    fn costs(&self, ratings: usize) -> serde_json::Value {
        const ID: usize = 8; // a value (f64) or a score beside an id
        let items = self.items.len().max(1) as f64;
        let rows = self.neighbours.rows();
        let cells: usize = rows.values().map(HashMap::len).sum();
        let longest = rows.values().map(HashMap::len).max().unwrap_or(0);
        let row_bytes: usize = rows
            .values()
            .flat_map(|row| row.keys().map(|k| k.len() + ID))
            .sum();
        let users = self.profiles.len().max(1) as f64;
        let user_bytes: usize = self
            .profiles
            .values()
            .map(|(p, v)| {
                let m = p.user_model(None, 0, Self::half_life(24.0));
                v.as_ref().map_or(0, |v| 4 * v.len())
                    + m.recent.iter().map(String::len).sum::<usize>()
                    + m.consumed.iter().map(String::len).sum::<usize>()
                    + m.affinities.keys().map(|k| k.len() + 2 * ID).sum::<usize>()
            })
            .sum();
        serde_json::json!({
            "profile_us": self.profile_s * 1e6 / ratings.max(1) as f64,
            "memory": {
                "item_factor_bytes": 4 * self.mf.dim,
                "covisit_cells_per_item": cells as f64 / items,
                "covisit_cells_longest_row": longest,
                "covisit_row_cap": [self.p.covisit.row_cap, 2 * self.p.covisit.row_cap],
                "bytes_per_item": (4 * self.mf.dim) as f64 + row_bytes as f64 / items + ID as f64,
                "bytes_per_user": user_bytes as f64 / users,
                "note": "payload (ids, 4-byte factors, 8-byte values) of the state after the stream; the store adds its own per-key overhead",
            },
        })
    }
}

/// Item-based kNN (the peer): co-occurrence counts over each user's whole
/// history, updated online; a candidate scores the sum of its similarity to
/// the user's last 20 items — cosine, or raw counts.
struct ItemKnn {
    cosine: bool,
    n_items: usize,
    co: Vec<f32>,
    count: Vec<f32>,
    history: HashMap<usize, Vec<usize>>,
}

impl ItemKnn {
    fn new(n_items: usize, cosine: bool) -> Self {
        ItemKnn {
            cosine,
            n_items,
            co: vec![0.0; n_items * n_items],
            count: vec![0.0; n_items],
            history: HashMap::new(),
        }
    }
}

impl Recommender for ItemKnn {
    fn name(&self) -> String {
        if self.cosine {
            "item-knn"
        } else {
            "item-knn-raw"
        }
        .into()
    }

    fn top(&mut self, user: usize, _now: i64, rated: &HashSet<usize>) -> Vec<usize> {
        let mut scores = vec![0.0f64; self.n_items];
        if let Some(h) = self.history.get(&user) {
            for &j in h.iter().rev().take(20) {
                let row = &self.co[j * self.n_items..(j + 1) * self.n_items];
                for (x, c) in row.iter().enumerate() {
                    if *c > 0.0 {
                        scores[x] += if self.cosine {
                            f64::from(*c) / f64::from(self.count[j] * self.count[x]).sqrt()
                        } else {
                            f64::from(*c)
                        };
                    }
                }
            }
        }
        top_k(&scores, rated)
    }

    fn learn(&mut self, r: &Rating) -> f64 {
        let t0 = Instant::now();
        let h = self.history.entry(r.user).or_default();
        for &j in h.iter() {
            self.co[r.item * self.n_items + j] += 1.0;
            self.co[j * self.n_items + r.item] += 1.0;
        }
        self.count[r.item] += 1.0;
        h.push(r.item);
        t0.elapsed().as_secs_f64()
    }
}

/// Recency-decayed popularity.
struct PopularityPeer {
    scores: Vec<DecayedScore>,
    half_life: HalfLife,
    feedback: FeedbackWeights,
}

impl Recommender for PopularityPeer {
    fn name(&self) -> String {
        "popularity".into()
    }
    fn top(&mut self, _user: usize, now: i64, rated: &HashSet<usize>) -> Vec<usize> {
        let scores: Vec<f64> = self
            .scores
            .iter()
            .map(|s| s.value_at(now, self.half_life))
            .collect();
        top_k(&scores, rated)
    }
    fn learn(&mut self, r: &Rating) -> f64 {
        let t0 = Instant::now();
        let w: f64 = interactions(r.stars)
            .iter()
            .map(|i| self.feedback.weight(i))
            .sum();
        self.scores[r.item].add(w, r.t_ms, self.half_life);
        t0.elapsed().as_secs_f64()
    }
}

fn top_k(scores: &[f64], rated: &HashSet<usize>) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).filter(|i| !rated.contains(i)).collect();
    let k = K.min(idx.len());
    if k == 0 {
        return idx;
    }
    let best_first = |a: &usize, b: &usize| scores[*b].total_cmp(&scores[*a]).then(a.cmp(b));
    idx.select_nth_unstable_by(k - 1, best_first);
    idx.truncate(k);
    idx.sort_by(best_first);
    idx
}

/// Hits and NDCG per user, for means and bootstrap intervals.
#[derive(Default)]
struct Tally {
    per_user: HashMap<usize, (f64, f64, f64)>,
}

impl Tally {
    fn add(&mut self, user: usize, rank: Option<usize>) {
        let e = self.per_user.entry(user).or_default();
        e.2 += 1.0;
        if let Some(r) = rank {
            e.0 += 1.0;
            e.1 += 1.0 / (r as f64 + 2.0).log2();
        }
    }

    fn means(&self) -> (f64, f64) {
        let (h, g, n) = self
            .per_user
            .values()
            .fold((0.0, 0.0, 0.0), |a, v| (a.0 + v.0, a.1 + v.1, a.2 + v.2));
        (h / n.max(1.0), g / n.max(1.0))
    }

    /// 95 % percentile intervals of HR and NDCG, resampling users.
    fn intervals(&self) -> ([f64; 2], [f64; 2]) {
        let users: Vec<&(f64, f64, f64)> = self.per_user.values().collect();
        let mut rng = SmallRng::seed_from_u64(42);
        let (mut hr, mut ndcg) = (Vec::new(), Vec::new());
        for _ in 0..BOOTSTRAP {
            let (mut h, mut g, mut n) = (0.0, 0.0, 0.0);
            for _ in 0..users.len() {
                let u = users[rng.random_range(0..users.len())];
                (h, g, n) = (h + u.0, g + u.1, n + u.2);
            }
            hr.push(h / n);
            ndcg.push(g / n);
        }
        let ci = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            [v[BOOTSTRAP * 25 / 1000], v[BOOTSTRAP * 975 / 1000]]
        };
        (ci(hr), ci(ndcg))
    }
}

struct Outcome {
    prequential: Tally,
    holdout: Tally,
    update_us: f64,
    costs: serde_json::Value,
    series: Vec<f64>,
}

/// Prequential over `[warm-up, end)` of the stream, then (when `end` is the
/// holdout's start) the holdout without learning.
fn evaluate(r: &mut dyn Recommender, ratings: &[Rating], end: usize, bar: &ProgressBar) -> Outcome {
    let n = ratings.len();
    let warm = (n as f64 * WARMUP) as usize;
    let hold = (n as f64 * (1.0 - HOLDOUT)) as usize;
    let mut rated: HashMap<usize, HashSet<usize>> = HashMap::new();
    let empty = HashSet::new();
    let (mut pre, mut holdout) = (Tally::default(), Tally::default());
    let (mut tested, mut window_hits, mut series, mut update_s) = (0usize, 0.0, Vec::new(), 0.0);
    bar.set_message(r.name());
    for (idx, x) in ratings[..end].iter().enumerate() {
        if idx >= warm {
            let top = r.top(x.user, x.t_ms, rated.get(&x.user).unwrap_or(&empty));
            let rank = top.iter().position(|i| *i == x.item);
            pre.add(x.user, rank);
            tested += 1;
            window_hits += f64::from(u8::from(rank.is_some()));
            if tested % WINDOW == 0 {
                series.push(window_hits / WINDOW as f64);
                window_hits = 0.0;
            }
        }
        update_s += r.learn(x);
        rated.entry(x.user).or_default().insert(x.item);
        bar.inc(1);
    }
    if end == hold {
        for x in &ratings[hold..] {
            let top = r.top(x.user, x.t_ms, rated.get(&x.user).unwrap_or(&empty));
            holdout.add(x.user, top.iter().position(|i| *i == x.item));
            bar.inc(1);
        }
    }
    Outcome {
        prequential: pre,
        holdout,
        update_us: update_s * 1e6 / end as f64,
        costs: r.costs(end),
        series,
    }
}

fn bar(len: u64) -> ProgressBar {
    ProgressBar::new(len).with_style(
        ProgressStyle::with_template("  {msg:<22} {bar:40} {pos}/{len} {eta}").expect("template"),
    )
}

/// The validation score that tuning maximizes: prequential NDCG@10 before
/// [`VALIDATION_END`].
fn validate(p: Params, data: &Data, bar: &ProgressBar) -> f64 {
    let end = (data.ratings.len() as f64 * VALIDATION_END) as usize;
    let mut a = Attune::new("tuning", p, &data.items);
    evaluate(&mut a, &data.ratings, end, bar)
        .prequential
        .means()
        .1
}

/// Coordinate search over the production ranking's hyper-parameters on the
/// validation part, from the served defaults, one pass (each run replays
/// half the stream; the knobs are the ones the ablations showed to matter).
fn tune(data: &Data) -> anyhow::Result<()> {
    type Knob = (&'static str, &'static [f64], fn(&mut Params, f64));
    let knobs: &[Knob] = &[
        ("weights.affinity", &[0.0, 0.1, 0.25, 0.5], |p, v| {
            p.weights.affinity = v
        }),
        ("weights.covisit", &[2.0, 4.0], |p, v| p.weights.covisit = v),
        ("weights.model", &[0.0, 0.5, 2.0], |p, v| {
            p.weights.model = v
        }),
        ("weights.item", &[0.1, 0.25, 1.0], |p, v| p.weights.item = v),
        ("covisit.recency_decay", &[0.8, 1.0], |p, v| {
            p.covisit.recency_decay = v
        }),
        ("covisit.pair_decay", &[0.8, 1.0], |p, v| {
            p.covisit.pair_decay = v
        }),
        ("covisit.alpha", &[0.3, 0.7], |p, v| p.covisit.alpha = v),
        ("popularity_half_life_h", &[168.0, 720.0], |p, v| {
            p.popularity_half_life_h = v
        }),
        (
            "covisit.row_cap",
            &[50.0, 100.0, 400.0, 100_000.0],
            |p, v| p.covisit.row_cap = v as usize,
        ),
    ];
    // `cargo xtask eval --tune --only a,b`: just those knobs.
    let only = std::env::var("ATTUNE_EVAL_TUNE_ONLY").unwrap_or_default();
    let knobs: Vec<&Knob> = knobs
        .iter()
        .filter(|(name, ..)| only.is_empty() || only.split(',').any(|o| o == *name))
        .collect();
    anyhow::ensure!(!knobs.is_empty(), "no knob is named {only}");
    let end = (data.ratings.len() as f64 * VALIDATION_END) as usize;
    let mut best = Params::default();
    let progress = bar(end as u64);
    let mut best_score = validate(best, data, &progress);
    progress.suspend(|| eprintln!("defaults: validation NDCG@10 {best_score:.4}"));
    {
        for (name, values, set) in knobs {
            for v in *values {
                let mut p = best;
                set(&mut p, *v);
                if p == best {
                    continue;
                }
                progress.reset();
                let s = validate(p, data, &progress);
                let kept = s > best_score;
                progress.suspend(|| {
                    eprintln!("{name} = {v} → {s:.4}{}", if kept { " (kept)" } else { "" })
                });
                if kept {
                    (best, best_score) = (p, s);
                }
            }
        }
    }
    progress.finish_and_clear();
    println!("best on validation (NDCG@10 {best_score:.4}): {best:#?}");
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let env = |k: &str| std::env::var(k).map_err(|_| anyhow::anyhow!("run `cargo xtask eval`"));
    let data = load(&env("ATTUNE_EVAL_DATA")?)?;
    if std::env::var("ATTUNE_EVAL_TUNE").is_ok_and(|v| v == "1") {
        return tune(&data);
    }
    let out = env("ATTUNE_EVAL_OUT")?;
    let n_items = data.items.len();
    let served = Params::default();
    let with = |f: fn(&mut RankWeights)| {
        let mut p = served;
        f(&mut p.weights);
        p
    };
    let mut systems: Vec<Box<dyn Recommender>> = vec![
        Box::new(Attune::new("attune", served, &data.items)),
        Box::new(Attune::new(
            "attune −covisit",
            with(|w| w.covisit = 0.0),
            &data.items,
        )),
        Box::new(Attune::new(
            "attune −model",
            with(|w| w.model = 0.0),
            &data.items,
        )),
        Box::new(Attune::new(
            "attune −affinity",
            with(|w| w.affinity = 0.0),
            &data.items,
        )),
        Box::new(Attune::new(
            "attune −popularity",
            with(|w| (w.item, w.category, w.freshness) = (0.0, 0.0, 0.0)),
            &data.items,
        )),
        Box::new(Attune::new(
            "model only (mf+pop)",
            with(|w| {
                *w = RankWeights {
                    model: 1.0,
                    item: 1.0,
                    covisit: 0.0,
                    affinity: 0.0,
                    category: 0.0,
                    freshness: 0.0,
                }
            }),
            &data.items,
        )),
        Box::new(ItemKnn::new(n_items, true)),
        Box::new(ItemKnn::new(n_items, false)),
        Box::new(PopularityPeer {
            scores: vec![DecayedScore::default(); n_items],
            half_life: HalfLife::from_hours(24.0 * 30.0).expect("positive"),
            feedback: FeedbackWeights::default(),
        }),
    ];
    // `ATTUNE_EVAL_SYSTEMS=attune,item-knn`: only those (a quick look at one change).
    if let Ok(only) = std::env::var("ATTUNE_EVAL_SYSTEMS") {
        systems.retain(|s| only.split(',').any(|o| o == s.name()));
    }
    let n = data.ratings.len();
    let hold = (n as f64 * (1.0 - HOLDOUT)) as usize;
    let mut results = serde_json::Map::new();
    let progress = bar(n as u64);
    for s in &mut systems {
        progress.reset();
        let o = evaluate(s.as_mut(), &data.ratings, hold, &progress);
        let (hr, ndcg) = o.prequential.means();
        let (hr_ci, ndcg_ci) = o.prequential.intervals();
        let (holdout_hr, holdout_ndcg) = o.holdout.means();
        let name = s.name();
        progress.suspend(|| println!(
            "  {name:<22} HR@10 {hr:.4} [{:.4}, {:.4}]  NDCG@10 {ndcg:.4} [{:.4}, {:.4}]  holdout HR@10 {holdout_hr:.4}  update {:.2} us/rating",
            hr_ci[0], hr_ci[1], ndcg_ci[0], ndcg_ci[1], o.update_us
        ));
        results.insert(
            name,
            serde_json::json!({
                "hr10": hr, "hr10_ci": hr_ci, "ndcg10": ndcg, "ndcg10_ci": ndcg_ci,
                "holdout_hr10": holdout_hr, "holdout_ndcg10": holdout_ndcg,
                "update_us": o.update_us, "costs": o.costs, "hr10_series": o.series,
            }),
        );
    }
    progress.finish_and_clear();
    if let Some(attune) = results.get_mut("attune") {
        let alone = update_alone_us(served, &data, hold);
        println!("  attune                 update alone {alone:.2} us/rating");
        attune["update_alone_us"] = alone.into();
    }
    std::fs::write(out, serde_json::to_string_pretty(&results)?)?;
    Ok(())
}

/// The model's update alone: the stream learned with no predictions between
/// (a warm cache), timed over the prequential part — what the Python side
/// measures for eALS too. In the harness, each ranking between two updates
/// sweeps the whole state and leaves the update a cold cache.
fn update_alone_us(p: Params, data: &Data, hold: usize) -> f64 {
    let warm = (data.ratings.len() as f64 * WARMUP) as usize;
    let mut a = Attune::new("attune", p, &data.items);
    for r in &data.ratings[..warm] {
        a.learn(r);
    }
    let seconds: f64 = data.ratings[warm..hold].iter().map(|r| a.learn(r)).sum();
    seconds * 1e6 / (hold - warm) as f64
}
