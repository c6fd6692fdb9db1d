//! Retraining's math, no I/O: fit a site's factors from its logged events
//! with a [`Recipe`], score a model on a time-ordered holdout the way live
//! validation does (test, then learn), choose the hyper-parameters on a
//! validation split, and compare a challenger with the champion.
//!
//! The steps are `model::online`'s, so a fitted version goes on learning
//! online with the same code once it serves.

use std::collections::HashMap;

use serde::Serialize;

use super::covisit::{self, CovisitConfig};
use super::online::{expose, learn_factors, NegativePool};
use super::validation::{rank_of, K};
use super::versions::{Comparison, Recipe};
use super::{initial, MfConfig};

/// One event the model learns from, in the site's time order.
#[derive(Debug, Clone, PartialEq)]
pub struct Lesson {
    /// The reader.
    pub user: String,
    /// The item.
    pub item: String,
    /// Weight of the step toward 1 (age-weighted); 0 for an exposure.
    pub weight: f32,
    /// Weight of the step toward 0 of an exposure (0 for an engagement).
    pub exposure: f32,
}

impl Lesson {
    fn engagement(&self) -> bool {
        self.weight > 0.0
    }
}

/// One site's factors, with what learning online needs besides.
#[derive(Debug, Clone)]
pub struct SiteModel {
    site: String,
    cfg: MfConfig,
    /// User factors.
    pub users: HashMap<String, Vec<f32>>,
    /// Item factors.
    pub items: HashMap<String, Vec<f32>>,
    windows: HashMap<String, Vec<String>>,
    pool: NegativePool,
    /// Lessons learned (exposures included), per user.
    pub steps: HashMap<String, u64>,
}

impl SiteModel {
    /// Untrained, stepping with `cfg`.
    pub fn new(site: &str, cfg: MfConfig) -> Self {
        SiteModel {
            site: site.to_owned(),
            cfg,
            users: HashMap::new(),
            items: HashMap::new(),
            windows: HashMap::new(),
            pool: NegativePool::for_site(site),
            steps: HashMap::new(),
        }
    }

    /// Fitted on `lessons` by `recipe`: its epochs in time order.
    pub fn fit(site: &str, lessons: &[Lesson], recipe: &Recipe) -> Self {
        let mut model = SiteModel::new(site, recipe.config());
        for _ in 0..recipe.epochs {
            for lesson in lessons {
                model.learn(lesson);
            }
        }
        model
    }

    /// One online step, as the consumers take it.
    pub fn learn(&mut self, l: &Lesson) {
        let (site, dim) = (&self.site, self.cfg.dim);
        let user = self
            .users
            .entry(l.user.clone())
            .or_insert_with(|| initial(&format!("{site}/{}", l.user), dim));
        if !self.items.contains_key(&l.item) {
            self.items
                .insert(l.item.clone(), initial(&format!("{site}/{}", l.item), dim));
        }
        *self.steps.entry(l.user.clone()).or_default() += 1;
        if !l.engagement() {
            expose(user, &mut self.items, &l.item, l.exposure, &self.cfg);
            return;
        }
        let negatives = self.pool.draw(self.cfg.negatives, &l.item);
        for j in &negatives {
            if !self.items.contains_key(j) {
                self.items
                    .insert(j.clone(), initial(&format!("{site}/{j}"), dim));
            }
        }
        learn_factors(
            user,
            &mut self.items,
            &l.item,
            l.weight,
            &negatives,
            &self.cfg,
        );
        let window = self.windows.entry(l.user.clone()).or_default();
        covisit::push(window, &l.item, CovisitConfig::default().window);
        self.pool.record(&l.item);
    }

    /// Where the model ranks an engagement's item before learning it, when
    /// live validation would check it (an item new to the reader's window);
    /// the same rule and ranking as [`super::validation::Validator`].
    pub fn check(&self, l: &Lesson) -> Option<usize> {
        if !l.engagement() {
            return None;
        }
        let window = self.windows.get(&l.user).map_or(&[][..], Vec::as_slice);
        if window.contains(&l.item) {
            return None;
        }
        let dim = self.cfg.dim;
        let user = self
            .users
            .get(&l.user)
            .cloned()
            .unwrap_or_else(|| initial(&format!("{}/{}", self.site, l.user), dim));
        if self.items.contains_key(&l.item) {
            return rank_of(&user, &l.item, &self.items, window);
        }
        // A new item is ranked at its start point, as live validation does.
        let mut items = self.items.clone();
        items.insert(
            l.item.clone(),
            initial(&format!("{}/{}", self.site, l.item), dim),
        );
        rank_of(&user, &l.item, &items, window)
    }

    /// Test-then-learn over `lessons`: whether each checked engagement was
    /// in the top 10, in order. The model ends having learned them all.
    pub fn prequential(&mut self, lessons: &[Lesson]) -> Vec<bool> {
        let mut hits = Vec::new();
        for l in lessons {
            if let Some(rank) = self.check(l) {
                hits.push(rank <= K);
            }
            self.learn(l);
        }
        hits
    }
}

/// A site's lessons cut in time order: fit, choose, then compare.
#[derive(Debug, Clone, Copy)]
pub struct Split<'a> {
    /// What every candidate is fitted on.
    pub train: &'a [Lesson],
    /// What the hyper-parameters are chosen on.
    pub validation: &'a [Lesson],
    /// What champion and challenger are compared on.
    pub holdout: &'a [Lesson],
}

impl<'a> Split<'a> {
    /// The first 80 %, the next 10 %, the last 10 %.
    pub fn of(lessons: &'a [Lesson]) -> Self {
        let n = lessons.len();
        let (a, b) = (n * 8 / 10, n * 9 / 10);
        Split {
            train: &lessons[..a],
            validation: &lessons[a..b],
            holdout: &lessons[b..],
        }
    }
}

/// One candidate of the search, scored on the validation split.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct GridPoint {
    /// The candidate.
    pub recipe: Recipe,
    /// Engagements checked.
    pub checks: usize,
    /// Its HR@10 on them.
    pub hr10: f64,
}

/// Scores every recipe (fitted on each site's train split, tested then
/// learned on its validation split) and returns them with the best first
/// (ties: fewer epochs, then more regularization — the cheaper, smoother).
pub fn search(
    sites: &[(String, Vec<Lesson>)],
    grid: &[Recipe],
    mut progress: impl FnMut(),
) -> Vec<GridPoint> {
    let mut points: Vec<GridPoint> = grid
        .iter()
        .map(|recipe| {
            let mut hits = Vec::new();
            for (site, lessons) in sites {
                let split = Split::of(lessons);
                let mut model = SiteModel::fit(site, split.train, recipe);
                hits.extend(model.prequential(split.validation));
            }
            progress();
            GridPoint {
                recipe: *recipe,
                checks: hits.len(),
                hr10: rate(&hits),
            }
        })
        .collect();
    points.sort_by(|a, b| {
        b.hr10
            .total_cmp(&a.hr10)
            .then(a.recipe.epochs.cmp(&b.recipe.epochs))
            .then(b.recipe.regularization.total_cmp(&a.recipe.regularization))
    });
    points
}

/// Champion's and challenger's recipes each fitted on train + validation,
/// then tested-then-learned on the holdout: their paired comparison, and
/// the challenger's models having learned everything.
pub fn compare(
    sites: &[(String, Vec<Lesson>)],
    champion: (u32, &Recipe),
    challenger: &Recipe,
    margin: f64,
) -> (Comparison, Vec<SiteModel>) {
    let (mut champ_hits, mut chall_hits, mut models) = (Vec::new(), Vec::new(), Vec::new());
    for (site, lessons) in sites {
        let split = Split::of(lessons);
        let fitted = split.train.len() + split.validation.len();
        let mut champ = SiteModel::fit(site, &lessons[..fitted], champion.1);
        let mut chall = SiteModel::fit(site, &lessons[..fitted], challenger);
        champ_hits.extend(champ.prequential(split.holdout));
        chall_hits.extend(chall.prequential(split.holdout));
        models.push(chall);
    }
    (paired(champion.0, &champ_hits, &chall_hits, margin), models)
}

/// The paired comparison of two models' hits on the same checks: the
/// challenger is better when the 95 % interval of the mean difference lies
/// above `margin`.
pub fn paired(champion: u32, champ: &[bool], chall: &[bool], margin: f64) -> Comparison {
    assert_eq!(champ.len(), chall.len(), "the same checks");
    let n = champ.len();
    let diffs: Vec<f64> = champ
        .iter()
        .zip(chall)
        .map(|(&a, &b)| f64::from(u8::from(b)) - f64::from(u8::from(a)))
        .collect();
    let mean = diffs.iter().sum::<f64>() / n.max(1) as f64;
    let var = if n > 1 {
        diffs.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (n - 1) as f64
    } else {
        0.0
    };
    let half = 1.96 * (var / n.max(1) as f64).sqrt();
    Comparison {
        champion,
        checks: n as u64,
        champion_hr10: rate(champ),
        challenger_hr10: rate(chall),
        diff_low: mean - half,
        diff_high: mean + half,
        better: n > 1 && mean - half > margin,
    }
}

fn rate(hits: &[bool]) -> f64 {
    if hits.is_empty() {
        return 0.0;
    }
    hits.iter().filter(|&&h| h).count() as f64 / hits.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Readers of three planted kinds, each reading 30 of their kind's 40
    /// items, one each turn, in an order of their own: the last turns are
    /// items new to every window, predictable only from the kind.
    fn planted() -> Vec<Lesson> {
        let mut out = Vec::new();
        for turn in 0..30 {
            for r in 0..30 {
                let kind = r % 3;
                // A permutation of 0..40 per reader (7 is prime to 40).
                let i = (turn * 7 + r * 11) % 40;
                out.push(Lesson {
                    user: format!("r{r}"),
                    item: format!("k{kind}-{i}"),
                    weight: 1.0,
                    exposure: 0.0,
                });
            }
        }
        out
    }

    #[test]
    fn the_paired_interval_decides() {
        let champ = vec![false; 200];
        let chall: Vec<bool> = (0..200).map(|i| i % 2 == 0).collect();
        let c = paired(1, &champ, &chall, 0.0);
        assert!(c.better, "{c:?}");
        assert!((c.challenger_hr10 - 0.5).abs() < 1e-9);
        let c = paired(1, &chall, &champ, 0.0);
        assert!(!c.better, "{c:?}");
        // Equal models are not better.
        assert!(!paired(1, &chall, &chall, 0.0).better);
        // A margin the difference does not clear.
        assert!(!paired(1, &champ, &chall, 0.6).better);
    }

    /// More passes over a planted structure beat one; a step size too small
    /// to move the factors from their start loses to both.
    #[test]
    fn fitting_longer_on_structure_wins_and_a_stuck_fit_loses() {
        let lessons = planted();
        let sites = vec![("s".to_owned(), lessons)];
        let online = Recipe::online();
        let longer = Recipe {
            epochs: 8,
            ..online
        };
        let stuck = Recipe {
            learning_rate: 0.0001,
            ..online
        };
        let (better, _) = compare(&sites, (1, &online), &longer, 0.0);
        assert!(better.better, "{better:?}");
        let (worse, _) = compare(&sites, (1, &online), &stuck, 0.0);
        assert!(!worse.better, "{worse:?}");
        assert!(worse.challenger_hr10 < worse.champion_hr10, "{worse:?}");
        let points = search(&sites, &[online, longer, stuck], || {});
        assert_eq!(points[0].recipe, longer, "{points:?}");
        assert_eq!(points[2].recipe, stuck, "{points:?}");
    }

    #[test]
    fn a_fit_counts_every_lesson_of_every_epoch() {
        let lessons = planted();
        let m = SiteModel::fit(
            "s",
            &lessons,
            &Recipe {
                epochs: 2,
                ..Recipe::online()
            },
        );
        assert_eq!(m.steps["r0"], 60);
        let items: std::collections::HashSet<&str> =
            lessons.iter().map(|l| l.item.as_str()).collect();
        assert_eq!(m.items.len(), items.len());
    }
}
