//! The embedded consumer: in the origin process of the single-machine mode, it
//! applies the embedded event log to the profiles in the same redb file. A
//! topic's read position, the event ids seen and the profile changes commit in
//! one redb transaction, so a crash or restart applies nothing twice and skips
//! nothing. Co-visitation and popularity (site-wide and per segment) are
//! learned here in the same transaction, and so are the online model's
//! factors — the same steps as the Redis trainer (`model::online`), with
//! the same live validation before each sampled engagement is learned.
//!
//! Every model version in the registry learns every event, in the same
//! transaction: a retrain ([`retrain`]) runs between rounds and fits the
//! log up to the consumer's positions, so a new version is never behind,
//! and promotion or rollback is a pointer move. The newest
//! [`LIVE_VERSIONS`] are kept (older ones, not serving, are dropped).
// redb's error type is large; it only travels to the edge of this module.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use attune_core::routing::topics;
use attune_core::HalfLife;
use redb::{Database, ReadableTable};
use tokio::sync::watch;

use super::apply::{by_user, CatalogFacts, Incoming};
use super::popularity::credit_of;
use super::rails;
use super::retrain::{fit, lessons, lessons_per_user, register, Outcome, Search};
use super::stats::{SharedLag, StatsTracker};
use crate::config::SiteWeights;
use crate::event_log::embedded::{read_topic, LOG};
use crate::model::covisit::{self, CovisitConfig};
use crate::model::online::{age_weighted, expose, learn_factors, NegativePool};
use crate::model::validation::Validator;
use crate::model::versions::{versioned, Registry};
use crate::model::{initial, pack, unpack, MfConfig};
use crate::record::EventRecord;
use crate::store::embedded::{
    add_popularity, registry_in, site_item_vectors, StoredProfile, CONSUMER_STATS, COVISIT,
    COVISIT_NORMS, DEAD_LETTERS, FORGOTTEN, ITEM_VECTORS, MODEL_REGISTRY, POPULARITY, POSITIONS,
    PROFILES, RAILS, REGISTRY_KEY, SEEN, USER_VECTORS, VERSION_STEPS,
};
use crate::store::Item;

/// The decay of what the embedded consumer writes.
#[derive(Debug, Clone, Copy)]
pub struct HalfLives {
    /// The profiles' tag affinities.
    pub affinity: HalfLife,
    /// Item popularity.
    pub popularity: HalfLife,
}

/// The online model's state that lives between rounds: the versions it
/// trains, the negatives' pools and the live validation.
pub struct Learner {
    cfg: MfConfig,
    /// The registry as the last round read it.
    registry: Registry,
    negatives: HashMap<String, NegativePool>,
    /// This round's positives, `(site, item)`, remembered by the pools at
    /// its end: every draw of a round sees the pools as the round began, as
    /// the Redis trainer's draws see them at its batch's start.
    positives: Vec<(String, String)>,
    validation_rate: f64,
    /// Live validation (`model::validation`) of each version while it served.
    validators: HashMap<u32, Validator>,
}

impl Learner {
    /// A learner with `cfg`, validating a `validation_rate` share.
    pub fn new(cfg: MfConfig, validation_rate: f64) -> Self {
        Learner {
            cfg,
            registry: Registry::default(),
            negatives: HashMap::new(),
            positives: Vec::new(),
            validation_rate,
            validators: HashMap::new(),
        }
    }

    /// The serving version and its live validation.
    pub fn validator(&mut self) -> (u32, &Validator) {
        let v = self.registry.serving;
        (v, self.serving_validator())
    }

    fn serving_validator(&mut self) -> &mut Validator {
        let rate = self.validation_rate;
        self.validators
            .entry(self.registry.serving)
            .or_insert_with(|| Validator::new(rate))
    }

    /// The pools remember this round's positives.
    fn end_round(&mut self) {
        for (site, item) in std::mem::take(&mut self.positives) {
            self.pool(&site).record(&item);
        }
    }

    fn pool(&mut self, site: &str) -> &mut NegativePool {
        self.negatives
            .entry(site.to_owned())
            .or_insert_with(|| NegativePool::for_site(site))
    }
}

/// Item factors read in one transaction, changed in memory and written back
/// at its end. A site is read whole only when validation ranks among it.
#[derive(Default)]
struct ItemFactors {
    sites: HashMap<String, HashMap<String, Vec<f32>>>,
    whole: std::collections::HashSet<String>,
    changed: std::collections::BTreeSet<(String, String)>,
}

impl ItemFactors {
    /// Makes sure `items` of `site` are in memory (read, or at their start
    /// point); the caller marks what it changes.
    fn load(
        &mut self,
        table: &redb::Table<(&str, &str), &[u8]>,
        site: &str,
        items: &[&str],
        dim: usize,
    ) -> Result<(), redb::Error> {
        let vectors = self.sites.entry(site.to_owned()).or_default();
        for &item in items {
            if vectors.contains_key(item) {
                continue;
            }
            let v = table
                .get((site, item))?
                .and_then(|v| unpack(v.value(), dim))
                .unwrap_or_else(|| initial(&format!("{site}/{item}"), dim));
            vectors.insert(item.to_owned(), v);
        }
        Ok(())
    }

    /// Every item of `site`, as validation ranks among them.
    fn whole_site(
        &mut self,
        table: &redb::Table<(&str, &str), &[u8]>,
        site: &str,
    ) -> Result<&HashMap<String, Vec<f32>>, redb::Error> {
        if self.whole.insert(site.to_owned()) {
            let stored = site_item_vectors(table, site)?;
            let vectors = self.sites.entry(site.to_owned()).or_default();
            for (item, v) in stored {
                vectors.entry(item).or_insert(v);
            }
        }
        Ok(&self.sites[site])
    }

    fn write(&self, table: &mut redb::Table<(&str, &str), &[u8]>) -> Result<(), redb::Error> {
        for (site, item) in &self.changed {
            let v = &self.sites[site][item];
            table.insert((site.as_str(), item.as_str()), pack(v).as_slice())?;
        }
        Ok(())
    }
}

/// Most records applied per transaction.
const BATCH: usize = 500;

/// What one round did.
#[derive(Debug, Default, PartialEq)]
pub struct Round {
    /// Records read (decodable or not).
    pub read: usize,
    /// Events applied for the first time.
    pub applied: u64,
    /// Events skipped: already applied (same id) or of a forgotten user.
    pub skipped: u64,
    /// Records that did not decode, kept in the dead-letter table.
    pub dead_lettered: u64,
    /// Receipt times of the events read, for freshness.
    pub received_at_ms: Vec<i64>,
}

/// Applies up to [`BATCH`] records of each topic past its position, in one
/// transaction per topic.
pub fn apply_pending(
    db: &Database,
    half_lives: HalfLives,
    weights: &SiteWeights,
    learner: &mut Learner,
) -> Result<Round, redb::Error> {
    let mut round = Round::default();
    for topic in topics() {
        let from = db
            .begin_read()?
            .open_table(POSITIONS)?
            .get(topic)?
            .map_or(0, |v| v.value());
        let mut rows = read_topic(db, topic, from)?;
        rows.truncate(BATCH);
        let Some(&(last, _, _)) = rows.last() else {
            continue;
        };
        let mut dead = Vec::new();
        let incoming: Vec<Incoming> = rows
            .into_iter()
            .filter_map(|(offset, _, payload)| {
                round.read += 1;
                match EventRecord::decode(&payload) {
                    Ok(record) => Some(Incoming {
                        topic: topic.to_owned(),
                        partition: 0,
                        offset: offset as i64,
                        record,
                    }),
                    Err(e) => {
                        tracing::warn!(%topic, offset, "record dead-lettered: {e}");
                        dead.push((offset, e.reason(), e.to_string(), payload));
                        None
                    }
                }
            })
            .collect();
        round
            .received_at_ms
            .extend(incoming.iter().map(|i| i.record.received_at_ms));
        let facts = catalog_facts(db, &incoming)?;
        let groups = by_user(&incoming, weights, &mut |site, item| {
            facts
                .get(&(site.to_owned(), item.to_owned()))
                .cloned()
                .unwrap_or_default()
        });

        let covisit_cfg = CovisitConfig::default();
        let tx = db.begin_write()?;
        {
            let forgotten = tx.open_table(FORGOTTEN)?;
            let mut profiles = tx.open_table(PROFILES)?;
            let mut seen = tx.open_table(SEEN)?;
            let mut covisits = tx.open_table(COVISIT)?;
            let mut norms = tx.open_table(COVISIT_NORMS)?;
            let mut popularity = tx.open_table(POPULARITY)?;
            let mut rail_counts = tx.open_table(RAILS)?;
            let mut user_vectors = tx.open_table(USER_VECTORS)?;
            let mut item_table = tx.open_table(ITEM_VECTORS)?;
            let mut version_steps = tx.open_table(VERSION_STEPS)?;
            learner.registry = registry_in(&tx.open_table(MODEL_REGISTRY)?)?;
            let mut factors = ItemFactors::default();
            let now = crate::clock::now_ms();
            for ((site, user), events) in &groups {
                if forgotten.get((site.as_str(), user.as_str()))?.is_some() {
                    round.skipped += events.len() as u64;
                    continue;
                }
                let mut profile: StoredProfile = profiles
                    .get((site.as_str(), user.as_str()))?
                    .and_then(|v| serde_json::from_str(v.value()).ok())
                    .unwrap_or_default();
                let dim = learner.cfg.dim;
                let key = (site.as_str(), user.as_str());
                // The user's factors in every version, and what each learns.
                let mut users = Vec::new();
                for v in &learner.registry.versions {
                    let vsite = versioned(site, v.version);
                    let stored = user_vectors
                        .get((vsite.as_str(), user.as_str()))?
                        .and_then(|v| unpack(v.value(), dim));
                    let vector = stored.unwrap_or_else(|| initial(&format!("{site}/{user}"), dim));
                    users.push(VersionUser {
                        version: v.version,
                        cfg: v.recipe.config(),
                        site: vsite,
                        vector,
                        steps: 0,
                    });
                }
                let seen_key = format!("{site}/{user}");
                for e in events {
                    if seen
                        .insert((seen_key.as_str(), e.id.as_str()), e.ts_ms)?
                        .is_some()
                    {
                        round.skipped += 1;
                        continue;
                    }
                    learn_event(
                        learner,
                        &mut factors,
                        &item_table,
                        site,
                        &mut users,
                        &profile.recent,
                        e,
                        now,
                    )?;
                    if let Some(item) = e.item.as_deref().filter(|_| e.weight > 0.0) {
                        if let Some(d) = covisit::visit(&profile.recent, item, &covisit_cfg) {
                            add_covisit(&mut covisits, &mut norms, site, &d, &covisit_cfg)?;
                        }
                    }
                    if let Some(field) = rails::field_of(e) {
                        let key = (site.as_str(), field.as_str());
                        let n = rail_counts.get(key)?.map_or(0, |v| v.value());
                        rail_counts.insert(key, n + 1)?;
                    }
                    if let Some((scopes, c)) = credit_of(site, e) {
                        for scope in &scopes {
                            let h = half_lives.popularity;
                            add_popularity(&mut popularity, scope, &c.item, c.weight, c.ts_ms, h)?;
                        }
                    }
                    profile.apply(e, half_lives.affinity);
                    round.applied += 1;
                }
                let json = serde_json::to_string(&profile).expect("profiles serialize");
                profiles.insert(key, json.as_str())?;
                for u in users.iter().filter(|u| u.steps > 0) {
                    let key = (u.site.as_str(), user.as_str());
                    user_vectors.insert(key, pack(&u.vector).as_slice())?;
                    let steps = version_steps.get(key)?.map_or(0, |v| v.value());
                    version_steps.insert(key, steps + u.steps)?;
                }
            }
            factors.write(&mut item_table)?;
            learner.end_round();
            let mut dead_letters = tx.open_table(DEAD_LETTERS)?;
            for (offset, reason, detail, payload) in &dead {
                let letter = (*reason, detail.as_str(), payload.as_slice());
                dead_letters.insert((topic, *offset), letter)?;
            }
            tx.open_table(POSITIONS)?.insert(topic, last + 1)?;
        }
        tx.commit()?;
        round.dead_lettered += dead.len() as u64;
        for (_, reason, _, _) in &dead {
            metrics::counter!("attune_consumer_dead_letters_total", "reason" => *reason)
                .increment(1);
        }
    }
    Ok(round)
}

/// One user's factors in one model version, through a round.
struct VersionUser {
    version: u32,
    cfg: MfConfig,
    /// The version's site key (`versions::versioned`).
    site: String,
    vector: Vec<f32>,
    /// Events learned this round.
    steps: u64,
}

/// One new event's factor steps in every version, as the Redis trainer
/// takes them: an engagement with an item (validated first, in the serving
/// version, when sampled and new to the reader's `window`) toward 1 with
/// negatives drawn once for all versions, an exposure toward 0.
#[allow(clippy::too_many_arguments)]
fn learn_event(
    learner: &mut Learner,
    factors: &mut ItemFactors,
    table: &redb::Table<(&str, &str), &[u8]>,
    site: &str,
    users: &mut [VersionUser],
    window: &[String],
    e: &crate::store::profile_event::ProfileEvent,
    now_ms: i64,
) -> Result<(), redb::Error> {
    let Some(item) = e.item.as_deref() else {
        return Ok(());
    };
    let dim = learner.cfg.dim;
    if e.weight <= 0.0 {
        if e.exposure <= 0.0 {
            return Ok(());
        }
        let weight = age_weighted(e.exposure, e.ts_ms, now_ms) as f32;
        for u in users.iter_mut() {
            factors.load(table, &u.site, &[item], dim)?;
            let vectors = factors.sites.get_mut(&u.site).expect("loaded");
            expose(&mut u.vector, vectors, item, weight, &u.cfg);
            factors.changed.insert((u.site.clone(), item.to_owned()));
            u.steps += 1;
        }
        return Ok(());
    }
    let n = learner.cfg.negatives;
    let negatives = learner.pool(site).draw(n, item);
    let mut touched: Vec<&str> = vec![item];
    touched.extend(negatives.iter().map(String::as_str));
    let weight = age_weighted(e.weight, e.ts_ms, now_ms) as f32;
    let serving = learner.registry.serving;
    for u in users.iter_mut() {
        factors.load(table, &u.site, &touched, dim)?;
        if u.version == serving && learner.serving_validator().wants(&e.id, item, window) {
            let vectors = factors.whole_site(table, &u.site)?;
            let rate = learner.validation_rate;
            learner
                .validators
                .entry(serving)
                .or_insert_with(|| Validator::new(rate))
                .evaluate(&u.vector, item, vectors, window);
        }
        let vectors = factors.sites.get_mut(&u.site).expect("loaded");
        learn_factors(&mut u.vector, vectors, item, weight, &negatives, &u.cfg);
        factors
            .changed
            .extend(touched.iter().map(|j| (u.site.clone(), (*j).to_owned())));
        u.steps += 1;
    }
    learner.positives.push((site.to_owned(), item.to_owned()));
    Ok(())
}

/// Model versions kept (and trained); an older one that does not serve is
/// dropped when a retrain adds one.
pub const LIVE_VERSIONS: usize = 4;

/// The embedded consumer's model, for a retrain between its rounds.
#[derive(Clone)]
pub struct EmbeddedModel {
    db: Arc<Database>,
    learner: Arc<std::sync::Mutex<Learner>>,
    weights: SiteWeights,
}

impl EmbeddedModel {
    /// Retrains (blocking): no round runs meanwhile.
    pub fn retrain(&self, search: &Search) -> anyhow::Result<Outcome> {
        let _paused = self.learner.lock().expect("not poisoned");
        retrain(&self.db, &self.weights, search)
    }
}

/// Fits a challenger on the log up to the consumer's positions (what every
/// version has learned), compares it, and writes it as the next version —
/// trained from those positions on by the rounds that follow, like every
/// version. Call it between rounds.
pub fn retrain(db: &Database, weights: &SiteWeights, search: &Search) -> anyhow::Result<Outcome> {
    let started = std::time::Instant::now();
    let mut records = Vec::new();
    let mut through = BTreeMap::new();
    {
        let positions = db.begin_read()?.open_table(POSITIONS)?;
        for topic in topics() {
            let end = positions.get(topic)?.map_or(0, |v| v.value());
            through.insert(format!("{topic}:0"), end as i64);
            for (offset, _, payload) in read_topic(db, topic, 0)? {
                if offset >= end {
                    break;
                }
                if let Ok(record) = EventRecord::decode(&payload) {
                    records.push(Incoming {
                        topic: topic.to_owned(),
                        partition: 0,
                        offset: offset as i64,
                        record,
                    });
                }
            }
        }
    }
    let read_seconds = started.elapsed().as_secs_f64();
    let facts = catalog_facts(db, &records)?;
    let mut groups = by_user(&records, weights, &mut |site, item| {
        facts
            .get(&(site.to_owned(), item.to_owned()))
            .cloned()
            .unwrap_or_default()
    });
    {
        let forgotten = db.begin_read()?.open_table(FORGOTTEN)?;
        let mut gone = Vec::new();
        for (site, user) in groups.keys() {
            if forgotten.get((site.as_str(), user.as_str()))?.is_some() {
                gone.push((site.clone(), user.clone()));
            }
        }
        for key in gone {
            groups.remove(&key);
        }
    }
    let sites = lessons(groups, crate::clock::now_ms());
    let registry = registry_in(&db.begin_read()?.open_table(MODEL_REGISTRY)?)?;
    let fitted = fit(&sites, &registry, search, through);
    let mut promoted = false;
    if let Some(fitted) = &fitted {
        let tx = db.begin_write()?;
        {
            // As stored now: a pointer moved over the API meanwhile stays moved.
            let current = registry_in(&tx.open_table(MODEL_REGISTRY)?)?;
            let (mut next, moved) = register(&current, fitted, search);
            promoted = moved;
            let v = fitted.info.version;
            let (mut items, mut users, mut steps) = (
                tx.open_table(ITEM_VECTORS)?,
                tx.open_table(USER_VECTORS)?,
                tx.open_table(VERSION_STEPS)?,
            );
            for ((site, lessons), model) in sites.iter().zip(&fitted.models) {
                let vsite = versioned(site, v);
                let learned = lessons_per_user(lessons);
                for (item, vector) in &model.items {
                    items.insert((vsite.as_str(), item.as_str()), pack(vector).as_slice())?;
                }
                for (user, vector) in &model.users {
                    let key = (vsite.as_str(), user.as_str());
                    users.insert(key, pack(vector).as_slice())?;
                    steps.insert(key, learned.get(user.as_str()).copied().unwrap_or(0))?;
                }
            }
            // The oldest versions beyond the kept ones, unless serving.
            while next.versions.len() > LIVE_VERSIONS {
                let Some(old) = next
                    .versions
                    .iter()
                    .map(|v| v.version)
                    .find(|&o| o != next.serving && o != v)
                else {
                    break;
                };
                next.versions.retain(|x| x.version != old);
                for (site, _) in &sites {
                    let vsite = versioned(site, old);
                    let range = (vsite.as_str(), "")..(vsite.as_str(), "\u{10FFFF}");
                    items.retain_in(range.clone(), |_, _| false)?;
                    users.retain_in(range.clone(), |_, _| false)?;
                    steps.retain_in(range, |_, _| false)?;
                }
            }
            let json = serde_json::to_string(&next).expect("serializes");
            tx.open_table(MODEL_REGISTRY)?
                .insert(REGISTRY_KEY, json.as_str())?;
        }
        tx.commit()?;
    }
    let outcome = Outcome::of(
        records.len() as u64,
        fitted.as_ref(),
        promoted,
        read_seconds,
        started.elapsed().as_secs_f64(),
    );
    outcome.record();
    Ok(outcome)
}

/// Adds one visit's counts to both rows and the item's norm, trimming each
/// changed row as `Neighbours::apply` does.
fn add_covisit(
    covisits: &mut redb::Table<(&str, &str, &str), f64>,
    norms: &mut redb::Table<(&str, &str), f64>,
    site: &str,
    d: &covisit::CovisitDelta,
    cfg: &CovisitConfig,
) -> Result<(), redb::Error> {
    let item = d.item.as_str();
    let norm = norms.get((site, item))?.map_or(0.0, |v| v.value());
    norms.insert((site, item), norm + d.norm)?;
    let mut grew = false;
    for (other, amount) in &d.pairs {
        grew |= add_cell(covisits, (site, item, other), *amount)?;
    }
    if grew {
        trim_row(covisits, site, item, cfg.row_cap)?;
    }
    for (other, amount) in &d.pairs {
        if add_cell(covisits, (site, other, item), *amount)? {
            trim_row(covisits, site, other, cfg.row_cap)?;
        }
    }
    Ok(())
}

/// Adds to one cell; true when the cell is new (the row grew).
fn add_cell(
    covisits: &mut redb::Table<(&str, &str, &str), f64>,
    key: (&str, &str, &str),
    amount: f64,
) -> Result<bool, redb::Error> {
    let count = covisits.get(key)?.map(|v| v.value());
    covisits.insert(key, count.unwrap_or(0.0) + amount)?;
    Ok(count.is_none())
}

/// [`covisit::trim`] of one stored row.
fn trim_row(
    covisits: &mut redb::Table<(&str, &str, &str), f64>,
    site: &str,
    item: &str,
    cap: usize,
) -> Result<(), redb::Error> {
    let mut row = HashMap::new();
    for cell in covisits.range((site, item, "")..(site, item, "\u{10FFFF}"))? {
        let (k, v) = cell?;
        row.insert(k.value().2.to_owned(), v.value());
    }
    if row.len() <= 2 * cap {
        return Ok(());
    }
    let before: Vec<String> = row.keys().cloned().collect();
    covisit::trim(&mut row, cap);
    for other in before.iter().filter(|o| !row.contains_key(*o)) {
        covisits.remove((site, item, other.as_str()))?;
    }
    Ok(())
}

/// The tags of the items these events name, from the catalog.
fn catalog_facts(
    db: &Database,
    incoming: &[Incoming],
) -> Result<BTreeMap<(String, String), CatalogFacts>, redb::Error> {
    let items = db.begin_read()?.open_table(crate::store::embedded::ITEMS)?;
    let mut out = BTreeMap::new();
    for i in incoming {
        let (site, Some(item)) = (&i.record.site_key, &i.record.event.item) else {
            continue;
        };
        let key = (site.clone(), item.clone());
        if out.contains_key(&key) {
            continue;
        }
        let facts = items
            .get((site.as_str(), item.as_str()))?
            .and_then(|v| serde_json::from_str::<Item>(v.value()).ok())
            .map(|item| CatalogFacts {
                tags: item.tags,
                length_words: item.length_words,
            })
            .unwrap_or_default();
        out.insert(key, facts);
    }
    Ok(out)
}

/// Records behind the positions, per topic (the embedded consumer's lag).
fn lag(db: &Database) -> Result<BTreeMap<String, i64>, redb::Error> {
    let tx = db.begin_read()?;
    let (log, positions) = (tx.open_table(LOG)?, tx.open_table(POSITIONS)?);
    let mut out = BTreeMap::new();
    for topic in topics() {
        let end = log
            .range((topic, 0)..=(topic, u64::MAX))?
            .next_back()
            .transpose()?
            .map_or(0, |(k, _)| k.value().1 + 1);
        let at = positions.get(topic)?.map_or(0, |v| v.value());
        out.insert(format!("{topic}/0"), end.saturating_sub(at) as i64);
    }
    Ok(out)
}

/// Forgets event ids older than the deduplication window (as Redis trims its
/// sorted sets).
fn prune_seen(db: &Database, now_ms: i64) -> Result<(), redb::Error> {
    let tx = db.begin_write()?;
    tx.open_table(SEEN)?
        .retain(|_, ts| now_ms - ts <= super::apply::DEDUP_WINDOW_MS)?;
    tx.commit()?;
    Ok(())
}

/// How often old event ids are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Runs the embedded consumer until the log is dropped: a round whenever the
/// log grew, and its stats for the dashboard.
pub fn spawn(
    db: Arc<Database>,
    mut appended: watch::Receiver<u64>,
    half_lives: HalfLives,
    weights: SiteWeights,
    learner: Learner,
    retrain_every_s: u64,
) -> EmbeddedModel {
    let learner = Arc::new(std::sync::Mutex::new(learner));
    let model = EmbeddedModel {
        db: db.clone(),
        learner: learner.clone(),
        weights: weights.clone(),
    };
    let scheduled = model.clone();
    let started_ms = crate::clock::now_ms();
    tokio::spawn(async move {
        let shared_lag = SharedLag::default();
        let mut stats = StatsTracker::new(Some(shared_lag.clone()));
        let mut pruned: Option<std::time::Instant> = None;
        loop {
            if pruned.is_none_or(|at| at.elapsed() > PRUNE_EVERY) {
                pruned = Some(std::time::Instant::now());
                let db2 = db.clone();
                let now = crate::clock::now_ms();
                if let Ok(Err(e)) = tokio::task::spawn_blocking(move || prune_seen(&db2, now)).await
                {
                    tracing::warn!("embedded consumer: pruning old event ids: {e}");
                }
            }
            let (db2, weights, learner2) = (db.clone(), weights.clone(), learner.clone());
            let round = tokio::task::spawn_blocking(move || {
                let mut learner = learner2.lock().expect("not poisoned");
                apply_pending(&db2, half_lives, &weights, &mut learner)
            })
            .await;
            let now = crate::clock::now_ms();
            let busy = match round {
                Ok(Ok(round)) => {
                    stats.count(round.applied, round.skipped);
                    stats.observe(round.received_at_ms, now);
                    let mut learner = learner.lock().expect("not poisoned");
                    let (version, validator) = learner.validator();
                    stats.validated(version, validator);
                    round.read > 0
                }
                Ok(Err(e)) => {
                    tracing::warn!("embedded consumer: {e}; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    true
                }
                Err(e) => {
                    tracing::error!("embedded consumer stopped: {e}");
                    return;
                }
            };
            if retrain_every_s > 0 {
                let (model, degraded) = (scheduled.clone(), stats.degraded());
                let every_ms = retrain_every_s.saturating_mul(1000) as i64;
                let ran = tokio::task::spawn_blocking(move || {
                    retrain_if_due(&model, every_ms, started_ms, degraded)
                })
                .await;
                if let Ok(Err(e)) = ran {
                    tracing::warn!("scheduled retrain: {e:#}");
                    metrics::counter!("attune_model_retrains_total", "outcome" => "failed")
                        .increment(1);
                }
            }
            if stats.due() {
                let db2 = db.clone();
                let lag = tokio::task::spawn_blocking(move || lag(&db2)).await;
                if let Ok(Ok(lag)) = lag {
                    *shared_lag.lock().expect("not poisoned") = lag;
                }
                publish(&db, &stats.snapshot(now)).await;
            }
            if !busy {
                // Wait for the log to grow; wake now and then for the stats.
                let grew = tokio::time::timeout(Duration::from_secs(1), appended.changed()).await;
                if let Ok(Err(_)) = grew {
                    return; // the log is gone: the origin stopped
                }
            }
        }
    });
    model
}

/// A retrain when the schedule says one is due (`schedule::due`).
fn retrain_if_due(
    model: &EmbeddedModel,
    every_ms: i64,
    started_ms: i64,
    degraded: bool,
) -> anyhow::Result<()> {
    let registry = registry_in(&model.db.begin_read()?.open_table(MODEL_REGISTRY)?)?;
    let newest = super::schedule::newest_ms(&registry, started_ms);
    if super::schedule::due(every_ms, newest, crate::clock::now_ms(), degraded).is_some() {
        model.retrain(&Search::default())?;
    }
    Ok(())
}

async fn publish(db: &Arc<Database>, stats: &crate::store::ConsumerStats) {
    let (db, json, member) = (
        db.clone(),
        serde_json::to_string(stats).expect("stats serialize"),
        stats.member.clone(),
    );
    let written = tokio::task::spawn_blocking(move || -> Result<(), redb::Error> {
        let tx = db.begin_write()?;
        tx.open_table(CONSUMER_STATS)?
            .insert(member.as_str(), json.as_str())?;
        tx.commit()?;
        Ok(())
    })
    .await;
    if let Ok(Err(e)) = written {
        tracing::debug!("embedded consumer stats not written: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::covisit::{push, visit, Neighbours};

    /// A record that does not decode is kept in the dead-letter table with
    /// its reason and bytes, and the position moves past it.
    #[test]
    fn an_undecodable_record_is_dead_lettered_and_passed() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("t.redb")).unwrap();
        let topic = topics().next().unwrap();
        let tx = db.begin_write().unwrap();
        tx.open_table(LOG)
            .unwrap()
            .insert((topic, 0), ("k", &[0xc1u8, 7][..]))
            .unwrap();
        // As EmbeddedStore::new creates them.
        tx.open_table(POSITIONS).unwrap();
        tx.open_table(crate::store::embedded::ITEMS).unwrap();
        tx.commit().unwrap();
        let half_lives = HalfLives {
            affinity: HalfLife::from_hours(1.0).unwrap(),
            popularity: HalfLife::from_hours(1.0).unwrap(),
        };
        let mut learner = Learner::new(MfConfig::default(), 1.0);
        let round = apply_pending(&db, half_lives, &SiteWeights::default(), &mut learner).unwrap();
        assert_eq!((round.read, round.dead_lettered), (1, 1));
        let read = db.begin_read().unwrap();
        let letters = read.open_table(DEAD_LETTERS).unwrap();
        let letter = letters.get((topic, 0)).unwrap().expect("dead-lettered");
        let (reason, detail, payload) = letter.value();
        assert_eq!((reason, payload), ("undecodable", &[0xc1u8, 7][..]));
        assert!(!detail.is_empty());
        let position = read.open_table(POSITIONS).unwrap().get(topic).unwrap();
        assert_eq!(position.map(|v| v.value()), Some(1));
    }

    /// The embedded rows follow `Neighbours::apply` (what the eval scores)
    /// cell for cell, trims included.
    #[test]
    fn embedded_rows_are_trimmed_as_the_model_trims_them() {
        let cfg = CovisitConfig {
            row_cap: 1,
            ..CovisitConfig::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("t.redb")).unwrap();
        let mut expected = Neighbours::default();
        let tx = db.begin_write().unwrap();
        {
            let mut covisits = tx.open_table(COVISIT).unwrap();
            let mut norms = tx.open_table(COVISIT_NORMS).unwrap();
            for r in 0..6 {
                let mut window = Vec::new();
                let own = (0..3).map(|k| format!("own{r}-{k}"));
                for item in ["hub".to_string(), "shared".into()].into_iter().chain(own) {
                    if let Some(d) = visit(&window, &item, &cfg) {
                        add_covisit(&mut covisits, &mut norms, "s", &d, &cfg).unwrap();
                        expected.apply(&d, &cfg);
                    }
                    push(&mut window, &item, cfg.window);
                }
            }
        }
        tx.commit().unwrap();
        let t = db.begin_read().unwrap().open_table(COVISIT).unwrap();
        let mut stored: crate::store::CovisitRows = HashMap::new();
        for cell in t.iter().unwrap() {
            let (k, v) = cell.unwrap();
            let (_, row, other) = k.value();
            stored
                .entry(row.to_owned())
                .or_default()
                .insert(other.to_owned(), v.value());
        }
        // Untrimmed, the hub's row would hold `shared` and 18 own items.
        let expected = expected.rows();
        assert!(expected["hub"].len() <= 2 * cfg.row_cap);
        assert_eq!(stored, expected);
    }
}
