//! `attune-origin retrain`: fits a challenger from the retained log, compares
//! it with the serving version on a time-ordered holdout, registers it as a
//! new model version and promotes it only when it is better beyond chance.
//!
//! 1. Reads every interaction partition from its start to its end as the
//!    run begins (`trained_through`), the records as the consumers weigh
//!    them (`apply::by_user`), each id once (its first record), forgotten
//!    users left out.
//! 2. Per site, in time order: 80 % to fit, 10 % to choose the recipe
//!    (epochs × regularization, [`crate::model::batch::search`]), 10 % to
//!    compare the chosen recipe with the champion's (both fitted on the
//!    first 90 %, then tested-then-learned on the last 10 %).
//! 3. Writes the challenger (having learned everything up to
//!    `trained_through`) under its version's keys, and its positions there:
//!    once it serves, the consumers teach it from those offsets on, so no
//!    event is lost or learned twice across the handoff.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use attune_core::routing::topics;
use indicatif::{ProgressBar, ProgressStyle};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use redis::Commands;
use serde::Serialize;

use super::apply::{by_user, Incoming, ProfileWriter, UserEvents};
use crate::clock::now_ms;
use crate::config::{RetrainArgs, SiteWeights};
use crate::model::batch::{compare, search, GridPoint, Lesson, SiteModel};
use crate::model::online::age_weighted;
use crate::model::pack;
use crate::model::versions::{info_field, versioned, Comparison, Recipe, Registry, VersionInfo};
use crate::record::EventRecord;
use crate::store::redis::conn::{Pipes, SyncConn};
use crate::store::redis::{model_key, model_position_key, site_key, user_key};

const TIMEOUT: Duration = Duration::from_secs(10);
/// A partition that yields nothing for this long is read to its end.
const IDLE: Duration = Duration::from_secs(5);

/// What a retrain did, for people and for `--json`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Outcome {
    /// The version it registered (none when there was nothing to learn).
    pub version: Option<u32>,
    /// Records read from the log.
    pub records: u64,
    /// Events learned (first records with an item, forgotten users left out).
    pub lessons: u64,
    /// The candidates, best first.
    pub grid: Vec<GridPoint>,
    /// The recipe chosen.
    pub chosen: Option<Recipe>,
    /// Champion vs challenger on the holdout.
    pub comparison: Option<Comparison>,
    /// Whether the challenger now serves.
    pub promoted: bool,
    /// Seconds spent reading the log (the floor of a retrain).
    pub read_seconds: f64,
    /// Seconds spent reading, fitting and writing.
    pub seconds: f64,
}

/// The candidates to fit and how much better the challenger must be.
#[derive(Debug, Clone, PartialEq)]
pub struct Search {
    /// The grid, every combination of its values.
    pub grid: Vec<Recipe>,
    /// HR@10 the challenger's 95 % interval must clear over the champion's.
    pub margin: f64,
    /// Promote a challenger that is better.
    pub promote: bool,
}

impl Search {
    /// Every combination of the values.
    pub fn of(epochs: &[u32], regularization: &[f32], learning_rate: &[f32], margin: f64) -> Self {
        let mut grid = Vec::new();
        for &epochs in epochs {
            for &regularization in regularization {
                for &learning_rate in learning_rate {
                    grid.push(Recipe {
                        epochs,
                        regularization,
                        learning_rate,
                    });
                }
            }
        }
        Search {
            grid,
            margin,
            promote: true,
        }
    }

    /// The search of `attune-origin retrain`'s flags.
    pub fn of_args(args: &RetrainArgs) -> Self {
        Search {
            promote: !args.no_promote,
            ..Search::of(
                &args.epochs,
                &args.regularization,
                &args.learning_rate,
                args.margin,
            )
        }
    }
}

impl Default for Search {
    fn default() -> Self {
        Search::of_args(&RetrainArgs::defaults())
    }
}

/// A challenger fitted, chosen on the validation split and compared with
/// the champion: what either store writes as a new version.
pub struct Fitted {
    /// Its registry record.
    pub info: VersionInfo,
    /// Its factors per site, having learned every lesson.
    pub models: Vec<SiteModel>,
    /// The grid's scores, best first.
    pub points: Vec<GridPoint>,
}

/// Fits, chooses and compares a challenger for `registry`'s next version,
/// trained through `trained_through`; `None` with nothing to learn.
pub fn fit(
    sites: &[(String, Vec<Lesson>)],
    registry: &Registry,
    how: &Search,
    trained_through: BTreeMap<String, i64>,
) -> Option<Fitted> {
    let lessons: u64 = sites.iter().map(|(_, l)| l.len() as u64).sum();
    if lessons == 0 || how.grid.is_empty() {
        return None;
    }
    let bar = progress(how.grid.len() as u64, "fit and score the candidates");
    let points = search(sites, &how.grid, || bar.inc(1));
    bar.finish_and_clear();
    let chosen = points[0].recipe;
    let champion = registry.serving_info();
    let (comparison, models) = compare(
        sites,
        (champion.version, &champion.recipe),
        &chosen,
        how.margin,
    );
    let info = VersionInfo {
        version: registry.next_version(),
        created_ms: now_ms(),
        recipe: chosen,
        trained_through,
        fitted_events: lessons,
        comparison: Some(comparison),
    };
    Some(Fitted {
        info,
        models,
        points,
    })
}

/// The registry after `fitted` joins it, promoted if it is better and the
/// search promotes; and whether it was.
pub fn register(registry: &Registry, fitted: &Fitted, search: &Search) -> (Registry, bool) {
    let mut next = registry.clone();
    next.versions.push(fitted.info.clone());
    let better = fitted.info.comparison.as_ref().is_some_and(|c| c.better);
    if better && search.promote {
        let promoted = next.promote(fitted.info.version).expect("just added");
        return (promoted, true);
    }
    (next, false)
}

/// Each reader's lessons in `lessons`, by user.
pub fn lessons_per_user(lessons: &[Lesson]) -> HashMap<&str, u64> {
    let mut out: HashMap<&str, u64> = HashMap::new();
    for l in lessons {
        *out.entry(l.user.as_str()).or_default() += 1;
    }
    out
}

impl Outcome {
    /// What a retrain that read `records` did.
    pub fn of(
        records: u64,
        fitted: Option<&Fitted>,
        promoted: bool,
        read_seconds: f64,
        seconds: f64,
    ) -> Self {
        Outcome {
            version: fitted.map(|f| f.info.version),
            records,
            lessons: fitted.map_or(0, |f| f.info.fitted_events),
            grid: fitted.map(|f| f.points.clone()).unwrap_or_default(),
            chosen: fitted.map(|f| f.info.recipe),
            comparison: fitted.and_then(|f| f.info.comparison.clone()),
            promoted,
            read_seconds,
            seconds,
        }
    }

    /// Logged, and counted in `attune_model_retrains_total{outcome}`.
    pub fn record(&self) {
        let outcome = match (self.version, self.promoted) {
            (None, _) => "nothing_to_learn",
            (Some(_), true) => "promoted",
            (Some(_), false) => "kept",
        };
        tracing::info!(
            version = ?self.version,
            outcome,
            "retrained: {}",
            render(self).trim_end().replace('\n', "; ")
        );
        metrics::counter!("attune_model_retrains_total", "outcome" => outcome).increment(1);
    }
}

/// Runs a retrain of the Kafka + Redis deployment with its flags' search.
pub fn run(args: &RetrainArgs) -> Result<Outcome> {
    run_with(args, &Search::of_args(args))
}

/// Runs a retrain of the deployment `args` names, with `search`.
pub fn run_with(args: &RetrainArgs, search: &Search) -> Result<Outcome> {
    let started = Instant::now();
    let mut redis = SyncConn::open(&args.redis_url)
        .with_context(|| format!("cannot reach Redis at {}", args.redis_url))?;
    let registry = {
        let fields: HashMap<String, String> = redis.hgetall(model_key(&args.topic_prefix))?;
        Registry::from_fields(&fields)
    };
    let (records, ends) = read_log(args)?;
    let read_seconds = started.elapsed().as_secs_f64();
    let read = records.len() as u64;
    let sites = lessons_of(args, records)?;
    let fitted = fit(&sites, &registry, search, ends);
    let mut promoted = false;
    if let Some(fitted) = &fitted {
        write_version(
            &mut redis,
            &args.topic_prefix,
            &fitted.info,
            &sites,
            &fitted.models,
        )?;
        let (next, moved) = register(&registry, fitted, search);
        promoted = moved;
        if moved {
            let _: () =
                redis.hset_multiple(model_key(&args.topic_prefix), &next.pointer_fields())?;
        }
    }
    let outcome = Outcome::of(
        read,
        fitted.as_ref(),
        promoted,
        read_seconds,
        started.elapsed().as_secs_f64(),
    );
    outcome.record();
    Ok(outcome)
}

fn progress(len: u64, what: &'static str) -> ProgressBar {
    let bar = ProgressBar::new(len).with_message(what);
    bar.set_style(
        ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} {elapsed}")
            .expect("a valid template"),
    );
    bar
}

/// Every record of the interaction topics up to their ends as the read
/// began, and those ends (`topic:partition` → first offset not read).
fn read_log(args: &RetrainArgs) -> Result<(Vec<Incoming>, BTreeMap<String, i64>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &args.kafka_brokers)
        .set("group.id", "attune-retrain")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .context("create the Kafka consumer")?;
    let mut assignment = TopicPartitionList::new();
    let mut ends: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for t in topics() {
        let name = format!("{}{t}", args.topic_prefix);
        let metadata = consumer
            .fetch_metadata(Some(&name), TIMEOUT)
            .with_context(|| format!("cannot reach Kafka at {}", args.kafka_brokers))?;
        for t in metadata.topics() {
            for p in t.partitions() {
                let (_, high) = consumer.fetch_watermarks(t.name(), p.id(), TIMEOUT)?;
                ends.insert((t.name().to_owned(), p.id()), high);
                assignment.add_partition_offset(t.name(), p.id(), Offset::Beginning)?;
            }
        }
    }
    let through: BTreeMap<String, i64> = ends
        .iter()
        .map(|((t, p), end)| (format!("{t}:{p}"), *end))
        .collect();
    let total: i64 = ends.values().sum();
    consumer.assign(&assignment)?;
    let bar = progress(total.max(0) as u64, "read the log");
    let mut open: HashSet<(String, i32)> = ends
        .iter()
        .filter(|(_, &end)| end > 0)
        .map(|(k, _)| k.clone())
        .collect();
    let mut out = Vec::new();
    let mut last = Instant::now();
    while !open.is_empty() {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                last = Instant::now();
                let key = (m.topic().to_owned(), m.partition());
                let end = ends[&key];
                if m.offset() >= end {
                    open.remove(&key);
                    continue;
                }
                bar.inc(1);
                if m.offset() + 1 >= end {
                    open.remove(&key);
                }
                if let Ok(record) = EventRecord::decode(m.payload().unwrap_or_default()) {
                    out.push(Incoming {
                        topic: key.0,
                        partition: key.1,
                        offset: m.offset(),
                        record,
                    });
                }
            }
            Some(Err(e)) => return Err(e).context("read the interaction topics"),
            None if last.elapsed() > IDLE => {
                // Aborted or control records at a partition's end are never
                // delivered: what is left of it was read.
                let positions = consumer.position()?;
                open.retain(|(t, p)| {
                    positions.find_partition(t, *p).is_none_or(
                        |e| matches!(e.offset(), Offset::Offset(o) if o < ends[&(t.clone(), *p)]),
                    )
                });
                if !open.is_empty() && last.elapsed() > IDLE * 6 {
                    bail!("the log could not be read to its end: is Kafka up?");
                }
            }
            None => {}
        }
    }
    bar.finish_and_clear();
    Ok((out, through))
}

/// Each site's lessons in time order from the log's records (forgotten
/// users left out).
fn lessons_of(
    args: &RetrainArgs,
    mut records: Vec<Incoming>,
) -> Result<Vec<(String, Vec<Lesson>)>> {
    let weights = SiteWeights::of_sites(&crate::config::load_sites(args.config.as_deref())?);
    let mut profiles = ProfileWriter::connect(&args.redis_url).context("connect to Redis")?;
    records
        .sort_by(|a, b| (&a.topic, a.partition, a.offset).cmp(&(&b.topic, b.partition, b.offset)));
    let mut groups = by_user(&records, &weights, &mut |site, item| {
        profiles.facts_of(site, item)
    });
    profiles.drop_forgotten(&mut groups)?;
    Ok(lessons(groups, now_ms()))
}

/// Each site's lessons in time order: the first record of every id with an
/// item (each user's events in log order), weighed as the consumers weigh
/// it, by its age at `now_ms`.
pub fn lessons(groups: UserEvents, now_ms: i64) -> Vec<(String, Vec<Lesson>)> {
    let mut sites: BTreeMap<String, Vec<(i64, Lesson)>> = BTreeMap::new();
    for ((site, user), events) in groups {
        let mut ids = HashSet::new();
        for e in events {
            let Some(item) = e.item else { continue };
            if !ids.insert(e.id) {
                continue;
            }
            let (weight, exposure) = if e.weight > 0.0 {
                (age_weighted(e.weight, e.ts_ms, now_ms) as f32, 0.0)
            } else if e.exposure > 0.0 {
                (0.0, age_weighted(e.exposure, e.ts_ms, now_ms) as f32)
            } else {
                continue;
            };
            sites.entry(site.clone()).or_default().push((
                e.ts_ms,
                Lesson {
                    user: user.clone(),
                    item,
                    weight,
                    exposure,
                },
            ));
        }
    }
    sites
        .into_iter()
        .map(|(site, mut lessons)| {
            lessons.sort_by_key(|(ts, _)| *ts);
            (site, lessons.into_iter().map(|(_, l)| l).collect())
        })
        .collect()
}

/// The version's factors, learned counts, positions and record.
fn write_version(
    redis: &mut SyncConn,
    topic_prefix: &str,
    info: &VersionInfo,
    sites: &[(String, Vec<Lesson>)],
    models: &[SiteModel],
) -> Result<()> {
    let v = info.version;
    for ((site, lessons), model) in sites.iter().zip(models) {
        let learned = lessons_per_user(lessons);
        let items_key = site_key(site, &versioned("item_vectors", v));
        let mut pipes = Pipes::new();
        pipes.add_ignored(redis::Cmd::del(&items_key));
        for (n, (item, vector)) in model.items.iter().enumerate() {
            pipes.add_ignored(redis::Cmd::hset(&items_key, item, pack(vector)));
            if n % 1000 == 999 {
                std::mem::take(&mut pipes).query(redis)?;
            }
        }
        for (n, (user, vector)) in model.users.iter().enumerate() {
            let wm = user_key(site, user, &versioned("vector_wm", v));
            pipes
                .add_ignored(redis::Cmd::set(
                    user_key(site, user, &versioned("vector", v)),
                    pack(vector),
                ))
                .add_ignored(redis::Cmd::del(&wm))
                .add_ignored(redis::Cmd::hset(
                    &wm,
                    "steps",
                    learned.get(user.as_str()).copied().unwrap_or(0),
                ));
            if n % 1000 == 999 {
                std::mem::take(&mut pipes).query(redis)?;
            }
        }
        pipes.query(redis)?;
    }
    let positions: Vec<(&String, i64)> =
        info.trained_through.iter().map(|(k, v)| (k, *v)).collect();
    let mut pipes = Pipes::new();
    let position = model_position_key(topic_prefix, v);
    pipes.add_ignored(redis::Cmd::del(&position));
    if !positions.is_empty() {
        pipes.add_ignored(redis::Cmd::hset_multiple(&position, &positions));
    }
    pipes.add_ignored(redis::Cmd::hset(
        model_key(topic_prefix),
        info_field(v),
        serde_json::to_string(info)?,
    ));
    pipes.query(redis)?;
    // The version is on record only once a failover cannot lose it.
    redis.wait_replicated()?;
    Ok(())
}

/// The outcome in words.
pub fn render(o: &Outcome) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "read {} records in {:.1} s, learned from {} events, {:.1} s in all",
        o.records, o.read_seconds, o.lessons, o.seconds
    );
    if o.grid.is_empty() {
        let _ = writeln!(s, "nothing to learn from: no version made");
        return s;
    }
    let _ = writeln!(
        s,
        "\nepochs  regularization  HR@10 (validation, {} checks)",
        o.grid[0].checks
    );
    for p in &o.grid {
        let _ = writeln!(
            s,
            "{:>6}  {:>14}  {:.3}",
            p.recipe.epochs, p.recipe.regularization, p.hr10
        );
    }
    if let (Some(v), Some(c)) = (o.version, &o.comparison) {
        let _ = writeln!(
            s,
            "\nholdout ({} checks): champion v{} HR@10 {:.3}, challenger v{v} {:.3}, difference {:+.3} .. {:+.3} (95 %)",
            c.checks, c.champion, c.champion_hr10, c.challenger_hr10, c.diff_low, c.diff_high
        );
        let verdict = match (c.better, o.promoted) {
            (true, true) => format!("v{v} is better beyond chance: promoted, it serves now"),
            (true, false) => format!("v{v} is better beyond chance; not promoted (--no-promote): `attune-origin model promote {v}`"),
            (false, _) => format!("v{v} is not better beyond chance: v{} keeps serving (v{v} is kept; `attune-origin model promote {v}` to serve it anyway)", c.champion),
        };
        let _ = writeln!(s, "{verdict}");
    }
    s
}
