//! `cargo xtask eval` (Rust side): prequential (test-then-learn) replay of
//! MovieLens-100k in time order for Attune's online model and for
//! recency-decayed popularity, then a holdout on the last 10 % of time.
//! Writes JSON to the path in ATTUNE_EVAL_OUT; the data directory is
//! ATTUNE_EVAL_DATA (ml-100k.inter and ml-100k.item from the recbole wheel).
//!
//! Ratings become feedback by a fixed rule: 4–5★ a click and a long dwell,
//! 3★ a click, 1–2★ a 5-second dwell; weights are attune-core's defaults.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use attune_core::{DecayedScore, FeedbackWeights, HalfLife, Interaction};
use attune_origin::model::{dot, initial, step, MfConfig};
use indicatif::{ProgressBar, ProgressStyle};

const K: usize = 10;
const WARMUP: f64 = 0.1;
const HOLDOUT: f64 = 0.1;
const WINDOW: usize = 2000;

struct Rating {
    user: usize,
    item: usize,
    stars: f64,
    t_ms: i64,
}

fn load(dir: &str) -> anyhow::Result<(Vec<Rating>, usize)> {
    let inter = std::fs::read_to_string(format!("{dir}/ml-100k.inter"))?;
    let (mut users, mut items) = (HashMap::new(), HashMap::new());
    let mut ratings = Vec::new();
    for line in inter.lines().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() < 4 {
            continue;
        }
        let n = users.len();
        let user = *users.entry(f[0].to_owned()).or_insert(n);
        let n = items.len();
        let item = *items.entry(f[1].to_owned()).or_insert(n);
        ratings.push(Rating {
            user,
            item,
            stars: f[2].parse()?,
            t_ms: (f[3].parse::<f64>()? * 1000.0) as i64,
        });
    }
    ratings.sort_by_key(|r| r.t_ms);
    Ok((ratings, items.len()))
}

/// The feedback weight of a rating, by the rule in the module doc.
fn weight(stars: f64, w: &FeedbackWeights) -> f64 {
    let click = w.weight(&Interaction::Click);
    if stars >= 4.0 {
        click + w.weight(&Interaction::Dwell { visible_ms: 60_000 })
    } else if stars >= 3.0 {
        click
    } else {
        w.weight(&Interaction::Dwell { visible_ms: 5_000 })
    }
}

trait Recommender {
    fn name(&self) -> &'static str;
    fn scores(&self, user: usize, out: &mut Vec<f64>, now_ms: i64);
    fn learn(&mut self, user: usize, item: usize, weight: f64, t_ms: i64);
}

/// Recency-decayed popularity.
struct Popularity {
    scores: Vec<DecayedScore>,
    half_life: HalfLife,
}

impl Recommender for Popularity {
    fn name(&self) -> &'static str {
        "popularity"
    }
    fn scores(&self, _user: usize, out: &mut Vec<f64>, now: i64) {
        out.clear();
        out.extend(self.scores.iter().map(|s| s.value_at(now, self.half_life)));
    }
    fn learn(&mut self, _user: usize, item: usize, weight: f64, t: i64) {
        self.scores[item].add(weight, t, self.half_life);
    }
}

/// Attune: online MF blended with decayed popularity.
struct Attune {
    cfg: MfConfig,
    users: HashMap<usize, Vec<f32>>,
    items: Vec<Vec<f32>>,
    popularity: Popularity,
    history: Vec<usize>,
    rng: u64,
    blend: f64,
}

impl Attune {
    fn random(&mut self) -> f64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl Recommender for Attune {
    fn name(&self) -> &'static str {
        "attune"
    }
    fn scores(&self, user: usize, out: &mut Vec<f64>, now: i64) {
        self.popularity.scores(user, out, now);
        let max = out.iter().copied().fold(0.0, f64::max).max(1e-12);
        let fresh;
        let u = match self.users.get(&user) {
            Some(u) => u,
            None => {
                fresh = initial(&user.to_string(), self.cfg.dim);
                &fresh
            }
        };
        for (s, q) in out.iter_mut().zip(&self.items) {
            *s = f64::from(dot(u, q)) + self.blend * *s / max;
        }
    }
    fn learn(&mut self, user: usize, item: usize, weight: f64, t: i64) {
        let dim = self.cfg.dim;
        let mut u = self
            .users
            .remove(&user)
            .unwrap_or_else(|| initial(&user.to_string(), dim));
        step(&mut u, &mut self.items[item], 1.0, weight as f32, &self.cfg);
        for _ in 0..self.cfg.negatives {
            if self.history.is_empty() {
                break;
            }
            let pick = (self.random() * self.history.len() as f64) as usize;
            let j = self.history[pick];
            if j != item {
                let w = self.cfg.negative_weight;
                step(&mut u, &mut self.items[j], 0.0, w, &self.cfg);
            }
        }
        self.users.insert(user, u);
        self.history.push(item);
        self.popularity.learn(user, item, weight, t);
    }
}

fn top_k(scores: &[f64], seen: &HashSet<usize>) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).filter(|i| !seen.contains(i)).collect();
    let k = K.min(idx.len());
    if k == 0 {
        return idx;
    }
    idx.select_nth_unstable_by(k - 1, |a, b| scores[*b].total_cmp(&scores[*a]));
    idx.truncate(k);
    idx.sort_by(|a, b| scores[*b].total_cmp(&scores[*a]));
    idx
}

struct Outcome {
    hr: f64,
    ndcg: f64,
    update_us: f64,
    series: Vec<f64>,
    holdout_hr: f64,
}

fn evaluate(
    mut r: Box<dyn Recommender>,
    ratings: &[Rating],
    feedback: &FeedbackWeights,
) -> Outcome {
    let n = ratings.len();
    let warm = (n as f64 * WARMUP) as usize;
    let hold = (n as f64 * (1.0 - HOLDOUT)) as usize;
    let mut seen: HashMap<usize, HashSet<usize>> = HashMap::new();
    let (mut hits, mut ndcg, mut tested) = (0.0, 0.0, 0usize);
    let (mut window_hits, mut series) = (0.0, Vec::new());
    let mut update_s = 0.0;
    let mut scores = Vec::new();
    let bar = ProgressBar::new(n as u64).with_style(
        ProgressStyle::with_template("  {msg:<12} {bar:40} {pos}/{len} {eta}").expect("template"),
    );
    bar.set_message(r.name());
    let empty = HashSet::new();
    // Prequential over the first 90 %: test, then learn.
    for (idx, x) in ratings[..hold].iter().enumerate() {
        if idx >= warm {
            r.scores(x.user, &mut scores, x.t_ms);
            let top = top_k(&scores, seen.get(&x.user).unwrap_or(&empty));
            tested += 1;
            if let Some(rank) = top.iter().position(|i| *i == x.item) {
                hits += 1.0;
                window_hits += 1.0;
                ndcg += 1.0 / (rank as f64 + 2.0).log2();
            }
            if tested % WINDOW == 0 {
                series.push(window_hits / WINDOW as f64);
                window_hits = 0.0;
            }
        }
        let t0 = Instant::now();
        r.learn(x.user, x.item, weight(x.stars, feedback), x.t_ms);
        update_s += t0.elapsed().as_secs_f64();
        seen.entry(x.user).or_default().insert(x.item);
        bar.inc(1);
    }
    // Holdout: the last 10 % of time, no learning.
    let mut holdout_hits = 0.0;
    for x in &ratings[hold..] {
        r.scores(x.user, &mut scores, x.t_ms);
        if top_k(&scores, seen.get(&x.user).unwrap_or(&empty)).contains(&x.item) {
            holdout_hits += 1.0;
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    Outcome {
        hr: hits / tested as f64,
        ndcg: ndcg / tested as f64,
        update_us: update_s * 1e6 / hold as f64,
        series,
        holdout_hr: holdout_hits / (n - hold) as f64,
    }
}

fn main() -> anyhow::Result<()> {
    let dir =
        std::env::var("ATTUNE_EVAL_DATA").map_err(|_| anyhow::anyhow!("run `cargo xtask eval`"))?;
    let out =
        std::env::var("ATTUNE_EVAL_OUT").map_err(|_| anyhow::anyhow!("run `cargo xtask eval`"))?;
    let (ratings, n_items) = load(&dir)?;
    let feedback = FeedbackWeights::default();
    // Popularity interest in MovieLens fades over weeks, not hours.
    let half_life = HalfLife::from_hours(24.0 * 30.0).expect("positive");
    let popularity = || Popularity {
        scores: vec![DecayedScore::default(); n_items],
        half_life,
    };
    let cfg = MfConfig::default();
    let systems: Vec<Box<dyn Recommender>> = vec![
        Box::new(popularity()),
        Box::new(Attune {
            cfg,
            users: HashMap::new(),
            items: (0..n_items)
                .map(|i| initial(&format!("item-{i}"), cfg.dim))
                .collect(),
            popularity: popularity(),
            history: Vec::new(),
            rng: 0x9e37_79b9_7f4a_7c15,
            blend: 1.0,
        }),
    ];
    let mut results = serde_json::Map::new();
    for s in systems {
        let name = s.name();
        let o = evaluate(s, &ratings, &feedback);
        println!(
            "  {name:<12} HR@10 {:.4}  NDCG@10 {:.4}  holdout HR@10 {:.4}  update {:.2} us/event",
            o.hr, o.ndcg, o.holdout_hr, o.update_us
        );
        results.insert(
            name.to_owned(),
            serde_json::json!({"hr10": o.hr, "ndcg10": o.ndcg, "holdout_hr10": o.holdout_hr, "update_us": o.update_us, "hr10_series": o.series}),
        );
    }
    std::fs::write(out, serde_json::to_string_pretty(&results)?)?;
    Ok(())
}
