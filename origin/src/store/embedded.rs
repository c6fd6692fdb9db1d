//! The embedded store: one redb file under `--data-dir`, for a single machine
//! with nothing else installed. Same behaviour as the Redis store; profiles
//! are written by the embedded consumer (`consume::embedded`) with the same
//! rules as the Redis profile script ([`StoredProfile::apply`]).
// redb's error type is large; it only travels to the edge of this module.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use attune_core::{DecayedScore, HalfLife};
use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::profile_event::{ProfileEvent, SESSION_GAP_MS};
use crate::clock::now_ms;
use crate::experiments::definition::Experiment;
use crate::experiments::{Exposure, UnitCounters};
use crate::ledger::{Counts, Minute};
use crate::model::covisit::{self, CovisitConfig};
use crate::model::unpack_any;
use crate::model::versions::{versioned, Registry};

use super::{
    add_rail_field, Attributes, ConsumerStats, CovisitRows, IngestContext, Item, Profile,
    RailCounts, Store, StoreError, StoreResult, UserModel,
};

/// (site, item) → item JSON.
pub const ITEMS: TableDefinition<(&str, &str), &str> = TableDefinition::new("items");
/// (scope, item) → (value, at_ms): decayed popularity of a site or
/// `site~segment` (credited by the embedded consumer).
pub const POPULARITY: TableDefinition<(&str, &str), (f64, i64)> =
    TableDefinition::new("popularity");
/// (site, user) → attributes JSON.
const ATTRIBUTES: TableDefinition<(&str, &str), &str> = TableDefinition::new("attributes");
/// (site, user) → [`StoredProfile`] JSON (written by the embedded consumer).
pub const PROFILES: TableDefinition<(&str, &str), &str> = TableDefinition::new("profiles");
/// (site, user) → ().
pub const FORGOTTEN: TableDefinition<(&str, &str), ()> = TableDefinition::new("forgotten");
/// (`site/user`, event id) → event time: ids already applied, for deduplication.
pub const SEEN: TableDefinition<(&str, &str), i64> = TableDefinition::new("seen_events");
/// Topic → next offset the embedded consumer applies.
pub const POSITIONS: TableDefinition<&str, u64> = TableDefinition::new("consumer_positions");
/// (site, item, other item) → co-visit count (written by the embedded consumer).
pub const COVISIT: TableDefinition<(&str, &str, &str), f64> = TableDefinition::new("covisit");
/// (site, item) → co-visit norm.
pub const COVISIT_NORMS: TableDefinition<(&str, &str), f64> = TableDefinition::new("covisit_norms");
/// (topic, offset) → (reason, decoder message, the record's bytes): what the
/// embedded consumer could not apply (the Kafka consumers' dead-letter topic).
pub const DEAD_LETTERS: TableDefinition<(&str, u64), (&str, &str, &[u8])> =
    TableDefinition::new("dead_letters");
/// Consumer member → its latest [`ConsumerStats`] JSON.
pub const CONSUMER_STATS: TableDefinition<&str, &str> = TableDefinition::new("consumer_stats");
/// (site, `store::rail_field`) → served items' impressions or clicks.
pub const RAILS: TableDefinition<(&str, &str), u64> = TableDefinition::new("rails");

/// (site, user) → the user's factors (packed f32, `model::pack`).
pub const USER_VECTORS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("user_vectors");
/// (site, item) → the item's factors (packed f32).
pub const ITEM_VECTORS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("item_vectors");
/// The model versions' registry (`model::versions::Registry`), as JSON under
/// [`REGISTRY_KEY`]. A version N > 1 keeps its factors in the vector tables
/// under the site key `versions::versioned(site, N)`.
pub const MODEL_REGISTRY: TableDefinition<&str, &str> = TableDefinition::new("model_registry");
/// The registry's one key.
pub const REGISTRY_KEY: &str = "registry";
/// (versioned site, user) → events the version learned for the user.
pub const VERSION_STEPS: TableDefinition<(&str, &str), u64> = TableDefinition::new("version_steps");

/// The registry as stored (version 1 alone when none is).
pub fn registry_in(
    table: &impl ReadableTable<&'static str, &'static str>,
) -> Result<Registry, redb::Error> {
    Ok(table
        .get(REGISTRY_KEY)?
        .and_then(|v| serde_json::from_str(v.value()).ok())
        .unwrap_or_default())
}

/// (site, experiment key) → definition JSON.
const EXPERIMENTS: TableDefinition<(&str, &str), &str> = TableDefinition::new("experiments");
/// (site, `<key>:<phase>`, unit) → the unit's first exposure JSON in that phase.
const EXPOSURES: TableDefinition<(&str, &str, &str), &str> = TableDefinition::new("exposures");

/// An experiment phase's part of an [`EXPOSURES`] key.
fn phase_key(experiment: &str, phase: u32) -> String {
    format!("{experiment}:{phase}")
}

/// Rows of JSON as values; rows this build cannot read are left out.
fn parsed<T: serde::de::DeserializeOwned>(rows: &[String]) -> Vec<T> {
    rows.iter()
        .filter_map(|json| serde_json::from_str(json).ok())
        .collect()
}

/// Adds `weight` made at `t_ms` to `item`'s decayed popularity in `scope`
/// (inside the caller's transaction: the embedded consumer credits with the
/// event ids it records).
pub fn add_popularity(
    table: &mut redb::Table<(&str, &str), (f64, i64)>,
    scope: &str,
    item: &str,
    weight: f64,
    t_ms: i64,
    half_life: HalfLife,
) -> Result<(), redb::Error> {
    let mut score = table
        .get((scope, item))?
        .map(|v| {
            let (value, at_ms) = v.value();
            DecayedScore { value, at_ms }
        })
        .unwrap_or_default();
    score.add(weight, t_ms, half_life);
    table.insert((scope, item), (score.value, score.at_ms))?;
    Ok(())
}

/// Every item's factors of `site`.
pub fn site_item_vectors(
    table: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    site: &str,
) -> Result<HashMap<String, Vec<f32>>, redb::Error> {
    let mut out = HashMap::new();
    for row in table.range((site, "")..(site, "\u{10FFFF}"))? {
        let (k, v) = row?;
        if let Some(vector) = unpack_any(v.value()) {
            out.insert(k.value().1.to_owned(), vector);
        }
    }
    Ok(out)
}

/// A profile as stored: affinities as decayed `(value, at_ms)` pairs, valued
/// when read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StoredProfile {
    counts: BTreeMap<String, u64>,
    first_seen_ms: Option<i64>,
    last_seen_ms: Option<i64>,
    dwell_ms_total: u64,
    max_scroll: BTreeMap<String, u8>,
    affinities: BTreeMap<String, DecayedScore>,
    device: BTreeMap<String, String>,
    consumed: BTreeSet<String>,
    /// Sessions (`profile_event::SESSION_GAP_MS`).
    #[serde(default)]
    sessions: u64,
    /// Clicks on interleaved rails per ranking that placed the item (`a`, `b`).
    #[serde(default)]
    credits: BTreeMap<String, u64>,
    /// Co-visitation's window: distinct items, newest first.
    #[serde(default)]
    pub recent: Vec<String>,
}

impl StoredProfile {
    /// The counters an experiment measures.
    pub fn counters(&self) -> UnitCounters {
        let count = |kind: &str| self.counts.get(kind).copied().unwrap_or(0);
        UnitCounters {
            page_views: count("page_view"),
            clicks: count("click"),
            impressions: count("impression"),
            dwell_ms: self.dwell_ms_total,
            reads: self.consumed.len() as u64,
            sessions: self.sessions,
            credit_a: self.credits.get("a").copied().unwrap_or(0),
            credit_b: self.credits.get("b").copied().unwrap_or(0),
        }
    }

    /// Applies one event not applied before: the Redis profile script's rules.
    pub fn apply(&mut self, e: &ProfileEvent, half_life: HalfLife) {
        *self.counts.entry(e.kind.to_owned()).or_default() += 1;
        if let Some(team) = e.team {
            *self.credits.entry(team.to_owned()).or_default() += 1;
        }
        if self
            .last_seen_ms
            .is_none_or(|last| e.ts_ms > last + SESSION_GAP_MS)
        {
            self.sessions += 1;
        }
        self.first_seen_ms = Some(self.first_seen_ms.map_or(e.ts_ms, |f| f.min(e.ts_ms)));
        self.last_seen_ms = Some(self.last_seen_ms.map_or(e.ts_ms, |l| l.max(e.ts_ms)));
        self.dwell_ms_total += u64::from(e.dwell_ms.unwrap_or(0));
        if let (Some(dp), Some(item)) = (e.depth_pct, &e.item) {
            let deepest = self.max_scroll.entry(item.clone()).or_default();
            *deepest = (*deepest).max(dp);
        }
        for (field, value) in [
            ("device_class", e.device_class.map(str::to_owned)),
            ("browser", e.browser.clone()),
            ("os", e.os.clone()),
        ] {
            if let Some(v) = value {
                self.device.insert(field.to_owned(), v);
            }
        }
        if e.weight != 0.0 {
            for tag in &e.tags {
                self.affinities
                    .entry(tag.clone())
                    .or_default()
                    .add(e.weight, e.ts_ms, half_life);
            }
        }
        let through = |item: &String| {
            e.read_through
                .is_some_and(|pct| self.max_scroll.get(item).is_some_and(|d| *d >= pct))
        };
        if let Some(item) = e
            .item
            .as_ref()
            .filter(|i| e.kind == "click" || e.read || through(i))
        {
            self.consumed.insert(item.clone());
        }
        if let Some(item) = e.item.as_deref().filter(|_| e.weight > 0.0) {
            covisit::push(&mut self.recent, item, CovisitConfig::default().window);
        }
    }

    /// The API's view, affinities valued at `now_ms`.
    pub fn profile(&self, now_ms: i64, half_life: HalfLife) -> Profile {
        Profile {
            attributes: Attributes::new(),
            counts: self.counts.clone(),
            first_seen_ms: self.first_seen_ms,
            last_seen_ms: self.last_seen_ms,
            dwell_ms_total: self.dwell_ms_total,
            max_scroll: self.max_scroll.clone(),
            affinities: self.affinity_values(now_ms, half_life).collect(),
            device: self.device.clone(),
        }
    }

    /// What ranking reads of this profile (no factors: `vector` is the caller's).
    pub fn user_model(
        &self,
        vector: Option<Vec<f32>>,
        now_ms: i64,
        half_life: HalfLife,
    ) -> UserModel {
        UserModel {
            vector,
            affinities: self.affinity_values(now_ms, half_life).collect(),
            consumed: self.consumed.iter().cloned().collect(),
            recent: self.recent.clone(),
        }
    }

    fn affinity_values(
        &self,
        now_ms: i64,
        half_life: HalfLife,
    ) -> impl Iterator<Item = (String, f64)> + '_ {
        self.affinities
            .iter()
            .map(move |(tag, s)| (tag.clone(), s.value_at(now_ms, half_life)))
    }
}

/// A user's stored profile (empty if none).
fn stored_profile(
    tx: &redb::ReadTransaction,
    site: &str,
    user: &str,
) -> Result<StoredProfile, redb::Error> {
    Ok(tx
        .open_table(PROFILES)?
        .get((site, user))?
        .and_then(|v| serde_json::from_str(v.value()).ok())
        .unwrap_or_default())
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(format!("embedded store: {e}"))
}

/// redb behind `spawn_blocking` (its calls block on disk).
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
}

impl EmbeddedStore {
    /// Uses an open database (shared with the embedded event log).
    pub fn new(db: Arc<Database>) -> StoreResult<Self> {
        let tx = db.begin_write().map_err(err)?;
        // Create the tables so that reads before the first write succeed.
        tx.open_table(ITEMS).map_err(err)?;
        tx.open_table(POPULARITY).map_err(err)?;
        tx.open_table(ATTRIBUTES).map_err(err)?;
        tx.open_table(PROFILES).map_err(err)?;
        tx.open_table(FORGOTTEN).map_err(err)?;
        tx.open_table(SEEN).map_err(err)?;
        tx.open_table(POSITIONS).map_err(err)?;
        tx.open_table(CONSUMER_STATS).map_err(err)?;
        tx.open_table(RAILS).map_err(err)?;
        tx.open_table(COVISIT).map_err(err)?;
        tx.open_table(COVISIT_NORMS).map_err(err)?;
        tx.open_table(EXPERIMENTS).map_err(err)?;
        tx.open_table(EXPOSURES).map_err(err)?;
        tx.open_table(USER_VECTORS).map_err(err)?;
        tx.open_table(ITEM_VECTORS).map_err(err)?;
        tx.open_table(MODEL_REGISTRY).map_err(err)?;
        tx.open_table(VERSION_STEPS).map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(EmbeddedStore { db })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, redb::Error> + Send + 'static,
    ) -> StoreResult<T> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(err)?
            .map_err(err)
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn ping(&self) -> StoreResult<()> {
        self.blocking(|db| db.begin_read().map(|_| ()).map_err(Into::into))
            .await
    }

    async fn upsert_items(&self, site: &str, items: &[Item]) -> StoreResult<()> {
        let site = site.to_owned();
        let rows: Vec<(String, String)> = items
            .iter()
            .map(|i| {
                (
                    i.id.clone(),
                    serde_json::to_string(i).expect("items serialize"),
                )
            })
            .collect();
        self.blocking(move |db| {
            let tx = db.begin_write()?;
            {
                let mut t = tx.open_table(ITEMS)?;
                for (id, json) in &rows {
                    t.insert((site.as_str(), id.as_str()), json.as_str())?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn items(&self, site: &str) -> StoreResult<Vec<Item>> {
        let site = site.to_owned();
        let rows = self
            .blocking(move |db| {
                let t = db.begin_read()?.open_table(ITEMS)?;
                let mut out = Vec::new();
                for row in t.range((site.as_str(), "")..)? {
                    let (k, v) = row?;
                    if k.value().0 != site {
                        break;
                    }
                    out.push(v.value().to_owned());
                }
                Ok(out)
            })
            .await?;
        rows.iter()
            .map(|json| serde_json::from_str(json).map_err(err))
            .collect()
    }

    async fn popularity(&self, scope: &str) -> StoreResult<HashMap<String, DecayedScore>> {
        let scope = scope.to_owned();
        self.blocking(move |db| {
            let t = db.begin_read()?.open_table(POPULARITY)?;
            let mut out = HashMap::new();
            for row in t.range((scope.as_str(), "")..)? {
                let (k, v) = row?;
                let (row_scope, item) = k.value();
                if row_scope != scope {
                    break;
                }
                let (value, at_ms) = v.value();
                out.insert(item.to_owned(), DecayedScore { value, at_ms });
            }
            Ok(out)
        })
        .await
    }

    async fn set_attributes(&self, site: &str, user: &str, attrs: &Attributes) -> StoreResult<()> {
        let (site, user) = (site.to_owned(), user.to_owned());
        let json = serde_json::to_string(attrs).expect("attributes serialize");
        self.blocking(move |db| {
            let tx = db.begin_write()?;
            tx.open_table(ATTRIBUTES)?
                .insert((site.as_str(), user.as_str()), json.as_str())?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn ingest_context(&self, site: &str, user: &str) -> StoreResult<IngestContext> {
        let (site, user) = (site.to_owned(), user.to_owned());
        let (forgotten, attrs) = self
            .blocking(move |db| {
                let tx = db.begin_read()?;
                let key = (site.as_str(), user.as_str());
                let forgotten = tx.open_table(FORGOTTEN)?.get(key)?.is_some();
                let attrs = tx
                    .open_table(ATTRIBUTES)?
                    .get(key)?
                    .map(|v| v.value().to_owned());
                Ok((forgotten, attrs))
            })
            .await?;
        Ok(IngestContext {
            forgotten,
            attributes: match attrs {
                Some(json) => serde_json::from_str(&json).map_err(err)?,
                None => Attributes::new(),
            },
        })
    }

    async fn profile(&self, site: &str, user: &str, half_life: HalfLife) -> StoreResult<Profile> {
        let (site, user) = (site.to_owned(), user.to_owned());
        let (attrs, stored) = self
            .blocking(move |db| {
                let tx = db.begin_read()?;
                let attrs = tx
                    .open_table(ATTRIBUTES)?
                    .get((site.as_str(), user.as_str()))?
                    .map(|v| v.value().to_owned());
                Ok((attrs, stored_profile(&tx, &site, &user)?))
            })
            .await?;
        let mut p = stored.profile(now_ms(), half_life);
        if let Some(json) = attrs {
            p.attributes = serde_json::from_str(&json).map_err(err)?;
        }
        Ok(p)
    }

    /// No factors in embedded mode: co-visitation, the person's consumed items
    /// and category interest, with popularity, rank.
    async fn user_model(
        &self,
        site: &str,
        user: &str,
        half_life: HalfLife,
    ) -> StoreResult<UserModel> {
        let (site, user) = (site.to_owned(), user.to_owned());
        let (stored, vector) = self
            .blocking(move |db| {
                let tx = db.begin_read()?;
                let serving = registry_in(&tx.open_table(MODEL_REGISTRY)?)?.serving;
                let vsite = versioned(&site, serving);
                let vector = tx
                    .open_table(USER_VECTORS)?
                    .get((vsite.as_str(), user.as_str()))?
                    .and_then(|v| unpack_any(v.value()));
                Ok((stored_profile(&tx, &site, &user)?, vector))
            })
            .await?;
        Ok(stored.user_model(vector, now_ms(), half_life))
    }

    async fn item_vectors(&self, site: &str) -> StoreResult<Arc<HashMap<String, Vec<f32>>>> {
        let site = site.to_owned();
        let vectors = self
            .blocking(move |db| {
                let tx = db.begin_read()?;
                let serving = registry_in(&tx.open_table(MODEL_REGISTRY)?)?.serving;
                site_item_vectors(&tx.open_table(ITEM_VECTORS)?, &versioned(&site, serving))
            })
            .await?;
        Ok(Arc::new(vectors))
    }

    async fn covisit_norms(&self, site: &str) -> StoreResult<Arc<HashMap<String, f64>>> {
        let site = site.to_owned();
        let norms = self
            .blocking(move |db| {
                let t = db.begin_read()?.open_table(COVISIT_NORMS)?;
                let mut out = HashMap::new();
                for row in t.range((site.as_str(), "")..(site.as_str(), "\u{10FFFF}"))? {
                    let (k, v) = row?;
                    out.insert(k.value().1.to_owned(), v.value());
                }
                Ok(out)
            })
            .await?;
        Ok(Arc::new(norms))
    }

    async fn covisit_rows(&self, site: &str, items: &[String]) -> StoreResult<CovisitRows> {
        let (site, items) = (site.to_owned(), items.to_vec());
        self.blocking(move |db| {
            let t = db.begin_read()?.open_table(COVISIT)?;
            let mut out = CovisitRows::new();
            for item in &items {
                let (s, i) = (site.as_str(), item.as_str());
                let mut row = HashMap::new();
                for cell in t.range((s, i, "")..(s, i, "\u{10FFFF}"))? {
                    let (k, v) = cell?;
                    row.insert(k.value().2.to_owned(), v.value());
                }
                out.insert(item.clone(), row);
            }
            Ok(out)
        })
        .await
    }

    async fn forget_user(&self, site: &str, user: &str) -> StoreResult<()> {
        let (site, user) = (site.to_owned(), user.to_owned());
        self.blocking(move |db| {
            let tx = db.begin_write()?;
            let key = (site.as_str(), user.as_str());
            tx.open_table(FORGOTTEN)?.insert(key, ())?;
            tx.open_table(ATTRIBUTES)?.remove(key)?;
            tx.open_table(PROFILES)?.remove(key)?;
            let versions = registry_in(&tx.open_table(MODEL_REGISTRY)?)?.versions;
            let (mut vectors, mut steps) =
                (tx.open_table(USER_VECTORS)?, tx.open_table(VERSION_STEPS)?);
            for v in versions {
                let vsite = versioned(&site, v.version);
                vectors.remove((vsite.as_str(), user.as_str()))?;
                steps.remove((vsite.as_str(), user.as_str()))?;
            }
            drop((vectors, steps));
            let mut phases = Vec::new();
            for row in tx
                .open_table(EXPERIMENTS)?
                .range((site.as_str(), "")..(site.as_str(), "\u{10FFFF}"))?
            {
                if let Ok(e) = serde_json::from_str::<Experiment>(row?.1.value()) {
                    phases.extend((1..=e.phase).map(|p| phase_key(&e.key, p)));
                }
            }
            let mut exposures = tx.open_table(EXPOSURES)?;
            for phase in &phases {
                exposures.remove((site.as_str(), phase.as_str(), user.as_str()))?;
            }
            drop(exposures);
            let seen_key = format!("{site}/{user}");
            tx.open_table(SEEN)?.retain_in(
                (seen_key.as_str(), "")..(seen_key.as_str(), "\u{10FFFF}"),
                |_, _| false,
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn model_registry(&self) -> StoreResult<Registry> {
        self.blocking(|db| registry_in(&db.begin_read()?.open_table(MODEL_REGISTRY)?))
            .await
    }

    /// Every version in the registry learns every event (the embedded
    /// consumer trains them all), so the pointer moves at once.
    async fn set_model_pointer(&self, registry: &Registry) -> StoreResult<()> {
        let (serving, history) = (registry.serving, registry.history.clone());
        self.blocking(move |db| {
            let tx = db.begin_write()?;
            {
                let mut table = tx.open_table(MODEL_REGISTRY)?;
                let mut stored = registry_in(&table)?;
                stored.serving = serving;
                stored.history = history;
                let json = serde_json::to_string(&stored).expect("serializes");
                table.insert(REGISTRY_KEY, json.as_str())?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn consumer_stats(&self) -> StoreResult<Vec<ConsumerStats>> {
        let rows = self
            .blocking(|db| {
                let t = db.begin_read()?.open_table(CONSUMER_STATS)?;
                let mut out = Vec::new();
                for row in t.iter()? {
                    out.push(row?.1.value().to_owned());
                }
                Ok(out)
            })
            .await?;
        let now = now_ms();
        Ok(rows
            .iter()
            .filter_map(|json| serde_json::from_str::<ConsumerStats>(json).ok())
            .filter(|s| now - s.updated_at_ms < super::CONSUMER_STATS_MAX_AGE_MS)
            .collect())
    }

    async fn rail_counts(&self, site: &str) -> StoreResult<RailCounts> {
        let site = site.to_owned();
        self.blocking(move |db| {
            let t = db.begin_read()?.open_table(RAILS)?;
            let mut counts = RailCounts::new();
            for row in t.range((site.as_str(), "")..)? {
                let (k, v) = row?;
                let (row_site, field) = k.value();
                if row_site != site {
                    break;
                }
                add_rail_field(&mut counts, field, v.value());
            }
            Ok(counts)
        })
        .await
    }

    async fn experiments(&self, site: &str) -> StoreResult<Vec<Experiment>> {
        let site = site.to_owned();
        let rows = self
            .blocking(move |db| {
                let t = db.begin_read()?.open_table(EXPERIMENTS)?;
                let mut out = Vec::new();
                for row in t.range((site.as_str(), "")..(site.as_str(), "\u{10FFFF}"))? {
                    out.push(row?.1.value().to_owned());
                }
                Ok(out)
            })
            .await?;
        Ok(parsed(&rows))
    }

    async fn put_experiment(&self, site: &str, experiment: &Experiment) -> StoreResult<()> {
        let (site, key) = (site.to_owned(), experiment.key.clone());
        let json = serde_json::to_string(experiment).map_err(err)?;
        self.blocking(move |db| {
            let tx = db.begin_write()?;
            tx.open_table(EXPERIMENTS)?
                .insert((site.as_str(), key.as_str()), json.as_str())?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// The redb commit is the exposure's durable log in embedded mode.
    async fn record_exposure(&self, exposure: &Exposure) -> StoreResult<bool> {
        let e = exposure.clone();
        let json = serde_json::to_string(exposure).map_err(err)?;
        self.blocking(move |db| {
            let tx = db.begin_write()?;
            let phase = phase_key(&e.experiment, e.phase);
            let key = (e.site.as_str(), phase.as_str(), e.unit.as_str());
            let forgotten = tx
                .open_table(FORGOTTEN)?
                .get((e.site.as_str(), e.unit.as_str()))?
                .is_some();
            let mut table = tx.open_table(EXPOSURES)?;
            let kept = !forgotten && table.get(key)?.is_none();
            if kept {
                table.insert(key, json.as_str())?;
            }
            drop(table);
            tx.commit()?;
            Ok(kept)
        })
        .await
    }

    async fn exposures(&self, site: &str, key: &str, phase: u32) -> StoreResult<Vec<Exposure>> {
        let (site, phase) = (site.to_owned(), phase_key(key, phase));
        let rows = self
            .blocking(move |db| {
                let t = db.begin_read()?.open_table(EXPOSURES)?;
                let (s, p) = (site.as_str(), phase.as_str());
                let mut out = Vec::new();
                for row in t.range((s, p, "")..(s, p, "\u{10FFFF}"))? {
                    out.push(row?.1.value().to_owned());
                }
                Ok(out)
            })
            .await?;
        Ok(parsed(&rows))
    }

    async fn unit_counters(&self, site: &str, users: &[String]) -> StoreResult<Vec<UnitCounters>> {
        let (site, users) = (site.to_owned(), users.to_vec());
        self.blocking(move |db| {
            let tx = db.begin_read()?;
            users
                .iter()
                .map(|u| Ok(stored_profile(&tx, &site, u)?.counters()))
                .collect()
        })
        .await
    }

    /// The embedded log and its consumer commit in one redb database, the
    /// consumer's position with its writes: no tier lies between them where
    /// an event could be lost, so there is no ledger to keep.
    async fn add_ledger(&self, _counts: &Counts) -> StoreResult<()> {
        Ok(())
    }

    async fn ledger(&self, _sites: &[String], _minutes: Range<Minute>) -> StoreResult<Counts> {
        Err(StoreError(
            "the embedded backend keeps no reconciliation ledger: its log and consumer \
             commit together in one database; `attune-origin audit` needs KAFKA_BROKERS and REDIS_URL"
                .into(),
        ))
    }
}
