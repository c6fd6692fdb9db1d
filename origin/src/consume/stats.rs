//! What a consumer reports about itself for the dashboard: freshness —
//! receipt at the origin to the profile updated — over the last minute, its
//! counts, and (embedded mode) its lag. On Kafka the origin measures the
//! group's lag itself (`event_log::lag`): a consumer cannot see the commits
//! it makes through its transactional producer, nor report while it is down.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::collections::HashMap;

use crate::model::validation::{ValidationSummary, Validator};
use crate::store::ConsumerStats;

/// Freshness samples kept (the last minute, at most this many).
const WINDOW_MS: i64 = 60_000;
const MAX_SAMPLES: usize = 20_000;
/// How often the stats are published.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(500);

/// Lag per `topic/partition`, written by the embedded consumer.
pub type SharedLag = Arc<Mutex<BTreeMap<String, i64>>>;

/// A consumer's running statistics.
pub struct StatsTracker {
    member: String,
    lag: Option<SharedLag>,
    /// `(applied at, freshness ms)`, oldest first.
    samples: VecDeque<(i64, f64)>,
    applied: u64,
    duplicate: u64,
    validation: Option<ValidationSummary>,
    /// The model version trained last, and each version's validation as it
    /// stood: a restart of the clients goes on from there, and the counters
    /// on `/metrics` never go back.
    model_version: Option<u32>,
    validators: HashMap<u32, Validator>,
    published: Option<Instant>,
}

impl StatsTracker {
    /// A tracker for this process, reading lag from `lag` if it knows it.
    pub fn new(lag: Option<SharedLag>) -> Self {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "consumer".into());
        StatsTracker {
            member: format!("{host}-{}", std::process::id()),
            lag,
            samples: VecDeque::new(),
            applied: 0,
            duplicate: 0,
            validation: None,
            model_version: None,
            validators: HashMap::new(),
            published: None,
        }
    }

    /// This process's member name.
    pub fn member(&self) -> &str {
        &self.member
    }

    /// Events applied at `now_ms` that the origin received at `received_at_ms`.
    pub fn observe(&mut self, received_at_ms: impl IntoIterator<Item = i64>, now_ms: i64) {
        for received in received_at_ms {
            let freshness = (now_ms - received).max(0) as f64;
            metrics::histogram!("attune_consumer_freshness_seconds").record(freshness / 1000.0);
            self.samples.push_back((now_ms, freshness));
        }
        while self.samples.len() > MAX_SAMPLES {
            self.samples.pop_front();
        }
    }

    /// Counts applied and duplicate events.
    pub fn count(&mut self, applied: u64, duplicate: u64) {
        self.applied += applied;
        self.duplicate += duplicate;
    }

    /// The online model's live validation so far (`model::validation`),
    /// also set on `/metrics`.
    /// labelled with the model `version` it validates.
    pub fn validated(&mut self, version: u32, validator: &Validator) {
        if self.model_version != Some(version) {
            if let Some(before) = self.model_version {
                // A version no longer trained here is not degrading here.
                metrics::gauge!("attune_model_live_degraded", "version" => before.to_string())
                    .set(0.0);
            }
            metrics::gauge!("attune_model_version").set(f64::from(version));
            self.model_version = Some(version);
            self.validation = None;
        }
        let Some(v) = validator.live.summary() else {
            return;
        };
        if self.validation == Some(v) {
            return;
        }
        let label = version.to_string();
        metrics::counter!("attune_model_validation_events_total", "version" => label.clone())
            .absolute(v.evaluated);
        metrics::counter!("attune_model_validation_hits_total", "version" => label.clone())
            .absolute(v.hits);
        metrics::gauge!("attune_model_live_hr10", "version" => label.clone()).set(v.hr10);
        metrics::gauge!("attune_model_live_ndcg10", "version" => label.clone()).set(v.ndcg10);
        metrics::gauge!("attune_model_live_degraded", "version" => label)
            .set(f64::from(u8::from(v.degraded)));
        self.validation = Some(v);
        self.validators.insert(version, validator.clone());
    }

    /// Whether the latest validation says the model is degraded.
    pub fn degraded(&self) -> bool {
        self.validation.is_some_and(|v| v.degraded)
    }

    /// The validation of `version` to go on with (a new one at `rate`).
    pub fn validator(&self, version: u32, rate: f64) -> Validator {
        self.validators
            .get(&version)
            .cloned()
            .unwrap_or_else(|| Validator::new(rate))
    }

    /// True when the stats should be published again.
    pub fn due(&self) -> bool {
        self.published
            .is_none_or(|at| at.elapsed() >= PUBLISH_EVERY)
    }

    /// The stats at `now_ms` (drops samples older than the window).
    pub fn snapshot(&mut self, now_ms: i64) -> ConsumerStats {
        self.published = Some(Instant::now());
        while self
            .samples
            .front()
            .is_some_and(|(at, _)| now_ms - at > WINDOW_MS)
        {
            self.samples.pop_front();
        }
        let mut sorted: Vec<f64> = self.samples.iter().map(|(_, f)| *f).collect();
        sorted.sort_by(f64::total_cmp);
        let lag_by_partition = self
            .lag
            .as_ref()
            .map(|l| l.lock().expect("not poisoned").clone());
        ConsumerStats {
            member: self.member.clone(),
            updated_at_ms: now_ms,
            lag: lag_by_partition.as_ref().map(|l| l.values().sum()),
            lag_by_partition: lag_by_partition.unwrap_or_default(),
            freshness_p50_ms: percentile(&sorted, 0.50),
            freshness_p99_ms: percentile(&sorted, 0.99),
            events_applied: self.applied,
            events_duplicate: self.duplicate,
            validation: self.validation,
            model_version: self.model_version,
        }
    }
}

/// The nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), Some(50.0));
        assert_eq!(percentile(&v, 0.99), Some(99.0));
        assert_eq!(percentile(&[7.0], 0.99), Some(7.0));
        assert_eq!(percentile(&[], 0.5), None);
    }

    /// The validation metrics follow the summary: counts, rates and the
    /// degraded flag, which goes to 1 and back.
    #[test]
    fn validation_metrics_follow_the_summary() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let line = |text: &str, name: &str| -> Option<f64> {
            text.lines().find_map(|l| {
                l.strip_prefix(name)?
                    .strip_prefix("{version=\"3\"} ")?
                    .parse()
                    .ok()
            })
        };
        metrics::with_local_recorder(&recorder, || {
            let mut t = StatsTracker::new(None);
            let mut v = Validator::new(1.0);
            for i in 0..2_500 {
                // HR@10 0.4 for 2,000 checks, then 0.2.
                let hit = if i < 2_000 { i % 5 < 2 } else { i % 5 < 1 };
                v.live.record(if hit { 1 } else { 50 });
            }
            t.validated(3, &v);
            let text = handle.render();
            assert_eq!(
                line(&text, "attune_model_validation_events_total"),
                Some(2_500.0)
            );
            assert_eq!(
                line(&text, "attune_model_validation_hits_total"),
                Some(900.0)
            );
            assert_eq!(line(&text, "attune_model_live_hr10"), Some(0.2));
            assert_eq!(line(&text, "attune_model_live_ndcg10"), Some(0.2));
            assert_eq!(line(&text, "attune_model_live_degraded"), Some(1.0));
            for _ in 0..500 {
                v.live.record(1);
            }
            t.validated(3, &v);
            let text = handle.render();
            assert_eq!(line(&text, "attune_model_live_degraded"), Some(0.0));
            assert_eq!(line(&text, "attune_model_live_hr10"), Some(1.0));
            // The clients restart: the version's validation goes on.
            let again = t.validator(3, 1.0);
            assert_eq!(again.live.summary(), v.live.summary());
            assert_eq!(t.validator(4, 0.5).live.summary(), None);
            assert!(text.contains("attune_model_version 3"), "{text}");
        });
    }

    #[test]
    fn freshness_covers_the_last_minute_and_lag_sums_partitions() {
        let lag = SharedLag::default();
        lag.lock()
            .unwrap()
            .extend([("t/0".to_string(), 3), ("t/1".to_string(), 4)]);
        let mut t = StatsTracker::new(Some(lag));
        t.observe([0, 0], 1_000); // 1 s fresh, applied at t = 1 s
        t.observe([100_000], 100_050); // 50 ms fresh, at t = 100 s
        t.count(3, 1);
        let s = t.snapshot(100_100);
        // The samples from t = 1 s are past the window.
        assert_eq!(s.freshness_p50_ms, Some(50.0));
        assert_eq!(s.freshness_p99_ms, Some(50.0));
        assert_eq!(s.lag, Some(7));
        assert_eq!((s.events_applied, s.events_duplicate), (3, 1));
        assert!(!t.due());
    }
}
