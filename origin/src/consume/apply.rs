//! Applies a batch of events to Redis profiles, idempotently: one Lua script
//! per user checks the partition watermark and the event id before it changes
//! anything, and records both with the change, atomically. A replay after a
//! crash (same offsets) and a client retry (same id, new offset) change nothing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use attune_core::experiments::Team;
use attune_core::rail;
use attune_core::{DeviceClass, HalfLife, Interaction};

use crate::record::EventRecord;
use redis::Commands;

use crate::config::SiteWeights;
use crate::model::covisit::CovisitConfig;
use crate::model::versions::{versioned, FIRST, SERVING_FIELD};
use crate::model::{initial, pack};
use crate::store::profile_event::{ProfileEvent, SESSION_GAP_MS};
use crate::store::redis::conn::{Pipes, SyncConn};
use crate::store::redis::{
    model_key, site_key, user_key, CONSUMERS_KEY, FORGOTTEN_MARK, LUA_DECAYED_ADD, LUA_VEC_ADD,
};
use crate::store::ConsumerStats;

/// How long event ids are remembered for deduplication (client retries and
/// persisted browser queues arrive within days).
pub const DEDUP_WINDOW_MS: i64 = 14 * 86_400_000;

/// One consumed message.
pub struct Incoming {
    /// Topic (with prefix).
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// The event.
    pub record: EventRecord,
}

/// A round's events by `(site, user)`, each user's in offset order.
pub type UserEvents = BTreeMap<(String, String), Vec<ProfileEvent>>;

/// What the consumers take from the catalog about an item.
#[derive(Debug, Clone, Default)]
pub struct CatalogFacts {
    /// Its categories and tags.
    pub tags: Vec<String>,
    /// Its length in words, if the site gave it.
    pub length_words: Option<u32>,
}

/// Groups a batch by `(site, user)` in offset order, with each event's weight
/// and its item's tags (every event `unseen` and a `first_record` until
/// [`ProfileWriter::mark_seen`]).
/// A dwell is weighed against its item's reading time and marked a read
/// when long enough.
pub fn by_user(
    batch: &[Incoming],
    weights: &SiteWeights,
    facts_of: &mut impl FnMut(&str, &str) -> CatalogFacts,
) -> UserEvents {
    let mut out = UserEvents::new();
    for m in batch {
        let r = &m.record;
        let e = &r.event;
        let (dwell_ms, depth_pct) = match e.interaction {
            Interaction::Dwell { visible_ms } => (Some(visible_ms), None),
            Interaction::Scroll { depth_pct } => (None, Some(depth_pct)),
            _ => (None, None),
        };
        let facts = e
            .item
            .as_deref()
            .map_or_else(CatalogFacts::default, |item| facts_of(&r.site_key, item));
        let site_weights = weights.of(&r.site_key);
        let (weight, read, read_through) = match (e.interaction, &e.item) {
            (Interaction::Dwell { visible_ms }, Some(_)) => (
                site_weights.dwell_weight(visible_ms, facts.length_words),
                site_weights.is_read(visible_ms, facts.length_words),
                site_weights
                    .is_read_through(visible_ms, facts.length_words)
                    .then_some(site_weights.read_through_pct),
            ),
            _ => (site_weights.event_weight(e), false, None),
        };
        let slot = e
            .slot
            .as_ref()
            .map(|s| (rail::ranker_of(&s.serve_id), s.position));
        let team = match (e.interaction, &e.slot) {
            (Interaction::Click, Some(s)) => {
                rail::team_at(&s.serve_id, s.position).map(|t| match t {
                    Team::A => "a",
                    Team::B => "b",
                })
            }
            _ => None,
        };
        let exposure = match (e.interaction, &slot) {
            (Interaction::Impression, Some(_)) => site_weights.exposure,
            _ => 0.0,
        };
        out.entry((r.site_key.clone(), r.user_id.clone()))
            .or_default()
            .push(ProfileEvent {
                id: e.id.simple().to_string(),
                topic_partition: format!("{}:{}", m.topic, m.partition),
                offset: m.offset,
                kind: e.kind().as_str(),
                ts_ms: r.corrected_ts_ms,
                item: e.item.clone(),
                dwell_ms,
                read,
                read_through,
                depth_pct,
                tags: facts.tags,
                weight,
                user_delta: None,
                device_class: r.device.class.map(DeviceClass::as_str),
                browser: r.device.browser.clone(),
                os: r.device.os.clone(),
                segments: r.segments.clone(),
                slot,
                team,
                exposure,
                unseen: true,
                first_record: true,
            });
    }
    out
}

/// KEYS: profile, seen, wm, affinity, scroll, vector, consumed, recent,
/// forgotten mark, vector watermarks, first records. ARGV: events
/// (MessagePack), half-life ms, dedup window ms, co-visitation window, the
/// user's initial factors (packed), the session gap ms. Returns how many
/// events were applied; a forgotten user gets nothing written.
///
/// The model version's change of the user's factors (`ud`) has its own
/// watermark: a version catching up learns from records the profile has.
const PROFILE_SCRIPT: &str = r"
if redis.call('EXISTS', KEYS[9]) == 1 then return 0 end
local events = cmsgpack.unpack(ARGV[1])
local h = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local recent = tonumber(ARGV[4])
local gap = tonumber(ARGV[6])
local applied, newest = 0, nil
for _, e in ipairs(events) do
  local wm = tonumber(redis.call('HGET', KEYS[3], e.tp) or '-1')
  if e.off > wm then
    redis.call('HSET', KEYS[3], e.tp, e.off)
    if redis.call('ZADD', KEYS[2], 'NX', e.ts, e.id) == 1 then
      redis.call('HSET', KEYS[11], e.id, e.tp .. ':' .. e.off)
      applied = applied + 1
      if newest == nil or e.ts > newest then newest = e.ts end
      redis.call('HINCRBY', KEYS[1], 'count:' .. e.kind, 1)
      if e.tm then redis.call('HINCRBY', KEYS[1], 'credit:' .. e.tm, 1) end
      local first = tonumber(redis.call('HGET', KEYS[1], 'first_seen_ms'))
      if first == nil or e.ts < first then redis.call('HSET', KEYS[1], 'first_seen_ms', string.format('%d', e.ts)) end
      local last = tonumber(redis.call('HGET', KEYS[1], 'last_seen_ms'))
      if last == nil or e.ts > last + gap then redis.call('HINCRBY', KEYS[1], 'sessions', 1) end
      if last == nil or e.ts > last then redis.call('HSET', KEYS[1], 'last_seen_ms', string.format('%d', e.ts)) end
      if e.ms then redis.call('HINCRBY', KEYS[1], 'dwell_ms_total', e.ms) end
      if e.dp and e.item then
        local cur = tonumber(redis.call('HGET', KEYS[5], e.item) or '-1')
        if e.dp > cur then redis.call('HSET', KEYS[5], e.item, e.dp) end
      end
      if e.dc then redis.call('HSET', KEYS[1], 'device_class', e.dc) end
      if e.br then redis.call('HSET', KEYS[1], 'browser', e.br) end
      if e.os then redis.call('HSET', KEYS[1], 'os', e.os) end
      if e.w ~= 0 then
        for _, tag in ipairs(e.tags) do decayed_add(KEYS[4], tag, e.w, e.ts, h) end
      end
      local through = e.rt and tonumber(redis.call('HGET', KEYS[5], e.item) or '-1') >= e.rt
      if e.item and (e.kind == 'click' or e.rd or through) then redis.call('SADD', KEYS[7], e.item) end
      if e.item and e.w > 0 then
        redis.call('LREM', KEYS[8], 0, e.item)
        redis.call('LPUSH', KEYS[8], e.item)
        redis.call('LTRIM', KEYS[8], 0, recent - 1)
      end
    end
  end
  if e.ud and e.off > tonumber(redis.call('HGET', KEYS[10], e.tp) or '-1') then
    local cur = redis.call('GET', KEYS[6]) or ARGV[5]
    redis.call('SET', KEYS[6], vec_add(cur, e.ud))
    redis.call('HSET', KEYS[10], e.tp, e.off)
    redis.call('HINCRBY', KEYS[10], 'steps', 1)
  end
end
if newest then
  local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', newest - window)
  for i = 1, #old, 500 do redis.call('HDEL', KEYS[11], unpack(old, i, math.min(i + 499, #old))) end
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', newest - window)
end
return applied
";

/// Redis writes of the consumer (a blocking connection: the consumer loop is
/// synchronous).
pub struct ProfileWriter {
    conn: SyncConn,
    script: redis::Script,
    catalog: HashMap<String, (Instant, HashMap<String, CatalogFacts>)>,
}

/// How long the consumer trusts its copy of a site's catalog.
const CATALOG_TTL: Duration = Duration::from_secs(5);

impl ProfileWriter {
    /// Connects.
    pub fn connect(url: &str) -> redis::RedisResult<Self> {
        let conn = SyncConn::open(url)?;
        Ok(ProfileWriter {
            conn,
            script: redis::Script::new(&format!("{LUA_DECAYED_ADD}{LUA_VEC_ADD}{PROFILE_SCRIPT}")),
            catalog: HashMap::new(),
        })
    }

    /// What the site's catalog says of `item` (refreshed every few seconds).
    pub fn facts_of(&mut self, site: &str, item: &str) -> CatalogFacts {
        let stale = self
            .catalog
            .get(site)
            .is_none_or(|(at, _)| at.elapsed() > CATALOG_TTL);
        if stale {
            let key = site_key(site, "items");
            let items: HashMap<String, String> = redis::cmd("HGETALL")
                .arg(&key)
                .query(&mut self.conn)
                .unwrap_or_default();
            let facts = items
                .into_iter()
                .filter_map(|(id, json)| {
                    let item: crate::store::Item = serde_json::from_str(&json).ok()?;
                    let facts = CatalogFacts {
                        tags: item.tags,
                        length_words: item.length_words,
                    };
                    Some((id, facts))
                })
                .collect();
            self.catalog
                .insert(site.to_owned(), (Instant::now(), facts));
        }
        self.catalog
            .get(site)
            .and_then(|(_, facts)| facts.get(item).cloned())
            .unwrap_or_default()
    }

    /// Drops the events of users who asked to be forgotten.
    pub fn drop_forgotten(&mut self, groups: &mut UserEvents) -> redis::RedisResult<()> {
        if groups.is_empty() {
            return Ok(());
        }
        let mut pipes = Pipes::new();
        for (site, user) in groups.keys() {
            pipes.add(redis::Cmd::sismember(site_key(site, "forgotten"), user));
        }
        let forgotten: Vec<bool> = pipes.query_as(&mut self.conn)?;
        let mut flags = forgotten.into_iter();
        groups.retain(|_, _| !flags.next().unwrap_or(false));
        Ok(())
    }

    /// Marks as not `unseen` each event whose id its user already has, or
    /// that came earlier in the round: popularity learns only from the
    /// rest (the profile script decides the same by itself). Marks
    /// `first_record` the records that were the first with their id, for a
    /// model version that catches up by replay.
    pub fn mark_seen(&mut self, groups: &mut UserEvents) -> redis::RedisResult<()> {
        if groups.is_empty() {
            return Ok(());
        }
        let mut pipes = Pipes::new();
        for ((site, user), events) in groups.iter() {
            let mut cmd = redis::cmd("ZMSCORE");
            cmd.arg(user_key(site, user, "seen"));
            for e in events {
                cmd.arg(&e.id);
            }
            pipes.add(cmd);
            let mut cmd = redis::cmd("HMGET");
            cmd.arg(user_key(site, user, "first"));
            for e in events {
                cmd.arg(&e.id);
            }
            pipes.add(cmd);
        }
        let answers = pipes.query(&mut self.conn)?;
        let mut answers = answers.into_iter();
        for events in groups.values_mut() {
            let seen: Vec<Option<f64>> =
                redis::from_redis_value(answers.next().unwrap_or(redis::Value::Nil))?;
            let first: Vec<Option<String>> =
                redis::from_redis_value(answers.next().unwrap_or(redis::Value::Nil))?;
            let mut ids = HashSet::new();
            for ((e, s), f) in events.iter_mut().zip(seen).zip(first) {
                e.unseen = s.is_none() && ids.insert(e.id.clone());
                e.first_record = e.unseen
                    || f.is_some_and(|f| f == format!("{}:{}", e.topic_partition, e.offset));
            }
        }
        Ok(())
    }

    /// Publishes this consumer's stats for the dashboard.
    pub fn publish_stats(&mut self, stats: &ConsumerStats) -> redis::RedisResult<()> {
        let json = serde_json::to_string(stats).expect("stats serialize");
        self.conn.hset(CONSUMERS_KEY, &stats.member, json)
    }

    /// Removes a stopped consumer's stats.
    pub fn retire_stats(&mut self, member: &str) -> redis::RedisResult<()> {
        self.conn.hdel(CONSUMERS_KEY, member)
    }

    /// Records where the store and the model `version` resume each
    /// partition ([`super::resume`]).
    pub fn record_positions(
        &mut self,
        next: &BTreeMap<(String, i32), i64>,
        model: super::resume::Trained,
    ) -> redis::RedisResult<()> {
        super::resume::record(&mut self.conn, next, Some(model))
    }

    /// The serving model version of the deployment with `topic_prefix`.
    pub fn serving_version(&mut self, topic_prefix: &str) -> redis::RedisResult<u32> {
        let v: Option<u32> = self.conn.hget(model_key(topic_prefix), SERVING_FIELD)?;
        Ok(v.unwrap_or(FIRST))
    }

    /// Applies one user's events; returns how many were new.
    pub fn apply(
        &mut self,
        site: &str,
        user: &str,
        events: &[ProfileEvent],
        half_life: HalfLife,
        version: u32,
    ) -> redis::RedisResult<u64> {
        let payload = rmp_serde::to_vec_named(events).expect("script events serialize");
        // A user's vector starts as the model's initial one, of the size the
        // trainer's changes have (nothing to start when there are none).
        let start = events
            .iter()
            .find_map(|e| e.user_delta.as_ref())
            .map_or_else(Vec::new, |d| {
                pack(&initial(&format!("{site}/{user}"), d.len()))
            });
        self.script
            .key(user_key(site, user, "profile"))
            .key(user_key(site, user, "seen"))
            .key(user_key(site, user, "wm"))
            .key(user_key(site, user, "affinity"))
            .key(user_key(site, user, "scroll"))
            .key(user_key(site, user, &versioned("vector", version)))
            .key(user_key(site, user, "consumed"))
            .key(user_key(site, user, "recent"))
            .key(user_key(site, user, FORGOTTEN_MARK))
            .key(user_key(site, user, &versioned("vector_wm", version)))
            .key(user_key(site, user, "first"))
            .arg(payload)
            .arg(half_life.as_ms())
            .arg(DEDUP_WINDOW_MS)
            .arg(CovisitConfig::default().window)
            .arg(start)
            .arg(SESSION_GAP_MS)
            .invoke(&mut self.conn)
    }
}
