//! The production store: Redis.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `attune:{site}:items` | hash | item id → item JSON |
//! | `attune:{scope}:pop` | hash | item id → `value,at_ms` decayed popularity (scope: a site or `site~segment`) |
//! | `attune:{scope}:pop_wm` | hash | `topic:partition` → last offset credited to the scope's popularity |
//! | `attune:{site}:forgotten` | set | forgotten user ids |
//! | `attune:{site/user}:attrs` | hash | user attributes |
//! | `attune:{site/user}:profile` | hash | counts per kind, first/last seen, sessions, dwell, device, `credit:a`/`credit:b` clicks on interleaved rails (consumers) |
//! | `attune:{site/user}:seen` | sorted set | event ids applied, by time (dedup window) |
//! | `attune:{site/user}:wm` | hash | `topic:partition` → last applied offset |
//! | `attune:{site/user}:affinity` | hash | tag → `value,at_ms` decayed interest |
//! | `attune:{site/user}:scroll` | hash | item → deepest scroll % |
//! | `attune:{site/user}:vector` | string | the user's factors (packed f32); version N > 1: `vector:vN` |
//! | `attune:{site/user}:vector_wm` | hash | `topic:partition` → last offset learned into the user's factors, `steps` → events learned; version N > 1: `vector_wm:vN` |
//! | `attune:{site/user}:first` | hash | event id → `topic:partition:offset` of its first record (for a version's catch-up; trimmed with `seen`) |
//! | `attune:{site/user}:consumed` | set | items clicked or read |
//! | `attune:{site/user}:recent` | list | co-visitation window: distinct items, newest first |
//! | `attune:{site/user}:forgotten` | string | set by forget; the profile script then writes nothing |
//! | `attune:{site}:item_vectors` | hash | item → factors (packed f32); version N > 1: `item_vectors:vN` |
//! | `attune:{site}:item_wm` | hash | `item|topic:partition` → last offset applied to its factors; version N > 1: `item_wm:vN` |
//! | `attune:{site}:covisit:<item>` | hash | other item → co-visit count |
//! | `attune:{site}:covisit_norm` | hash | item → co-visit norm |
//! | `attune:{site}:covisit_wm` | hash | `item|topic:partition` → last offset applied to its row |
//! | `attune:{site}:rails` | hash | `<ranker>|<position>|shown` or `…|clicked` → served items' impressions or clicks (`store::rail_field`) |
//! | `attune:{site}:rails_wm` | hash | `topic:partition` → last offset counted in the rails |
//! | `attune:{site}:experiments` | hash | experiment key → definition JSON |
//! | `attune:{site}:exposures:<key>:<phase>` | hash | unit → its first exposure JSON in that phase |
//! | `attune:{site}:ledger:<minute>` | hash | `<measure>.<kind>` → events counted in that minute (reconciliation; 8 days) |
//! | `attune:{site}:ledger_wm` | hash | `topic:partition` → last offset the consumers' ledger counted for the site |
//! | `attune:resume` | hash | `topic:partition` → next offset to read; every write before it is here |
//! | `attune:consumers` | hash | consumer member → its latest stats (JSON) |
//! | `attune:<topic prefix>model` | hash | the model versions' registry: `serving`, `history`, `vN` → version JSON (`model::versions`) |
//! | `attune:<topic prefix>model:position` | hash | `topic:partition` → next offset version 1 learns; version N > 1: `…:position:vN` |
//!
//! Every script's keys share one hash tag, so the schema runs on a Redis
//! Cluster as on one node ([`conn`]); the keys without a tag are each read
//! and written alone.

pub mod conn;

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use attune_core::{DecayedScore, HalfLife};
use redis::AsyncCommands;

use crate::clock::now_ms;
use crate::ledger::{Counts, Measure, Minute};

use crate::experiments::definition::Experiment;
use crate::experiments::{Exposure, UnitCounters};
use crate::model::unpack_any;
use crate::model::versions::{versioned, Registry};

use self::conn::{AsyncConn, Pipes};
use super::{
    add_rail_field, Attributes, ConsumerStats, CovisitRows, IngestContext, Item, Profile,
    RailCounts, Store, StoreError, StoreResult, UserModel,
};

/// Redis through one auto-reconnecting multiplexed connection (to a node
/// or a cluster).
#[derive(Clone)]
pub struct RedisStore {
    conn: AsyncConn,
    /// The deployment's topic prefix, which names its model registry.
    topic_prefix: String,
    /// The serving model version as last read, and when.
    serving: Arc<std::sync::Mutex<Option<(std::time::Instant, u32)>>>,
}

/// How long the API keeps the serving version before reading the pointer again.
const SERVING_TTL: std::time::Duration = std::time::Duration::from_secs(1);

/// The model versions' registry (`model::versions::Registry`) of the
/// deployment whose topics have `topic_prefix`.
pub fn model_key(topic_prefix: &str) -> String {
    format!("attune:{topic_prefix}model")
}

/// Where the consumers record how far `version` has learned each partition.
pub fn model_position_key(topic_prefix: &str, version: u32) -> String {
    versioned(&format!("attune:{topic_prefix}model:position"), version)
}

/// A key of site-wide data (hash-tagged by `site`).
pub fn site_key(site: &str, what: &str) -> String {
    format!("attune:{{{site}}}:{what}")
}

/// A key of one user's data (hash-tagged by `site/user`).
pub fn user_key(site: &str, user: &str, what: &str) -> String {
    format!("attune:{{{site}/{user}}}:{what}")
}

/// The exposures of one experiment's phase: unit → exposure JSON.
pub fn exposures_key(site: &str, experiment: &str, phase: u32) -> String {
    site_key(site, &format!("exposures:{experiment}:{phase}"))
}

/// KEYS: the site's forgotten set, the phase's exposures. ARGV: unit,
/// exposure JSON. Both keys carry the site's hash tag (one slot).
pub const RECORD_EXPOSURE: &str = r"
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return 0 end
return redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2])
";

/// One item's co-visitation row.
pub fn covisit_row_key(site: &str, item: &str) -> String {
    format!("attune:{{{site}}}:covisit:{item}")
}

/// One minute of a site's reconciliation ledger: `<measure>.<kind>` → count.
pub fn ledger_key(site: &str, minute: Minute) -> String {
    site_key(site, &format!("ledger:{minute}"))
}

/// A site's hash of `topic:partition` → the last offset the consumers'
/// ledger counted for it.
pub fn ledger_watermarks_key(site: &str) -> String {
    site_key(site, "ledger_wm")
}

/// How long ledger minutes are kept: past the audit's longest window.
pub const LEDGER_TTL_S: i64 = 8 * 86_400;

/// Hash of `topic:partition` → the next offset to read: every write of the
/// stream before it is in this store (`consume::resume`).
pub const RESUME_KEY: &str = "attune:resume";

/// Hash of consumer member → its latest [`ConsumerStats`] as JSON.
pub const CONSUMERS_KEY: &str = "attune:consumers";

/// Every per-user key `forget_user` deletes.
pub const USER_KEYS: &[&str] = &[
    "attrs",
    "profile",
    "seen",
    "wm",
    "affinity",
    "scroll",
    "vector",
    "vector_wm",
    "first",
    "consumed",
    "recent",
];

/// A user's keys of which each model version has its own.
pub const VERSIONED_USER_KEYS: &[&str] = &["vector", "vector_wm"];

/// The user key that marks a forgotten user inside their own hash tag, so
/// the profile script checks it in the same atomic call as its writes. It
/// stays when everything else of the user goes.
pub const FORGOTTEN_MARK: &str = "forgotten";

impl RedisStore {
    /// Connects (and keeps reconnecting in the background).
    pub async fn connect(url: &str) -> StoreResult<Self> {
        Ok(RedisStore {
            conn: AsyncConn::open(url).await?,
            topic_prefix: String::new(),
            serving: Arc::default(),
        })
    }

    /// The same store for the deployment whose topics have `prefix` (its
    /// model registry is its own).
    pub fn with_topic_prefix(mut self, prefix: &str) -> Self {
        self.topic_prefix = prefix.to_owned();
        self
    }

    /// The serving model version (read at most once per [`SERVING_TTL`]).
    async fn serving(&self) -> StoreResult<u32> {
        if let Some((at, v)) = *self.serving.lock().expect("not poisoned") {
            if at.elapsed() < SERVING_TTL {
                return Ok(v);
            }
        }
        let mut c = self.conn.clone();
        let v: Option<u32> = c
            .hget(
                model_key(&self.topic_prefix),
                crate::model::versions::SERVING_FIELD,
            )
            .await?;
        let v = v.unwrap_or(crate::model::versions::FIRST);
        *self.serving.lock().expect("not poisoned") = Some((std::time::Instant::now(), v));
        Ok(v)
    }
}

/// Lua: adds weight `w` made at `t` to the decayed score stored in hash
/// `key`, field `field`, as `value,at_ms` — attune-core's `DecayedScore::merge`
/// done atomically in Redis, so concurrent writers never lose an update.
pub const LUA_DECAYED_ADD: &str = r"
local function decayed_add(key, field, w, t, h)
  local v, at = 0, t
  local cur = redis.call('HGET', key, field)
  if cur then
    local sep = string.find(cur, ',')
    v = tonumber(string.sub(cur, 1, sep - 1))
    at = tonumber(string.sub(cur, sep + 1))
  end
  local nat = math.max(at, t)
  local nv = v * 2 ^ (-(nat - at) / h) + w * 2 ^ (-(nat - t) / h)
  redis.call('HSET', key, field, string.format('%.17g', nv) .. ',' .. string.format('%d', nat))
end
";

/// Lua: adds a delta (a list of numbers) to a packed f32 vector string.
pub const LUA_VEC_ADD: &str = r"
local function vec_add(cur, d)
  local n = #d
  local fmt = '<' .. string.rep('f', n)
  local v = {struct.unpack(fmt, cur)}
  for k = 1, n do v[k] = v[k] + d[k] end
  return struct.pack(fmt, unpack(v, 1, n))
end
";

fn parsing(e: redis::ParsingError) -> StoreError {
    StoreError(format!("Redis: {e}"))
}

fn parse_score(s: &str) -> Option<DecayedScore> {
    let (v, at) = s.split_once(',')?;
    Some(DecayedScore {
        value: v.parse().ok()?,
        at_ms: at.parse().ok()?,
    })
}

#[async_trait]
impl Store for RedisStore {
    async fn ping(&self) -> StoreResult<()> {
        let mut c = self.conn.clone();
        let _: String = redis::cmd("PING").query_async(&mut c).await?;
        Ok(())
    }

    async fn upsert_items(&self, site: &str, items: &[Item]) -> StoreResult<()> {
        let mut c = self.conn.clone();
        let fields: Vec<(String, String)> = items
            .iter()
            .map(|i| {
                (
                    i.id.clone(),
                    serde_json::to_string(i).expect("items serialize"),
                )
            })
            .collect();
        let _: () = c.hset_multiple(site_key(site, "items"), &fields).await?;
        self.conn.wait_replicated().await?;
        Ok(())
    }

    async fn items(&self, site: &str) -> StoreResult<Vec<Item>> {
        let mut c = self.conn.clone();
        let all: HashMap<String, String> = c.hgetall(site_key(site, "items")).await?;
        all.values()
            .map(|json| {
                serde_json::from_str(json).map_err(|e| StoreError(format!("stored item: {e}")))
            })
            .collect()
    }

    async fn popularity(&self, scope: &str) -> StoreResult<HashMap<String, DecayedScore>> {
        let mut c = self.conn.clone();
        let all: HashMap<String, String> = c.hgetall(site_key(scope, "pop")).await?;
        Ok(all
            .into_iter()
            .filter_map(|(item, s)| Some((item, parse_score(&s)?)))
            .collect())
    }

    async fn set_attributes(&self, site: &str, user: &str, attrs: &Attributes) -> StoreResult<()> {
        let mut c = self.conn.clone();
        let key = user_key(site, user, "attrs");
        let mut pipe = redis::pipe();
        pipe.atomic().del(&key);
        if !attrs.is_empty() {
            let fields: Vec<(&String, &String)> = attrs.iter().collect();
            pipe.hset_multiple(&key, &fields);
        }
        let _: () = pipe.query_async(&mut c).await?;
        self.conn.wait_replicated().await?;
        Ok(())
    }

    async fn ingest_context(&self, site: &str, user: &str) -> StoreResult<IngestContext> {
        let (forgotten, attributes): (bool, Attributes) = Pipes::new()
            .add(redis::Cmd::sismember(site_key(site, "forgotten"), user))
            .add(redis::Cmd::hgetall(user_key(site, user, "attrs")))
            .query_async_as(&self.conn)
            .await?;
        Ok(IngestContext {
            forgotten,
            attributes,
        })
    }

    async fn profile(&self, site: &str, user: &str, half_life: HalfLife) -> StoreResult<Profile> {
        let mut c = self.conn.clone();
        type Hash = HashMap<String, String>;
        let (attributes, fields, affinity, scroll): (Attributes, Hash, Hash, Hash) = redis::pipe()
            .hgetall(user_key(site, user, "attrs"))
            .hgetall(user_key(site, user, "profile"))
            .hgetall(user_key(site, user, "affinity"))
            .hgetall(user_key(site, user, "scroll"))
            .query_async(&mut c)
            .await?;
        let num = |k: &str| fields.get(k).and_then(|v| v.parse::<i64>().ok());
        let now = now_ms();
        Ok(Profile {
            attributes,
            counts: fields
                .iter()
                .filter_map(|(k, v)| Some((k.strip_prefix("count:")?.to_owned(), v.parse().ok()?)))
                .collect(),
            first_seen_ms: num("first_seen_ms"),
            last_seen_ms: num("last_seen_ms"),
            dwell_ms_total: num("dwell_ms_total").unwrap_or(0).max(0) as u64,
            max_scroll: scroll
                .into_iter()
                .filter_map(|(item, v)| Some((item, v.parse().ok()?)))
                .collect(),
            affinities: affinity
                .into_iter()
                .filter_map(|(tag, v)| Some((tag, parse_score(&v)?.value_at(now, half_life))))
                .collect(),
            device: ["device_class", "browser", "os"]
                .iter()
                .filter_map(|k| Some((k.to_string(), fields.get(*k)?.clone())))
                .collect(),
        })
    }

    async fn user_model(
        &self,
        site: &str,
        user: &str,
        half_life: HalfLife,
    ) -> StoreResult<UserModel> {
        let version = self.serving().await?;
        let mut c = self.conn.clone();
        type Parts = (
            Option<Vec<u8>>,
            HashSet<String>,
            HashMap<String, String>,
            Vec<String>,
        );
        let (vector, consumed, affinity, recent): Parts = redis::pipe()
            .get(user_key(site, user, &versioned("vector", version)))
            .smembers(user_key(site, user, "consumed"))
            .hgetall(user_key(site, user, "affinity"))
            .lrange(user_key(site, user, "recent"), 0, -1)
            .query_async(&mut c)
            .await?;
        let now = now_ms();
        Ok(UserModel {
            vector: vector.and_then(|b| unpack_any(&b)),
            consumed,
            affinities: affinity
                .into_iter()
                .filter_map(|(tag, v)| Some((tag, parse_score(&v)?.value_at(now, half_life))))
                .collect(),
            recent,
        })
    }

    async fn item_vectors(&self, site: &str) -> StoreResult<Arc<HashMap<String, Vec<f32>>>> {
        let version = self.serving().await?;
        let mut c = self.conn.clone();
        let all: HashMap<String, Vec<u8>> = c
            .hgetall(site_key(site, &versioned("item_vectors", version)))
            .await?;
        Ok(Arc::new(
            all.into_iter()
                .filter_map(|(item, b)| Some((item, unpack_any(&b)?)))
                .collect(),
        ))
    }

    async fn covisit_norms(&self, site: &str) -> StoreResult<Arc<HashMap<String, f64>>> {
        let mut c = self.conn.clone();
        let all: HashMap<String, f64> = c.hgetall(site_key(site, "covisit_norm")).await?;
        Ok(Arc::new(all))
    }

    async fn covisit_rows(&self, site: &str, items: &[String]) -> StoreResult<CovisitRows> {
        if items.is_empty() {
            return Ok(CovisitRows::new());
        }
        let mut c = self.conn.clone();
        let mut pipe = redis::pipe();
        for item in items {
            pipe.hgetall(covisit_row_key(site, item));
        }
        let rows: Vec<HashMap<String, f64>> = pipe.query_async(&mut c).await?;
        Ok(items.iter().cloned().zip(rows).collect())
    }

    async fn forget_user(&self, site: &str, user: &str) -> StoreResult<()> {
        let mut keys: Vec<String> = USER_KEYS.iter().map(|k| user_key(site, user, k)).collect();
        for v in self.model_registry().await?.versions {
            for base in VERSIONED_USER_KEYS {
                keys.push(user_key(site, user, &versioned(base, v.version)));
            }
        }
        // The forgotten marks go first: an event arriving meanwhile is ignored
        // (by ingest and the consumers' check: the site's set; by a profile
        // script already under way: the user's own mark) rather than
        // recreating what is being deleted. The user's keys share a slot.
        Pipes::new()
            .add_ignored(redis::Cmd::sadd(site_key(site, "forgotten"), user))
            .add_ignored(redis::Cmd::set(user_key(site, user, FORGOTTEN_MARK), 1))
            .add_ignored(redis::Cmd::del(keys))
            .query_async(&self.conn)
            .await?;
        // Its exposures in every phase of every experiment: an exposure on
        // its way finds the user in the forgotten set and is not kept.
        let mut pipes = Pipes::new();
        for e in self.experiments(site).await? {
            for phase in 1..=e.phase {
                pipes.add_ignored(redis::Cmd::hdel(exposures_key(site, &e.key, phase), user));
            }
        }
        pipes.query_async(&self.conn).await?;
        self.conn.wait_replicated().await?;
        Ok(())
    }

    async fn model_registry(&self) -> StoreResult<Registry> {
        let mut c = self.conn.clone();
        let fields: HashMap<String, String> = c.hgetall(model_key(&self.topic_prefix)).await?;
        Ok(Registry::from_fields(&fields))
    }

    async fn set_model_pointer(&self, registry: &Registry) -> StoreResult<()> {
        let mut c = self.conn.clone();
        let _: () = c
            .hset_multiple(model_key(&self.topic_prefix), &registry.pointer_fields())
            .await?;
        self.conn.wait_replicated().await?;
        *self.serving.lock().expect("not poisoned") = None;
        Ok(())
    }

    async fn consumer_stats(&self) -> StoreResult<Vec<ConsumerStats>> {
        let mut c = self.conn.clone();
        let all: HashMap<String, String> = c.hgetall(CONSUMERS_KEY).await?;
        let now_ms = crate::clock::now_ms();
        let mut stats: Vec<ConsumerStats> = all
            .values()
            .filter_map(|json| serde_json::from_str::<ConsumerStats>(json).ok())
            .filter(|s| now_ms - s.updated_at_ms < super::CONSUMER_STATS_MAX_AGE_MS)
            .collect();
        stats.sort_by(|a, b| a.member.cmp(&b.member));
        Ok(stats)
    }

    async fn rail_counts(&self, site: &str) -> StoreResult<RailCounts> {
        let mut c = self.conn.clone();
        let all: HashMap<String, u64> = c.hgetall(site_key(site, "rails")).await?;
        let mut counts = RailCounts::new();
        for (field, n) in all {
            add_rail_field(&mut counts, &field, n);
        }
        Ok(counts)
    }

    async fn experiments(&self, site: &str) -> StoreResult<Vec<Experiment>> {
        let mut c = self.conn.clone();
        let all: HashMap<String, String> = c.hgetall(site_key(site, "experiments")).await?;
        let mut out: Vec<Experiment> = all
            .values()
            .filter_map(|json| serde_json::from_str(json).ok())
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn put_experiment(&self, site: &str, experiment: &Experiment) -> StoreResult<()> {
        let mut c = self.conn.clone();
        let json = serde_json::to_string(experiment).map_err(|e| StoreError(e.to_string()))?;
        let _: () = c
            .hset(site_key(site, "experiments"), &experiment.key, json)
            .await?;
        self.conn.wait_replicated().await?;
        Ok(())
    }

    async fn record_exposure(&self, exposure: &Exposure) -> StoreResult<bool> {
        let mut c = self.conn.clone();
        let json = serde_json::to_string(exposure).map_err(|e| StoreError(e.to_string()))?;
        let kept: i64 = redis::Script::new(RECORD_EXPOSURE)
            .key(site_key(&exposure.site, "forgotten"))
            .key(exposures_key(
                &exposure.site,
                &exposure.experiment,
                exposure.phase,
            ))
            .arg(&exposure.unit)
            .arg(json)
            .invoke_async(&mut c)
            .await?;
        Ok(kept == 1)
    }

    async fn exposures(&self, site: &str, key: &str, phase: u32) -> StoreResult<Vec<Exposure>> {
        let mut c = self.conn.clone();
        let all: HashMap<String, String> = c.hgetall(exposures_key(site, key, phase)).await?;
        Ok(all
            .values()
            .filter_map(|json| serde_json::from_str(json).ok())
            .collect())
    }

    async fn unit_counters(&self, site: &str, users: &[String]) -> StoreResult<Vec<UnitCounters>> {
        let mut out = Vec::with_capacity(users.len());
        // A pipeline per thousand users keeps each reply small.
        for chunk in users.chunks(1_000) {
            let mut pipes = Pipes::new();
            for user in chunk {
                let mut fields = redis::cmd("HMGET");
                fields.arg(user_key(site, user, "profile")).arg(&[
                    "count:page_view",
                    "count:click",
                    "count:impression",
                    "dwell_ms_total",
                    "credit:a",
                    "credit:b",
                    "sessions",
                ]);
                pipes
                    .add(fields)
                    .add(redis::Cmd::scard(user_key(site, user, "consumed")));
            }
            let replies = pipes.query_async(&self.conn).await?;
            let parse = parsing;
            let mut replies = replies.into_iter();
            while let (Some(fields), Some(reads)) = (replies.next(), replies.next()) {
                let fields: Vec<Option<u64>> = redis::from_redis_value(fields).map_err(parse)?;
                let reads: u64 = redis::from_redis_value(reads).map_err(parse)?;
                let at = |i: usize| fields.get(i).copied().flatten().unwrap_or(0);
                out.push(UnitCounters {
                    page_views: at(0),
                    clicks: at(1),
                    impressions: at(2),
                    dwell_ms: at(3),
                    reads,
                    credit_a: at(4),
                    credit_b: at(5),
                    sessions: at(6),
                });
            }
        }
        Ok(out)
    }

    async fn add_ledger(&self, counts: &Counts) -> StoreResult<()> {
        let mut pipes = Pipes::new();
        for ((cell, measure), n) in counts {
            let key = ledger_key(&cell.site, cell.minute);
            pipes
                .add_ignored(redis::Cmd::hincr(&key, measure.field(&cell.kind), *n))
                .add_ignored(redis::Cmd::expire(&key, LEDGER_TTL_S));
        }
        pipes.query_async(&self.conn).await?;
        Ok(())
    }

    async fn ledger(&self, sites: &[String], minutes: Range<Minute>) -> StoreResult<Counts> {
        let cells: Vec<(&String, Minute)> = sites
            .iter()
            .flat_map(|site| minutes.clone().map(move |m| (site, m)))
            .collect();
        let mut pipes = Pipes::new();
        for (site, minute) in &cells {
            pipes.add(redis::Cmd::hgetall(ledger_key(site, *minute)));
        }
        let rows: Vec<HashMap<String, u64>> = pipes.query_async_as(&self.conn).await?;
        let mut out = Counts::new();
        for ((site, minute), row) in cells.into_iter().zip(rows) {
            for (field, n) in row {
                if let Some((measure, kind)) = Measure::parse_field(&field) {
                    crate::ledger::add(&mut out, minute, site, kind, measure, n);
                }
            }
        }
        Ok(out)
    }
}
