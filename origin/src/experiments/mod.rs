//! Experiments: which arm a unit is in comes from attune-core's
//! `experiments` (the same in every tier); this module holds what only the
//! origin needs, with no I/O.
//!
//! - [`definition`]: an experiment's variants, rankers, coverage, namespace
//!   and phases, and the rules a definition keeps.
//! - [`stats`]: per-arm moments, the sample-ratio-mismatch check, fixed-horizon
//!   and always-valid (safe to peek) intervals, the plain-words decision.
//! - [`results`]: an experiment's exposures and its units' counters now
//!   turned into per-arm metrics, comparisons and a decision.

pub mod definition;
pub mod results;
pub mod stats;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What a unit has done on the site, as its profile counts it. An exposure
/// keeps the unit's counters as they were when it was first served
/// (its pre-exposure period, CUPED's covariate); its metrics in the
/// experiment are the counters now minus those.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UnitCounters {
    pub page_views: u64,
    pub clicks: u64,
    pub impressions: u64,
    pub dwell_ms: u64,
    /// Items read or clicked (the profile's consumed items).
    pub reads: u64,
    /// Sessions: runs of events with no gap over 30 minutes.
    #[serde(default)]
    pub sessions: u64,
    /// Clicks on interleaved rails' items placed by the first ranking.
    #[serde(default)]
    pub credit_a: u64,
    /// … and by the second.
    #[serde(default)]
    pub credit_b: u64,
}

impl UnitCounters {
    /// What happened since `before` (counters never go down, but a
    /// forgotten and returning unit starts again from zero).
    pub fn since(&self, before: &UnitCounters) -> UnitCounters {
        UnitCounters {
            page_views: self.page_views.saturating_sub(before.page_views),
            clicks: self.clicks.saturating_sub(before.clicks),
            impressions: self.impressions.saturating_sub(before.impressions),
            dwell_ms: self.dwell_ms.saturating_sub(before.dwell_ms),
            reads: self.reads.saturating_sub(before.reads),
            sessions: self.sessions.saturating_sub(before.sessions),
            credit_a: self.credit_a.saturating_sub(before.credit_a),
            credit_b: self.credit_b.saturating_sub(before.credit_b),
        }
    }
}

/// The version of [`Exposure`] records this build writes and reads.
pub const EXPOSURE_VERSION: u32 = 1;

/// A unit was served a rail by an experiment's arm: the record on the
/// `attune.exposures` topic (JSON, keyed `site/unit`) and what the store
/// keeps, the first one per (unit, experiment, phase).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Exposure {
    /// Record version; readers refuse others.
    pub v: u32,
    pub site: String,
    pub experiment: String,
    pub phase: u32,
    pub unit: String,
    /// The arm's index in the experiment's variants.
    pub arm: u32,
    /// When the rail was served, Unix ms.
    pub at_ms: i64,
    /// The unit's counters before it.
    pub baseline: UnitCounters,
}
