//! An experiment's results from its exposures and its units' counters now:
//! per arm the units and each metric, every other arm against the first
//! (the control) with both intervals, the SRM flag and a plain-words
//! decision read from the primary metric (rail CTR).
//!
//! Metrics are per unit over the time since its exposure: clicks ÷
//! impressions, reads and visible dwell per session (ratio metrics, delta
//! method; the sessions are the exposure's own and those begun after it),
//! and clicks, reads, visible dwell, page views and return visits
//! (sessions begun after the exposure's) per unit (mean metrics). With CUPED each mean
//! metric is adjusted by the unit's same metric before its exposure
//! (θ pooled over the arms), which keeps the estimate and shrinks the
//! variance by the share the pre-period explains.

use serde::Serialize;
use utoipa::ToSchema;

use super::definition::{Experiment, Mode};
use super::stats::{self, Decision, Estimate, Moments, RatioMoments, Settings};
use super::{Exposure, UnitCounters};

/// The metric the decision is read from.
pub const PRIMARY: &str = "rail_ctr";
/// An interleaving experiment's metric: clicks per unit on the items each
/// ranking placed in the merged rails, compared within each unit.
pub const INTERLEAVED: &str = "interleaved_clicks_per_unit";

/// One arm.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ArmResult {
    pub name: String,
    pub ranker: String,
    pub weight: f64,
    /// Units exposed in this phase.
    pub units: u64,
}

/// An interval, low to high.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct IntervalResult {
    pub low: f64,
    pub high: f64,
}

impl From<stats::Interval> for IntervalResult {
    fn from(i: stats::Interval) -> Self {
        IntervalResult {
            low: i.low,
            high: i.high,
        }
    }
}

/// A difference or a lift with its intervals.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EffectResult {
    pub value: f64,
    /// 95 % fixed-horizon: valid when read once, at the planned size.
    pub fixed: IntervalResult,
    pub p_value: f64,
    /// 95 % always-valid: valid however often it is read.
    pub always_valid: IntervalResult,
}

impl From<stats::Effect> for EffectResult {
    fn from(e: stats::Effect) -> Self {
        EffectResult {
            value: e.value,
            fixed: e.fixed.into(),
            p_value: e.p_value,
            always_valid: e.always_valid.into(),
        }
    }
}

/// One arm against the control on one metric.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ComparisonResult {
    /// The arm compared with the control.
    pub arm: String,
    /// Arm − control.
    pub difference: EffectResult,
    /// Arm ÷ control − 1.
    pub lift: Option<EffectResult>,
    /// `keep_running`, `b_wins`, `a_wins` (the control) or `no_difference`.
    #[schema(value_type = String)]
    pub decision: Decision,
}

/// One metric across the arms.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MetricResult {
    /// Ratio metrics (delta method): `rail_ctr` (the primary),
    /// `reads_per_session`, `dwell_s_per_session`; means per unit:
    /// `clicks_per_unit`, `reads_per_unit`, `dwell_s_per_unit`,
    /// `page_views_per_unit`, `return_visits_per_unit`; interleaving:
    /// `interleaved_clicks_per_unit`.
    pub name: String,
    /// Per arm, in variant order (none with fewer than two units).
    pub values: Vec<Option<f64>>,
    /// Every arm but the control against the control.
    pub comparisons: Vec<ComparisonResult>,
}

/// The sample-ratio-mismatch check.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct SrmResult {
    pub p_value: f64,
    /// p < 0.001: the assignment or the exposure logging is broken; do not
    /// trust the metrics.
    pub mismatch: bool,
}

/// `GET /v1/experiments/{key}/results`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ExperimentResults {
    pub key: String,
    pub phase: u32,
    /// Units exposed in this phase, all arms.
    pub units: u64,
    pub arms: Vec<ArmResult>,
    pub srm: Option<SrmResult>,
    /// Whether the mean metrics are CUPED-adjusted.
    pub cuped: bool,
    pub metrics: Vec<MetricResult>,
    /// In plain words, from the primary metric: keep running, which arm
    /// wins, no difference, or do not trust (SRM).
    pub decision: String,
}

type MeanMetric = (&'static str, fn(&UnitCounters) -> f64);

const MEAN_METRICS: [MeanMetric; 5] = [
    ("clicks_per_unit", |c| c.clicks as f64),
    ("reads_per_unit", |c| c.reads as f64),
    ("dwell_s_per_unit", |c| c.dwell_ms as f64 / 1000.0),
    ("page_views_per_unit", |c| c.page_views as f64),
    // Sessions begun after the exposure's: the unit came back.
    ("return_visits_per_unit", |c| c.sessions as f64),
];

/// Sessions over the period: the exposure's own and those begun after it.
fn sessions(during: &UnitCounters) -> f64 {
    during.sessions as f64 + 1.0
}

type RatioMetric = (&'static str, fn(&UnitCounters) -> (f64, f64));

/// The primary metric first.
const RATIO_METRICS: [RatioMetric; 3] = [
    (PRIMARY, |c| (c.clicks as f64, c.impressions as f64)),
    ("reads_per_session", |c| (c.reads as f64, sessions(c))),
    ("dwell_s_per_session", |c| {
        (c.dwell_ms as f64 / 1000.0, sessions(c))
    }),
];

/// One exposed unit: its exposure and its counters now.
pub struct Unit<'a> {
    pub exposure: &'a Exposure,
    pub now: UnitCounters,
}

impl Unit<'_> {
    fn during(&self) -> UnitCounters {
        self.now.since(&self.exposure.baseline)
    }
}

/// Each arm's units (exposures naming an arm the experiment does not have
/// are left out).
fn by_arm<'a, 'b>(experiment: &Experiment, units: &'b [Unit<'a>]) -> Vec<Vec<&'b Unit<'a>>> {
    let mut arms: Vec<Vec<&Unit>> = vec![Vec::new(); experiment.variants.len()];
    for u in units {
        if let Some(arm) = arms.get_mut(u.exposure.arm as usize) {
            arm.push(u);
        }
    }
    arms
}

/// CUPED's θ for one metric over every unit: Cov(Y, X) ÷ Var(X), and X's
/// mean; `None` when the pre-period does not vary.
fn cuped_theta(units: &[Unit<'_>], metric: fn(&UnitCounters) -> f64) -> Option<(f64, f64)> {
    let n = units.len() as f64;
    if n < 2.0 {
        return None;
    }
    let xs: Vec<f64> = units.iter().map(|u| metric(&u.exposure.baseline)).collect();
    let ys: Vec<f64> = units.iter().map(|u| metric(&u.during())).collect();
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let var_x: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
    let cov: f64 = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    (var_x > 0.0).then(|| (cov / var_x, mx))
}

fn comparisons(
    experiment: &Experiment,
    estimates: &[Option<Estimate>],
    settings: &Settings,
) -> Vec<ComparisonResult> {
    (1..estimates.len())
        .filter_map(|arm| {
            let c = stats::compare(estimates[0], estimates[arm], settings)?;
            Some(ComparisonResult {
                arm: experiment.variants[arm].name.clone(),
                difference: c.difference.into(),
                lift: c.lift.map(Into::into),
                decision: c.decision,
            })
        })
        .collect()
}

/// One metric: each arm's value and every other arm against the control.
fn metric_result(
    name: &str,
    experiment: &Experiment,
    estimates: &[Option<Estimate>],
    settings: &Settings,
) -> MetricResult {
    MetricResult {
        name: name.into(),
        values: estimates.iter().map(|e| e.map(|e| e.value)).collect(),
        comparisons: comparisons(experiment, estimates, settings),
    }
}

/// The arms as defined, with their units.
fn arm_results(experiment: &Experiment, units: impl Iterator<Item = u64>) -> Vec<ArmResult> {
    experiment
        .variants
        .iter()
        .zip(units)
        .map(|(v, units)| ArmResult {
            name: v.name.clone(),
            ranker: v.ranker.as_str().into(),
            weight: v.weight,
            units,
        })
        .collect()
}

/// The results of `experiment`'s current phase from its exposed units.
pub fn results(
    experiment: &Experiment,
    units: &[Unit<'_>],
    cuped: bool,
    settings: &Settings,
) -> ExperimentResults {
    if experiment.mode == Mode::Interleave {
        return interleaved(experiment, units, settings);
    }
    let arms = by_arm(experiment, units);
    let counts: Vec<u64> = arms.iter().map(|a| a.len() as u64).collect();
    let weights: Vec<f64> = experiment.variants.iter().map(|v| v.weight).collect();
    let srm = stats::srm(&counts, &weights).map(|s| SrmResult {
        p_value: s.p_value,
        mismatch: s.mismatch,
    });
    let mut metrics = Vec::new();
    for (name, metric) in RATIO_METRICS {
        let estimates: Vec<Option<Estimate>> = arms
            .iter()
            .map(|a| {
                let mut m = RatioMoments::default();
                for u in a {
                    let (x, y) = metric(&u.during());
                    m.push(x, y);
                }
                m.estimate()
            })
            .collect();
        metrics.push(metric_result(name, experiment, &estimates, settings));
    }
    for (name, metric) in MEAN_METRICS {
        let theta = if cuped {
            cuped_theta(units, metric)
        } else {
            None
        };
        let estimates: Vec<Option<Estimate>> = arms
            .iter()
            .map(|a| {
                let mut m = Moments::default();
                for u in a {
                    let y = metric(&u.during());
                    m.push(match theta {
                        Some((t, mean_x)) => y - t * (metric(&u.exposure.baseline) - mean_x),
                        None => y,
                    });
                }
                m.estimate()
            })
            .collect();
        metrics.push(metric_result(name, experiment, &estimates, settings));
    }
    let decision = decide(experiment, srm, &metrics[0], "rail CTR");
    ExperimentResults {
        key: experiment.key.clone(),
        phase: experiment.phase,
        units: counts.iter().sum(),
        arms: arm_results(experiment, counts.iter().copied()),
        srm,
        cuped,
        metrics,
        decision,
    }
}

/// Interleaving: every unit saw both rankings in one rail, so the test is
/// within units — the mean of (clicks on B's items − clicks on A's items)
/// since the unit's exposure, with both intervals.
fn interleaved(
    experiment: &Experiment,
    units: &[Unit<'_>],
    settings: &Settings,
) -> ExperimentResults {
    let (mut a, mut b, mut preference) =
        (Moments::default(), Moments::default(), Moments::default());
    for u in units {
        let d = u.during();
        a.push(d.credit_a as f64);
        b.push(d.credit_b as f64);
        preference.push(d.credit_b as f64 - d.credit_a as f64);
    }
    let comparison = preference
        .estimate()
        .and_then(|e| stats::effect(e.value, e.variance, e.n, settings))
        .map(|effect| ComparisonResult {
            arm: experiment.variants[1].name.clone(),
            decision: if effect.always_valid.low > 0.0 {
                Decision::BWins
            } else if effect.always_valid.high < 0.0 {
                Decision::AWins
            } else {
                Decision::KeepRunning
            },
            difference: effect.into(),
            lift: None,
        });
    let metric = MetricResult {
        name: INTERLEAVED.into(),
        values: vec![a.estimate().map(|e| e.value), b.estimate().map(|e| e.value)],
        comparisons: comparison.into_iter().collect(),
    };
    let decision = decide(experiment, None, &metric, "clicks in the interleaved rails");
    let n = units.len() as u64;
    ExperimentResults {
        key: experiment.key.clone(),
        phase: experiment.phase,
        units: n,
        arms: arm_results(experiment, std::iter::repeat(n)),
        srm: None,
        cuped: false,
        metrics: vec![metric],
        decision,
    }
}

fn decide(
    experiment: &Experiment,
    srm: Option<SrmResult>,
    primary: &MetricResult,
    what: &str,
) -> String {
    if srm.is_some_and(|s| s.mismatch) {
        return "Do not trust these results: the arms' unit counts do not match their \
                weights (sample ratio mismatch); check the assignment and exposure logging."
            .into();
    }
    let control = &experiment.variants[0].name;
    if primary.comparisons.is_empty() {
        return "Keep running: not enough units to compare yet.".into();
    }
    let winners: Vec<&str> = primary
        .comparisons
        .iter()
        .filter(|c| c.decision == Decision::BWins)
        .map(|c| c.arm.as_str())
        .collect();
    if !winners.is_empty() {
        return format!("{} wins over {control} on {what}.", winners.join(", "));
    }
    if primary
        .comparisons
        .iter()
        .all(|c| c.decision == Decision::AWins)
    {
        return format!("{control} (the control) wins on {what}.");
    }
    if primary
        .comparisons
        .iter()
        .all(|c| c.decision == Decision::NoDifference)
    {
        return format!("No difference on {what} worth having.");
    }
    "Keep running: the difference is not yet clear.".into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiments::definition::{ExperimentSpec, Status, VariantSpec};
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    fn experiment() -> Experiment {
        let spec = ExperimentSpec {
            variants: ["production", "popularity"]
                .iter()
                .enumerate()
                .map(|(i, r)| VariantSpec {
                    name: format!("v{i}"),
                    ranker: (*r).into(),
                    weight: 0.5,
                })
                .collect(),
            coverage: 1.0,
            seed: None,
            namespace: None,
            status: Status::Running,
            mode: Default::default(),
        };
        Experiment::define("exp", &spec, None, 0).unwrap()
    }

    fn exposure(unit: usize, arm: u32, baseline: UnitCounters) -> Exposure {
        Exposure {
            v: 1,
            site: "s".into(),
            experiment: "exp".into(),
            phase: 1,
            unit: format!("u{unit}"),
            arm,
            at_ms: 0,
            baseline,
        }
    }

    /// Units whose pre-period predicts their clicks; arm 1 clicks `lift`
    /// more per unit.
    fn population(n: usize, lift: u64, rng: &mut SmallRng) -> (Vec<Exposure>, Vec<UnitCounters>) {
        let mut exposures = Vec::new();
        let mut now = Vec::new();
        for i in 0..n {
            let arm = (i % 2) as u32;
            let habit = rng.random_range(0..20u64);
            let before = UnitCounters {
                clicks: habit,
                impressions: 100,
                ..Default::default()
            };
            let during_clicks = habit + rng.random_range(0..3) + if arm == 1 { lift } else { 0 };
            exposures.push(exposure(i, arm, before));
            now.push(UnitCounters {
                clicks: before.clicks + during_clicks,
                impressions: 140,
                ..Default::default()
            });
        }
        (exposures, now)
    }

    fn units<'a>(exposures: &'a [Exposure], now: &[UnitCounters]) -> Vec<Unit<'a>> {
        exposures
            .iter()
            .zip(now)
            .map(|(exposure, now)| Unit {
                exposure,
                now: *now,
            })
            .collect()
    }

    #[test]
    fn metrics_count_what_happened_after_the_exposure_and_a_clear_lift_wins() {
        let mut rng = SmallRng::seed_from_u64(1);
        let (exposures, now) = population(2_000, 5, &mut rng);
        let r = results(
            &experiment(),
            &units(&exposures, &now),
            false,
            &Settings::default(),
        );
        assert_eq!(r.units, 2_000);
        assert_eq!(
            r.arms.iter().map(|a| a.units).collect::<Vec<_>>(),
            [1_000, 1_000]
        );
        assert!(!r.srm.unwrap().mismatch);
        let clicks = r
            .metrics
            .iter()
            .find(|m| m.name == "clicks_per_unit")
            .unwrap();
        let diff = &clicks.comparisons[0].difference;
        assert!((diff.value - 5.0).abs() < 1.0, "{diff:?}");
        assert!(diff.always_valid.low < 5.0 && 5.0 < diff.always_valid.high);
        // Per unit over 40 impressions: about 10.5 / 40 against 15.5 / 40.
        let ctr = &r.metrics[0];
        assert!(
            (ctr.values[0].unwrap() - 10.5 / 40.0).abs() < 0.02,
            "{ctr:?}"
        );
        assert_eq!(ctr.comparisons[0].decision, Decision::BWins);
        assert_eq!(r.decision, "v1 wins over v0 on rail CTR.");
    }

    #[test]
    fn cuped_keeps_the_estimate_and_narrows_the_interval() {
        let mut rng = SmallRng::seed_from_u64(2);
        let (exposures, now) = population(1_000, 1, &mut rng);
        let u = units(&exposures, &now);
        let plain = results(&experiment(), &u, false, &Settings::default());
        let adjusted = results(&experiment(), &u, true, &Settings::default());
        let width = |r: &ExperimentResults| {
            let m = r
                .metrics
                .iter()
                .find(|m| m.name == "clicks_per_unit")
                .unwrap();
            let d = &m.comparisons[0].difference;
            (d.value, d.fixed.high - d.fixed.low)
        };
        let ((v0, w0), (v1, w1)) = (width(&plain), width(&adjusted));
        assert!(
            (v0 - 1.0).abs() < 0.6 && (v1 - 1.0).abs() < 0.3,
            "{v0} {v1}"
        );
        assert!(w1 < 0.4 * w0, "CUPED width {w1} against {w0}");
    }

    #[test]
    fn interleaving_compares_within_units() {
        let mut e = experiment();
        e.mode = Mode::Interleave;
        let mut rng = SmallRng::seed_from_u64(4);
        let exposures: Vec<Exposure> = (0..300)
            .map(|i| exposure(i, 0, UnitCounters::default()))
            .collect();
        // Every unit clicks B's items a little more, whatever its own level.
        let now: Vec<UnitCounters> = (0..300)
            .map(|_| {
                let level = rng.random_range(0..10u64);
                UnitCounters {
                    credit_a: level,
                    credit_b: level + rng.random_range(0..3),
                    ..Default::default()
                }
            })
            .collect();
        let r = results(&e, &units(&exposures, &now), false, &Settings::default());
        assert_eq!(r.units, 300);
        assert!(r.srm.is_none(), "one group: no ratio to check");
        let m = &r.metrics[0];
        assert_eq!(m.name, INTERLEAVED);
        let d = &m.comparisons[0].difference;
        assert!((d.value - 1.0).abs() < 0.2, "{d:?}");
        assert_eq!(m.comparisons[0].decision, Decision::BWins);
        assert_eq!(
            r.decision,
            "v1 wins over v0 on clicks in the interleaved rails."
        );
    }

    #[test]
    fn missing_exposures_of_one_arm_are_flagged_and_distrusted() {
        let mut rng = SmallRng::seed_from_u64(3);
        let (exposures, now) = population(4_000, 0, &mut rng);
        // Drop a fifth of arm 1's exposures, as a broken logger would.
        let (exposures, now): (Vec<Exposure>, Vec<UnitCounters>) = exposures
            .into_iter()
            .zip(now)
            .enumerate()
            .filter(|(i, (e, _))| !(e.arm == 1 && i % 10 == 1))
            .map(|(_, pair)| pair)
            .unzip();
        let r = results(
            &experiment(),
            &units(&exposures, &now),
            false,
            &Settings::default(),
        );
        assert!(r.srm.unwrap().mismatch, "{:?}", r.srm);
        assert!(r.decision.starts_with("Do not trust"), "{}", r.decision);
    }
}
