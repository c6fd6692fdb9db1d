//! The profile and catalog store, behind one trait with two implementations:
//! Redis (production) and redb under `--data-dir` (embedded mode).
//!
//! Per-user data is keyed by `site/user` (in Redis inside a `{…}` hash tag, so a
//! user's keys share a Redis Cluster slot and one script can update them).

pub mod cached;
pub mod embedded;
pub mod profile_event;
pub mod redis;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use attune_core::rail::{self, Ranker};
use attune_core::{DecayedScore, HalfLife};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Impressions and clicks of served items, per (ranker, position bucket),
/// each event counted once by the consumers (`consume::rails`).
pub type RailCounts = BTreeMap<(Ranker, &'static str), RailCount>;

/// One ranker's count at one position.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RailCount {
    /// Impressions (≥ 50 % visible for ≥ 1 s).
    pub shown: u64,
    /// Clicks.
    pub clicked: u64,
}

/// What a served item's event adds to its rail's counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RailOutcome {
    /// An impression.
    Shown,
    /// A click.
    Clicked,
}

/// The stored name of one rail count: `<ranker>|<position bucket>|<shown or
/// clicked>`, every part from a closed set.
pub fn rail_field(ranker: Ranker, position: u8, outcome: RailOutcome) -> String {
    let what = match outcome {
        RailOutcome::Shown => "shown",
        RailOutcome::Clicked => "clicked",
    };
    format!(
        "{}|{}|{what}",
        ranker.as_str(),
        rail::position_bucket(position)
    )
}

/// Adds one stored field's value to `counts`; fields this build did not
/// write are ignored.
pub fn add_rail_field(counts: &mut RailCounts, field: &str, n: u64) {
    let mut parts = field.split('|');
    let (Some(ranker), Some(bucket), Some(what), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return;
    };
    let Some(ranker) = Ranker::ALL.into_iter().find(|r| r.as_str() == ranker) else {
        return;
    };
    let Some(bucket) = rail::position_buckets().find(|b| *b == bucket) else {
        return;
    };
    let count = counts.entry((ranker, bucket)).or_default();
    match what {
        "shown" => count.shown += n,
        "clicked" => count.clicked += n,
        _ => {}
    }
}

/// A backend failure; the request may be retried.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

impl From<::redis::RedisError> for StoreError {
    fn from(e: ::redis::RedisError) -> Self {
        StoreError(format!("Redis: {e}"))
    }
}

use crate::experiments::definition::Experiment;
use crate::experiments::{Exposure, UnitCounters};
use crate::ledger::{Counts, Minute};
pub use crate::model::covisit::CovisitRows;
use crate::model::validation::ValidationSummary;

/// Result of store calls.
pub type StoreResult<T> = Result<T, StoreError>;

/// A catalog item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Item {
    /// Item id (printable ASCII, no spaces or `/`, ≤ 128 bytes).
    pub id: String,
    /// Categories and tags (≤ 32, each 1–64 bytes).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Publish time, Unix milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_at_ms: Option<i64>,
    /// Length in words: how long reading it takes (a dwell counts as a read
    /// from half of that; see attune-core's `FeedbackWeights::is_read`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length_words: Option<u32>,
    /// Anything the site wants back with recommendations (title, URL…), ≤ 4 KiB as JSON.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub metadata: serde_json::Value,
}

/// Static attributes of a user (demographics, locale), set by the site.
pub type Attributes = BTreeMap<String, String>;

/// What the origin knows about one user.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Profile {
    /// Site-stated attributes.
    pub attributes: Attributes,
    /// Events per kind (written by the stream consumers).
    pub counts: BTreeMap<String, u64>,
    /// First interaction, Unix ms.
    pub first_seen_ms: Option<i64>,
    /// Last interaction, Unix ms.
    pub last_seen_ms: Option<i64>,
    /// Total visible dwell, ms.
    pub dwell_ms_total: u64,
    /// Deepest scroll per item, percent.
    pub max_scroll: BTreeMap<String, u8>,
    /// Decayed interest per category/tag, valued now.
    pub affinities: BTreeMap<String, f64>,
    /// Device class, browser and OS of the latest event, from the User-Agent.
    pub device: BTreeMap<String, String>,
}

/// What the model knows of one user.
#[derive(Debug, Clone, Default)]
pub struct UserModel {
    /// Factors, once the user has interacted.
    pub vector: Option<Vec<f32>>,
    /// Items clicked or read: not recommended again.
    pub consumed: HashSet<String>,
    /// Decayed interest per category/tag, valued now.
    pub affinities: HashMap<String, f64>,
    /// The items engaged with last, distinct, newest first (co-visitation's window).
    pub recent: Vec<String>,
}

/// What one stream consumer reports about itself (for the dashboard), a few
/// times a second.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ConsumerStats {
    /// The consumer process (`host-pid`).
    pub member: String,
    /// When it reported, Unix ms.
    pub updated_at_ms: i64,
    /// Messages behind the log end, summed over its partitions, where the
    /// consumer knows it (embedded mode; on Kafka see `Dashboard.consumer_lag`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<i64>,
    /// Lag per `topic/partition` (embedded mode).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub lag_by_partition: BTreeMap<String, i64>,
    /// Receipt at the origin → profile updated, over the last minute, ms.
    pub freshness_p50_ms: Option<f64>,
    /// 99th percentile of the same.
    pub freshness_p99_ms: Option<f64>,
    /// Events applied (new) since the process started.
    pub events_applied: u64,
    /// Events skipped as already applied (retries, replays).
    pub events_duplicate: u64,
    /// The online model's live validation (`model::validation`), once it
    /// evaluated anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<ValidationSummary>,
    /// The model version it trains and validates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_version: Option<u32>,
}

/// Consumer reports older than this are from consumers that stopped.
pub const CONSUMER_STATS_MAX_AGE_MS: i64 = 10_000;

/// What ingest needs to know about the sender, in one round trip.
#[derive(Debug, Clone, Default)]
pub struct IngestContext {
    /// The user asked to be forgotten; their events are ignored.
    pub forgotten: bool,
    /// Attributes to copy into each event.
    pub attributes: Attributes,
}

/// Catalog, popularity and user data.
#[async_trait]
pub trait Store: Send + Sync {
    /// Answers when reachable.
    async fn ping(&self) -> StoreResult<()>;
    /// Inserts or replaces items.
    async fn upsert_items(&self, site: &str, items: &[Item]) -> StoreResult<()>;
    /// Every item of a site.
    async fn items(&self, site: &str) -> StoreResult<Vec<Item>>;
    /// Decayed popularity per item of a scope (a site, or `site~segment`;
    /// credited by the consumers, once per event).
    async fn popularity(&self, scope: &str) -> StoreResult<HashMap<String, DecayedScore>>;
    /// Replaces a user's attributes.
    async fn set_attributes(&self, site: &str, user: &str, attrs: &Attributes) -> StoreResult<()>;
    /// Whether the user is forgotten, and their attributes.
    async fn ingest_context(&self, site: &str, user: &str) -> StoreResult<IngestContext>;
    /// A user's profile, affinities valued now with `half_life`.
    async fn profile(&self, site: &str, user: &str, half_life: HalfLife) -> StoreResult<Profile>;
    /// The user's model factors (if the consumers have learned any) and the
    /// items they consumed (clicked or read).
    async fn user_model(
        &self,
        site: &str,
        user: &str,
        half_life: HalfLife,
    ) -> StoreResult<UserModel>;
    /// Every item's model factors.
    async fn item_vectors(&self, site: &str) -> StoreResult<Arc<HashMap<String, Vec<f32>>>>;
    /// Every item's co-visitation norm (`crate::model::covisit`).
    async fn covisit_norms(&self, site: &str) -> StoreResult<Arc<HashMap<String, f64>>>;
    /// The co-visitation rows of `items` (item → other item → count).
    async fn covisit_rows(&self, site: &str, items: &[String]) -> StoreResult<CovisitRows>;
    /// Deletes everything about a user and ignores their later events.
    async fn forget_user(&self, site: &str, user: &str) -> StoreResult<()>;
    /// What the running consumers last reported (the embedded one too).
    async fn consumer_stats(&self) -> StoreResult<Vec<ConsumerStats>>;
    /// The model versions and which one serves.
    async fn model_registry(&self) -> StoreResult<crate::model::versions::Registry>;
    /// Moves the serving pointer to `registry`'s (its serving version and history).
    async fn set_model_pointer(
        &self,
        registry: &crate::model::versions::Registry,
    ) -> StoreResult<()>;
    /// The site's served rails: impressions and clicks per ranker and position.
    async fn rail_counts(&self, site: &str) -> StoreResult<RailCounts>;
    /// A site's experiments, by key.
    async fn experiments(&self, site: &str) -> StoreResult<Vec<Experiment>>;
    /// Inserts or replaces an experiment.
    async fn put_experiment(&self, site: &str, experiment: &Experiment) -> StoreResult<()>;
    /// Keeps `exposure` unless its unit already has one for the experiment's
    /// phase (the first wins, so a replay or a second origin changes
    /// nothing) or is forgotten; whether it was kept.
    async fn record_exposure(&self, exposure: &Exposure) -> StoreResult<bool>;
    /// Every exposure of an experiment's phase.
    async fn exposures(&self, site: &str, key: &str, phase: u32) -> StoreResult<Vec<Exposure>>;
    /// What each of `users` has done, as their profiles count it now.
    async fn unit_counters(&self, site: &str, users: &[String]) -> StoreResult<Vec<UnitCounters>>;
    /// Adds ingest's counts to the reconciliation ledger ([`crate::ledger`]).
    async fn add_ledger(&self, counts: &Counts) -> StoreResult<()>;
    /// Every tier's ledger counts of `sites` for the minutes `from..to`.
    async fn ledger(&self, sites: &[String], minutes: Range<Minute>) -> StoreResult<Counts>;
}
