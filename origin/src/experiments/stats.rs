//! Experiment statistics. Every metric is aggregated per unit first (a
//! reader's clicks, reads, dwell), so units are the independent observations
//! and a heavy reader does not count as many.
//!
//! - [`Moments`] and [`RatioMoments`] summarise an arm's per-unit values into
//!   an [`Estimate`]: a mean metric, or a ratio metric (clicks ÷ impressions)
//!   whose variance comes from the delta method.
//! - [`srm`]: the sample-ratio-mismatch check (chi-squared goodness of fit).
//! - [`compare`]: arm B against arm A — the difference and the relative lift,
//!   each with a fixed-horizon interval (valid when looked at once, at the
//!   planned size) and an always-valid one (a confidence sequence, valid
//!   however often it is looked at), and a [`Decision`] from the latter.
//!
//! The confidence sequence is the asymptotic one of Waudby-Smith et al.
//! (2023, "Time-uniform central limit theory and asymptotic confidence
//! sequences", eq. 9 with the mixing parameter of its appendix), the
//! normal-mixture form GrowthBook and Eppo use. `origin/testdata/stats.json`
//! pins reference values computed with scipy and statsmodels
//! (`stats_reference.py`).

use statrs::distribution::{ChiSquared, ContinuousCDF, Normal};

/// A sample-ratio mismatch is flagged below this p-value.
pub const SRM_P: f64 = 0.001;

/// Count, mean and variance of per-unit values (Welford's update).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Moments {
    pub n: u64,
    pub mean: f64,
    /// Sum of squared deviations from the mean.
    m2: f64,
}

impl Moments {
    pub fn of(values: &[f64]) -> Self {
        let mut m = Moments::default();
        for &x in values {
            m.push(x);
        }
        m
    }

    pub fn push(&mut self, x: f64) {
        self.n += 1;
        let delta = x - self.mean;
        self.mean += delta / self.n as f64;
        self.m2 += delta * (x - self.mean);
    }

    /// The sample variance (n − 1); `None` below two units.
    pub fn variance(&self) -> Option<f64> {
        (self.n >= 2).then(|| self.m2 / (self.n - 1) as f64)
    }

    /// The mean as an estimate; `None` below two units.
    pub fn estimate(&self) -> Option<Estimate> {
        Some(Estimate {
            value: self.mean,
            variance: self.variance()? / self.n as f64,
            n: self.n,
        })
    }
}

/// A ratio metric over units: each unit's numerator and denominator
/// (clicks and impressions, reads and sessions). The metric is the ratio of
/// the means, not the mean of per-unit ratios, so units with more
/// denominator weigh more, as a page-level CTR does.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RatioMoments {
    pub n: u64,
    mean_x: f64,
    mean_y: f64,
    /// Co-moments: Σ(x−x̄)², Σ(y−ȳ)², Σ(x−x̄)(y−ȳ).
    m2_x: f64,
    m2_y: f64,
    c_xy: f64,
}

impl RatioMoments {
    pub fn of(units: &[(f64, f64)]) -> Self {
        let mut m = RatioMoments::default();
        for &(x, y) in units {
            m.push(x, y);
        }
        m
    }

    pub fn push(&mut self, x: f64, y: f64) {
        self.n += 1;
        let n = self.n as f64;
        let (dx, dy) = (x - self.mean_x, y - self.mean_y);
        self.mean_x += dx / n;
        self.mean_y += dy / n;
        self.m2_x += dx * (x - self.mean_x);
        self.m2_y += dy * (y - self.mean_y);
        self.c_xy += dx * (y - self.mean_y);
    }

    /// x̄ ÷ ȳ with its variance by the delta method:
    /// (s²ₓ − 2r·sₓᵧ + r²·s²ᵧ) ÷ (n·ȳ²). `None` below two units or with no
    /// denominator.
    pub fn estimate(&self) -> Option<Estimate> {
        if self.n < 2 || self.mean_y == 0.0 {
            return None;
        }
        let df = (self.n - 1) as f64;
        let (var_x, var_y, cov) = (self.m2_x / df, self.m2_y / df, self.c_xy / df);
        let r = self.mean_x / self.mean_y;
        let variance =
            (var_x - 2.0 * r * cov + r * r * var_y) / (self.n as f64 * self.mean_y * self.mean_y);
        Some(Estimate {
            value: r,
            variance: variance.max(0.0),
            n: self.n,
        })
    }
}

/// An arm's metric: its value, the variance of that value (not of the
/// units), and how many units it rests on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    pub value: f64,
    pub variance: f64,
    pub n: u64,
}

/// The sample-ratio-mismatch check: units seen per arm against the arms'
/// weights.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Srm {
    pub chi2: f64,
    pub p_value: f64,
    /// p < [`SRM_P`]: the assignment or the exposure logging is broken, and
    /// no result of the experiment can be trusted.
    pub mismatch: bool,
}

/// Chi-squared goodness of fit of `units` per arm to `weights`; `None` with
/// fewer than two arms, lengths that differ, no units, or a weight ≤ 0.
pub fn srm(units: &[u64], weights: &[f64]) -> Option<Srm> {
    let total: u64 = units.iter().sum();
    let weight_sum: f64 = weights.iter().sum();
    if units.len() < 2
        || units.len() != weights.len()
        || total == 0
        || weights.iter().any(|w| w.is_nan() || *w <= 0.0)
    {
        return None;
    }
    let chi2: f64 = units
        .iter()
        .zip(weights)
        .map(|(&o, w)| {
            let expected = total as f64 * w / weight_sum;
            (o as f64 - expected).powi(2) / expected
        })
        .sum();
    let dist = ChiSquared::new((units.len() - 1) as f64).ok()?;
    let p_value = dist.sf(chi2).clamp(0.0, 1.0);
    Some(Srm {
        chi2,
        p_value,
        mismatch: p_value < SRM_P,
    })
}

/// A two-sided interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    pub low: f64,
    pub high: f64,
}

impl Interval {
    fn around(center: f64, half_width: f64) -> Self {
        Interval {
            low: center - half_width,
            high: center + half_width,
        }
    }
}

/// One effect (a difference or a lift) with both kinds of interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Effect {
    pub value: f64,
    /// Fixed-horizon: 1 − α coverage when looked at once, at the planned size.
    pub fixed: Interval,
    /// Two-sided p-value of the fixed-horizon z-test.
    pub p_value: f64,
    /// Always-valid: 1 − α coverage at every size at once, so a dashboard
    /// can be watched every minute.
    pub always_valid: Interval,
}

/// What to do, from the always-valid interval of the lift.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// The interval still holds both signs and effects beyond the margin.
    KeepRunning,
    BWins,
    AWins,
    /// The whole interval is inside ± the smallest lift worth having.
    NoDifference,
}

/// B against A.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Comparison {
    /// B − A.
    pub difference: Effect,
    /// B ÷ A − 1 (delta method); `None` when A's value is 0.
    pub lift: Option<Effect>,
    pub decision: Decision,
}

/// How an experiment is read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// 1 − coverage of every interval (0.05: 95 %).
    pub alpha: f64,
    /// Total units (both arms) at which the always-valid interval is
    /// tightest: the planned size.
    pub planned_units: f64,
    /// The smallest relative lift worth having: intervals inside ± it read
    /// as "no difference".
    pub margin: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            alpha: 0.05,
            planned_units: 10_000.0,
            margin: 0.01,
        }
    }
}

/// The mixing parameter ρ that makes the confidence sequence tightest at
/// `planned` observations (Waudby-Smith et al. 2023, appendix).
fn rho(alpha: f64, planned: f64) -> f64 {
    let l = -2.0 * alpha.ln();
    ((l + (l + 1.0).ln()) / planned).sqrt()
}

/// Half-width of the always-valid interval after `n` observations with
/// per-observation variance `s2` (Waudby-Smith et al. 2023, eq. 9).
pub fn always_valid_half_width(s2: f64, n: f64, alpha: f64, planned: f64) -> f64 {
    let r2 = rho(alpha, planned).powi(2);
    let nr2 = n * r2 + 1.0;
    (s2 * 2.0 * nr2 / (n * n * r2) * (nr2.sqrt() / alpha).ln()).sqrt()
}

/// An effect of `value` whose estimator has `variance`, resting on `n`
/// units: both intervals and the fixed-horizon p-value.
pub fn effect(value: f64, variance: f64, n: u64, settings: &Settings) -> Option<Effect> {
    let normal = Normal::standard();
    let se = variance.sqrt();
    let z = normal.inverse_cdf(1.0 - settings.alpha / 2.0);
    let p_value = if se > 0.0 {
        2.0 * normal.sf((value / se).abs())
    } else if value == 0.0 {
        1.0
    } else {
        0.0
    };
    // The sequence is stated per observation: the estimator's variance times
    // the units it rests on.
    let n = n as f64;
    let half = always_valid_half_width(variance * n, n, settings.alpha, settings.planned_units);
    (value.is_finite() && se.is_finite()).then_some(Effect {
        value,
        fixed: Interval::around(value, z * se),
        p_value,
        always_valid: Interval::around(value, half),
    })
}

/// B against A: the difference, the lift and the decision; `None` when
/// either arm has no estimate.
pub fn compare(
    a: Option<Estimate>,
    b: Option<Estimate>,
    settings: &Settings,
) -> Option<Comparison> {
    let (a, b) = (a?, b?);
    let n = a.n + b.n;
    let difference = effect(b.value - a.value, a.variance + b.variance, n, settings)?;
    let lift = (a.value != 0.0)
        .then(|| {
            // Var(B/A) ≈ Var(B)/A² + B²·Var(A)/A⁴.
            let variance =
                b.variance / a.value.powi(2) + b.value.powi(2) * a.variance / a.value.powi(4);
            effect(b.value / a.value - 1.0, variance, n, settings)
        })
        .flatten();
    let decision = match lift.map(|l| l.always_valid) {
        Some(i) if i.low > 0.0 => Decision::BWins,
        Some(i) if i.high < 0.0 => Decision::AWins,
        Some(i) if i.low > -settings.margin && i.high < settings.margin => Decision::NoDifference,
        _ => Decision::KeepRunning,
    };
    Some(Comparison {
        difference,
        lift,
        decision,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};
    use serde_json::Value;

    fn reference() -> Value {
        serde_json::from_str(include_str!("../../testdata/stats.json")).expect("stats.json")
    }

    fn close(actual: f64, expected: &Value, what: &str) {
        let expected = expected.as_f64().expect("a number");
        let tolerance = 1e-9 * expected.abs().max(1.0);
        assert!(
            (actual - expected).abs() <= tolerance,
            "{what}: {actual} ≠ {expected} (scipy/statsmodels)"
        );
    }

    fn floats(v: &Value) -> Vec<f64> {
        v.as_array()
            .expect("an array")
            .iter()
            .map(|x| x.as_f64().expect("a number"))
            .collect()
    }

    fn settings(r: &Value) -> Settings {
        Settings {
            alpha: r["alpha"].as_f64().unwrap(),
            planned_units: r["planned_units"].as_f64().unwrap(),
            ..Settings::default()
        }
    }

    #[test]
    fn srm_matches_scipy() {
        for case in reference()["srm"].as_array().unwrap() {
            let units: Vec<u64> = floats(&case["units"]).iter().map(|&u| u as u64).collect();
            let got = srm(&units, &floats(&case["weights"])).expect("a check");
            close(got.chi2, &case["chi2"], "chi2");
            close(got.p_value, &case["p_value"], "p");
            assert_eq!(got.mismatch, got.p_value < SRM_P);
        }
        assert!(srm(&[10_000, 9_000], &[0.5, 0.5]).unwrap().mismatch);
        assert_eq!(srm(&[1], &[1.0]), None, "one arm");
        assert_eq!(srm(&[1, 2], &[0.5, 0.0]), None, "a zero weight");
    }

    #[test]
    fn mean_comparisons_match_statsmodels() {
        let r = reference();
        let s = settings(&r);
        for case in r["means"].as_array().unwrap() {
            let a = Moments::of(&floats(&case["a"])).estimate();
            let b = Moments::of(&floats(&case["b"])).estimate();
            let c = compare(a, b, &s).expect("a comparison");
            let d = c.difference;
            close(d.value, &case["difference"], "difference");
            close(d.fixed.low, &case["fixed"][0], "fixed low");
            close(d.fixed.high, &case["fixed"][1], "fixed high");
            close(d.p_value, &case["p_value"], "p");
            close(
                d.always_valid.low,
                &case["always_valid"][0],
                "always-valid low",
            );
            close(
                d.always_valid.high,
                &case["always_valid"][1],
                "always-valid high",
            );
            let lift = c.lift.expect("a lift");
            close(lift.value, &case["lift"], "lift");
            close(lift.fixed.low, &case["lift_fixed"][0], "lift low");
            close(lift.fixed.high, &case["lift_fixed"][1], "lift high");
            assert!(
                d.always_valid.high - d.always_valid.low > d.fixed.high - d.fixed.low,
                "safe to peek costs width"
            );
        }
    }

    #[test]
    fn ratio_metrics_match_the_delta_method_in_numpy() {
        for case in reference()["ratios"].as_array().unwrap() {
            let units: Vec<(f64, f64)> = case["units"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| (u[0].as_f64().unwrap(), u[1].as_f64().unwrap()))
                .collect();
            let e = RatioMoments::of(&units).estimate().expect("an estimate");
            close(e.value, &case["ratio"], "ratio");
            close(e.variance, &case["variance"], "variance");
        }
        assert_eq!(RatioMoments::of(&[(0.0, 0.0), (0.0, 0.0)]).estimate(), None);
    }

    /// A/A experiments looked at every 100 units up to 10,000: the
    /// always-valid interval excludes 0 at some look in at most α of them;
    /// the fixed-horizon interval, peeked at the same way, far more often.
    #[test]
    fn peeking_at_the_always_valid_interval_keeps_false_positives_under_alpha() {
        let s = Settings::default();
        let mut rng = SmallRng::seed_from_u64(7);
        let (experiments, mut always_valid, mut fixed) = (300, 0, 0);
        for _ in 0..experiments {
            let (mut a, mut b) = (Moments::default(), Moments::default());
            let (mut av_hit, mut fixed_hit) = (false, false);
            for look in 1..=100 {
                for _ in 0..50 {
                    a.push(f64::from(u8::from(rng.random::<f64>() < 0.2)));
                    b.push(f64::from(u8::from(rng.random::<f64>() < 0.2)));
                }
                let d = compare(a.estimate(), b.estimate(), &s).unwrap().difference;
                let excludes_0 = |i: Interval| i.low > 0.0 || i.high < 0.0;
                av_hit |= excludes_0(d.always_valid);
                fixed_hit |= excludes_0(d.fixed);
                assert!(look < 100 || a.n == 5_000);
            }
            always_valid += usize::from(av_hit);
            fixed += usize::from(fixed_hit);
        }
        let rate = |hits: usize| hits as f64 / experiments as f64;
        assert!(
            rate(always_valid) <= s.alpha,
            "always-valid: {}",
            rate(always_valid)
        );
        assert!(
            rate(fixed) > 2.0 * s.alpha,
            "fixed-horizon peeked: {}",
            rate(fixed)
        );
    }

    #[test]
    fn decisions_follow_the_always_valid_lift() {
        let s = Settings::default();
        let arm = |value: f64, variance: f64| {
            Some(Estimate {
                value,
                variance,
                n: 50_000,
            })
        };
        let decide = |b: f64, variance: f64| {
            compare(arm(0.10, variance), arm(b, variance), &s)
                .unwrap()
                .decision
        };
        assert_eq!(decide(0.12, 1e-7), Decision::BWins);
        assert_eq!(decide(0.08, 1e-7), Decision::AWins);
        assert_eq!(decide(0.1001, 1e-9), Decision::NoDifference);
        assert_eq!(decide(0.101, 1e-5), Decision::KeepRunning);
    }
}
