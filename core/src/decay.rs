//! Exponentially decayed scores that merge in any order.
//!
//! A score is a pair `(value, at_ms)`: the sum of every contribution `w·2^(−(at − t)/h)`
//! valued at the reference time `at`. Adding an event and merging two partial
//! sums are the same operation — rescale both to the later reference time and
//! add — so events that arrive out of order, or tallies kept on two machines,
//! end at the same value (equal up to floating-point rounding; the golden
//! vectors fix an order so every tier agrees bit for bit). Keeping the reference
//! time next to the value avoids the overflow of the textbook "sum of
//! `w·2^(t/h)` since an epoch" form, which leaves f64 range after ~1000 half-lives.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The time it takes a contribution to lose half its weight.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct HalfLife {
    ms: f64,
}

impl HalfLife {
    /// A half-life in milliseconds; `None` unless it is finite and positive.
    pub fn from_ms(ms: f64) -> Option<Self> {
        (ms.is_finite() && ms > 0.0).then_some(HalfLife { ms })
    }

    /// A half-life in hours; `None` unless it is finite and positive.
    pub fn from_hours(hours: f64) -> Option<Self> {
        Self::from_ms(hours * 3_600_000.0)
    }

    /// The half-life in milliseconds.
    pub fn as_ms(self) -> f64 {
        self.ms
    }

    /// `2^(−dt/h)`: what a contribution is worth `dt_ms` after it was made.
    pub fn factor(self, dt_ms: i64) -> f64 {
        libm::exp2(-(dt_ms as f64) / self.ms)
    }
}

/// A decayed sum of weights, valued at `at_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct DecayedScore {
    /// The sum, valued at `at_ms`.
    pub value: f64,
    /// Reference time, Unix milliseconds: the latest contribution's time.
    pub at_ms: i64,
}

impl DecayedScore {
    /// A single contribution of `weight` at `at_ms`.
    pub fn point(weight: f64, at_ms: i64) -> Self {
        DecayedScore {
            value: weight,
            at_ms,
        }
    }

    /// The score's value at `t_ms` (later times give smaller values).
    pub fn value_at(self, t_ms: i64, half_life: HalfLife) -> f64 {
        if self.value == 0.0 {
            return 0.0;
        }
        self.value * half_life.factor(t_ms.saturating_sub(self.at_ms))
    }

    /// The sum of two scores, valued at the later of their reference times.
    pub fn merge(self, other: DecayedScore, half_life: HalfLife) -> DecayedScore {
        let at_ms = self.at_ms.max(other.at_ms);
        DecayedScore {
            value: self.value_at(at_ms, half_life) + other.value_at(at_ms, half_life),
            at_ms,
        }
    }

    /// Adds one contribution of `weight` made at `t_ms`, in or out of order.
    pub fn add(&mut self, weight: f64, t_ms: i64, half_life: HalfLife) {
        *self = self.merge(DecayedScore::point(weight, t_ms), half_life);
    }
}

/// Decayed interest per category or tag (ordered, so iteration and
/// serialization are the same in every tier).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Affinities {
    scores: BTreeMap<String, DecayedScore>,
}

impl Affinities {
    /// No interest in anything yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Credits `weight` at `t_ms` to each of `tags`.
    pub fn record<'t>(
        &mut self,
        tags: impl IntoIterator<Item = &'t str>,
        weight: f64,
        t_ms: i64,
        half_life: HalfLife,
    ) {
        for tag in tags {
            self.scores
                .entry(tag.to_owned())
                .or_default()
                .add(weight, t_ms, half_life);
        }
    }

    /// Adds another tally (from another machine, or a partial replay).
    pub fn merge(&mut self, other: &Affinities, half_life: HalfLife) {
        for (tag, score) in &other.scores {
            let mine = self.scores.entry(tag.clone()).or_default();
            *mine = mine.merge(*score, half_life);
        }
    }

    /// The decayed score of `tag` at `t_ms` (0 when never seen).
    pub fn value_at(&self, tag: &str, t_ms: i64, half_life: HalfLife) -> f64 {
        self.scores
            .get(tag)
            .map_or(0.0, |s| s.value_at(t_ms, half_life))
    }

    /// Every tag with its decayed score at `t_ms`, in tag order.
    pub fn values_at(&self, t_ms: i64, half_life: HalfLife) -> Vec<(&str, f64)> {
        self.scores
            .iter()
            .map(|(tag, s)| (tag.as_str(), s.value_at(t_ms, half_life)))
            .collect()
    }

    /// The raw scores, in tag order.
    pub fn scores(&self) -> impl Iterator<Item = (&str, DecayedScore)> {
        self.scores.iter().map(|(t, s)| (t.as_str(), *s))
    }

    /// Number of tags tracked.
    pub fn len(&self) -> usize {
        self.scores.len()
    }

    /// True when no tag has been credited.
    pub fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }

    /// Keeps the `max_tags` strongest tags at `t_ms` (ties: the smaller tag name
    /// stays), bounding per-user state at the edge.
    pub fn retain_strongest(&mut self, max_tags: usize, t_ms: i64, half_life: HalfLife) {
        if self.scores.len() <= max_tags {
            return;
        }
        let mut ranked = self.values_at(t_ms, half_life);
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        let keep: std::collections::BTreeSet<String> = ranked
            .into_iter()
            .take(max_tags)
            .map(|(t, _)| t.to_owned())
            .collect();
        self.scores.retain(|tag, _| keep.contains(tag));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;

    fn hl() -> HalfLife {
        HalfLife::from_ms(HOUR as f64).unwrap()
    }

    #[test]
    fn one_half_life_halves_exactly() {
        let s = DecayedScore::point(3.0, 0);
        assert_eq!(s.value_at(HOUR, hl()), 1.5);
        assert_eq!(s.value_at(2 * HOUR, hl()), 0.75);
    }

    #[test]
    fn an_old_event_added_late_counts_decayed() {
        let mut s = DecayedScore::point(1.0, 2 * HOUR);
        s.add(4.0, 0, hl());
        assert_eq!(s, DecayedScore::point(2.0, 2 * HOUR));
    }

    #[test]
    fn no_overflow_across_many_half_lives() {
        let mut s = DecayedScore::point(1.0, 0);
        s.add(1.0, 5000 * HOUR, hl());
        assert_eq!(s.value, 1.0);
        assert!(s.value_at(10_000 * HOUR, hl()).is_finite());
    }

    #[test]
    fn invalid_half_lives_are_refused() {
        assert!(HalfLife::from_ms(0.0).is_none());
        assert!(HalfLife::from_ms(-1.0).is_none());
        assert!(HalfLife::from_ms(f64::NAN).is_none());
        assert!(HalfLife::from_hours(f64::INFINITY).is_none());
    }

    #[test]
    fn retain_strongest_keeps_the_top_tags() {
        let mut a = Affinities::new();
        a.record(["sports"], 1.0, 0, hl());
        a.record(["tech"], 3.0, 0, hl());
        a.record(["arts"], 2.0, 0, hl());
        a.retain_strongest(2, HOUR, hl());
        let tags: Vec<_> = a.scores().map(|(t, _)| t).collect();
        assert_eq!(tags, ["arts", "tech"]);
    }
}
