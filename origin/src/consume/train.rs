//! Trains the online model in Redis from each consumed batch, exactly once
//! like the profiles. The math is `crate::model::online` and
//! `crate::model::covisit`, the same code `cargo xtask eval` scores.
//!
//! It trains the serving model version (`model::versions`), under that
//! version's keys. Per batch: records that are not the first with their id
//! are left out (`first_record`, `apply::ProfileWriter::mark_seen`), and so
//! are those the version's fit already learned; every new
//! event with an item and a positive weight takes its factor steps (its
//! weight decayed by its age) and, when its item is new to the reader's
//! window, a co-visit with the window's items (co-visits are not versioned:
//! they learn only what the profile has not seen); every new impression of a
//! served item (an exposure) takes one step toward 0. Item factors and co-visit rows
//! are changed by Lua scripts only past that item's `topic:partition` offset
//! watermark (so a replay adds nothing); the user's factor change rides in
//! the profile script, past the version's own watermark on the user, and
//! the window with the event's id (so a retry adds nothing). A version
//! that starts serving catches up because the consumers restart from where
//! it stopped (`resume`): the records replayed are first records the
//! profile has, which the version learns and nothing else does. Keys:
//! `crate::store::redis`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::clock::now_ms;
use crate::model::covisit::CovisitConfig;
use crate::model::online::{age_weighted, expose, learn, NegativePool};
use crate::model::validation::Validator;
use crate::model::versions::{versioned, VersionInfo};
use crate::model::{initial, pack, unpack, MfConfig};
use crate::store::profile_event::ProfileEvent;
use crate::store::redis::conn::{Pipes, SyncConn};
use crate::store::redis::{covisit_row_key, site_key, user_key, LUA_VEC_ADD};

/// KEYS: item_vectors, item_wm. ARGV: updates (MessagePack).
const ITEM_SCRIPT: &str = r"
local updates = cmsgpack.unpack(ARGV[1])
for _, u in ipairs(updates) do
  local field = u.item .. '|' .. u.tp
  local wm = tonumber(redis.call('HGET', KEYS[2], field) or '-1')
  if u.off > wm then
    local cur = redis.call('HGET', KEYS[1], u.item)
    if cur then redis.call('HSET', KEYS[1], u.item, vec_add(cur, u.d)) end
    redis.call('HSET', KEYS[2], field, u.off)
  end
end
return 1
";

/// KEYS: covisit_norm, covisit_wm. ARGV: row key prefix (`attune:{site}:covisit:`,
/// so every row shares the site's hash tag), updates (MessagePack), row cap.
/// Each changed row is trimmed by `model::covisit::trim`'s rule (ties by
/// byte order, not the server's locale).
const COVISIT_SCRIPT: &str = r"
local updates = cmsgpack.unpack(ARGV[2])
local cap = tonumber(ARGV[3])
local function before(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = a:byte(i), b:byte(i)
    if x ~= y then return x < y end
  end
  return #a < #b
end
local function trim(row)
  if redis.call('HLEN', row) <= 2 * cap then return end
  local flat = redis.call('HGETALL', row)
  local cells = {}
  for i = 1, #flat, 2 do cells[#cells + 1] = {flat[i], tonumber(flat[i + 1])} end
  table.sort(cells, function(a, b)
    if a[2] ~= b[2] then return a[2] > b[2] end
    return before(a[1], b[1])
  end)
  for i = cap + 1, #cells do redis.call('HDEL', row, cells[i][1]) end
end
for _, u in ipairs(updates) do
  local field = u.row .. '|' .. u.tp
  local wm = tonumber(redis.call('HGET', KEYS[2], field) or '-1')
  if u.off > wm then
    if u.norm ~= 0 then redis.call('HINCRBYFLOAT', KEYS[1], u.row, u.norm) end
    local row = ARGV[1] .. u.row
    for other, amount in pairs(u.cells) do
      redis.call('HINCRBYFLOAT', row, other, amount)
    end
    trim(row)
    redis.call('HSET', KEYS[2], field, u.off)
  end
end
return 1
";

#[derive(Serialize)]
struct ItemUpdate {
    item: String,
    tp: String,
    off: i64,
    d: Vec<f32>,
}

/// One event's change of one co-visit row.
#[derive(Serialize)]
struct RowUpdate {
    row: String,
    tp: String,
    off: i64,
    norm: f64,
    cells: HashMap<String, f64>,
}

/// Position of a planned event: (group, event in group, negatives).
type Planned = (usize, usize, Vec<String>);

/// The consumer's model trainer.
pub struct Trainer {
    conn: SyncConn,
    item_script: redis::Script,
    covisit_script: redis::Script,
    cfg: MfConfig,
    /// The version trained: its keys, and where its fit ends.
    version: VersionInfo,
    covisit: CovisitConfig,
    negatives: HashMap<String, NegativePool>,
    /// Live validation of the factors, before each sampled engagement is learned.
    validator: Validator,
    /// Each site's item factors as of its last read (at most
    /// [`SNAPSHOT_MAX_AGE`] old), with this trainer's own steps since: what
    /// validation ranks among.
    snapshots: HashMap<String, (Instant, HashMap<String, Vec<f32>>)>,
}

/// How stale the validation's copy of a site's item factors may get (other
/// consumers' steps reach it this late).
const SNAPSHOT_MAX_AGE: Duration = Duration::from_secs(1);

impl Trainer {
    /// Connects, to train `version`.
    pub fn connect(
        url: &str,
        version: VersionInfo,
        validator: Validator,
    ) -> redis::RedisResult<Self> {
        Ok(Trainer {
            conn: SyncConn::open(url)?,
            item_script: redis::Script::new(&format!("{LUA_VEC_ADD}{ITEM_SCRIPT}")),
            covisit_script: redis::Script::new(COVISIT_SCRIPT),
            cfg: version.recipe.config(),
            version,
            covisit: CovisitConfig::default(),
            negatives: HashMap::new(),
            validator,
            snapshots: HashMap::new(),
        })
    }

    /// Waits until Redis replicas hold this writer's writes (on a cluster).
    pub fn wait_replicated(&mut self) -> redis::RedisResult<()> {
        self.conn.wait_replicated()
    }

    /// The version trained.
    pub fn version(&self) -> u32 {
        self.version.version
    }

    /// The live validation so far.
    pub fn validator(&self) -> &Validator {
        &self.validator
    }

    /// Learns this batch: applies the item side and leaves the user side in
    /// each event's `user_delta` for the profile script.
    pub fn update(
        &mut self,
        groups: &mut BTreeMap<(String, String), Vec<ProfileEvent>>,
    ) -> redis::RedisResult<()> {
        // Redis refuses an empty pipeline (a batch of only undecodable records).
        if groups.is_empty() {
            return Ok(());
        }
        let plan = self.plan(groups);
        if plan.is_empty() {
            return Ok(());
        }
        let keys: Vec<(String, String)> = groups.keys().cloned().collect();
        // Before this batch's new items are created: validation ranks among
        // the items learned so far, and the one predicted.
        self.refresh_snapshots(&keys, &plan)?;
        let (mut users, mut windows, mut vectors) = self.read_state(&keys, &plan, groups)?;

        // The steps, in batch order.
        let now = now_ms();
        let mut items: BTreeMap<String, Vec<ItemUpdate>> = BTreeMap::new();
        let mut rows: BTreeMap<String, Vec<RowUpdate>> = BTreeMap::new();
        let mut events: Vec<&mut Vec<ProfileEvent>> = groups.values_mut().collect();
        for (g, k, negatives) in plan {
            let site = &keys[g].0;
            let event = &mut events[g][k];
            let item = event.item.clone().unwrap_or_default();
            let (tp, off) = (event.topic_partition.clone(), event.offset);
            if event.weight <= 0.0 {
                // Planned as an exposure.
                let weight = age_weighted(event.exposure, event.ts_ms, now) as f32;
                let site_vectors = vectors.entry(site.clone()).or_default();
                let delta = expose(&mut users[g], site_vectors, &item, weight, &self.cfg);
                self.remember(site, &delta.items, &vectors);
                items
                    .entry(site.clone())
                    .or_default()
                    .extend(delta.items.into_iter().map(|(item, d)| ItemUpdate {
                        item,
                        tp: tp.clone(),
                        off,
                        d,
                    }));
                event.user_delta = Some(delta.user);
                continue;
            }
            // Live traffic only: a version catching up is not predicting.
            if event.unseen && self.validator.wants(&event.id, &item, &windows[g]) {
                if let Some((_, snapshot)) = self.snapshots.get_mut(site) {
                    let v = &vectors[site][&item];
                    snapshot.entry(item.clone()).or_insert_with(|| v.clone());
                    self.validator
                        .evaluate(&users[g], &item, snapshot, &windows[g]);
                }
            }
            let weight = age_weighted(event.weight, event.ts_ms, now) as f32;
            let mut learned = learn(
                &mut users[g],
                &mut windows[g],
                vectors.entry(site.clone()).or_default(),
                &item,
                weight,
                &negatives,
                &self.cfg,
                &self.covisit,
            );
            self.remember(site, &learned.factors.items, &vectors);
            if !event.unseen {
                // A replayed first record: the co-visits have it.
                learned.covisit = None;
            }
            items
                .entry(site.clone())
                .or_default()
                .extend(
                    learned
                        .factors
                        .items
                        .into_iter()
                        .map(|(item, d)| ItemUpdate {
                            item,
                            tp: tp.clone(),
                            off,
                            d,
                        }),
                );
            event.user_delta = Some(learned.factors.user);
            if let Some(v) = learned.covisit {
                let site_rows = rows.entry(site.clone()).or_default();
                site_rows.push(RowUpdate {
                    row: v.item.clone(),
                    tp: tp.clone(),
                    off,
                    norm: v.norm,
                    cells: v.pairs.iter().cloned().collect(),
                });
                site_rows.extend(v.pairs.into_iter().map(|(j, amount)| RowUpdate {
                    row: j,
                    tp: tp.clone(),
                    off,
                    norm: 0.0,
                    cells: HashMap::from([(item.clone(), amount)]),
                }));
            }
            self.pool(site).record(&item);
        }
        self.write(items, rows)
    }

    /// Re-reads the item factors of the sites whose engagements this plan
    /// may evaluate, where the copy is stale.
    fn refresh_snapshots(
        &mut self,
        keys: &[(String, String)],
        plan: &[Planned],
    ) -> redis::RedisResult<()> {
        if self.validator.rate <= 0.0 {
            return Ok(());
        }
        let sites: HashSet<&str> = plan.iter().map(|(g, _, _)| keys[*g].0.as_str()).collect();
        for site in sites {
            if self
                .snapshots
                .get(site)
                .is_some_and(|(at, _)| at.elapsed() < SNAPSHOT_MAX_AGE)
            {
                continue;
            }
            let raw: HashMap<String, Vec<u8>> = redis::cmd("HGETALL")
                .arg(site_key(site, &self.items_key()))
                .query(&mut self.conn)?;
            let dim = self.cfg.dim;
            let vectors = raw
                .into_iter()
                .filter_map(|(item, b)| Some((item, unpack(&b, dim)?)))
                .collect();
            self.snapshots
                .insert(site.to_owned(), (Instant::now(), vectors));
        }
        Ok(())
    }

    /// Copies the items a step changed into the site's validation snapshot.
    fn remember(
        &mut self,
        site: &str,
        changed: &[(String, Vec<f32>)],
        vectors: &HashMap<String, HashMap<String, Vec<f32>>>,
    ) {
        let Some((_, snapshot)) = self.snapshots.get_mut(site) else {
            return;
        };
        for (item, _) in changed {
            if let Some(v) = vectors.get(site).and_then(|s| s.get(item)) {
                snapshot.insert(item.clone(), v.clone());
            }
        }
    }

    fn items_key(&self) -> String {
        versioned("item_vectors", self.version.version)
    }

    fn pool(&mut self, site: &str) -> &mut NegativePool {
        self.negatives
            .entry(site.to_owned())
            .or_insert_with(|| NegativePool::for_site(site))
    }

    /// The unseen events with an item that teach the model — positives with
    /// their negatives, and exposures (no weight, an `exposure`) alone.
    fn plan(&mut self, groups: &BTreeMap<(String, String), Vec<ProfileEvent>>) -> Vec<Planned> {
        let mut plan = Vec::new();
        for (g, ((site, _), events)) in groups.iter().enumerate() {
            for (k, e) in events.iter().enumerate() {
                let Some(item) = e.item.as_deref() else {
                    continue;
                };
                if !e.first_record || !self.version.teaches(&e.topic_partition, e.offset) {
                    continue;
                }
                if e.weight <= 0.0 {
                    if e.exposure > 0.0 {
                        plan.push((g, k, Vec::new()));
                    }
                    continue;
                }
                let n = self.cfg.negatives;
                let negatives = self.pool(site).draw(n, item);
                plan.push((g, k, negatives));
            }
        }
        plan
    }

    /// The users' factors and windows, and the factors of every item the
    /// plan touches (created at their start point if new).
    #[allow(clippy::type_complexity)]
    fn read_state(
        &mut self,
        keys: &[(String, String)],
        plan: &[Planned],
        groups: &BTreeMap<(String, String), Vec<ProfileEvent>>,
    ) -> redis::RedisResult<(
        Vec<Vec<f32>>,
        Vec<Vec<String>>,
        HashMap<String, HashMap<String, Vec<f32>>>,
    )> {
        let dim = self.cfg.dim;
        let events: Vec<&Vec<ProfileEvent>> = groups.values().collect();
        let mut touched: HashSet<(&str, &str)> = HashSet::new();
        for (g, k, negatives) in plan {
            let site = keys[*g].0.as_str();
            touched.insert((site, events[*g][*k].item.as_deref().unwrap_or_default()));
            touched.extend(negatives.iter().map(|j| (site, j.as_str())));
        }
        let touched: Vec<(&str, &str)> = touched.into_iter().collect();
        // A user's vector is created by the profile script alone (from the
        // same initial factors), which writes nothing for a forgotten user.
        let (items_key, user_vector) =
            (self.items_key(), versioned("vector", self.version.version));
        let mut pipes = Pipes::new();
        for (site, item) in &touched {
            pipes.add_ignored(redis::Cmd::hset_nx(
                site_key(site, &items_key),
                item,
                pack(&initial(&format!("{site}/{item}"), dim)),
            ));
        }
        for (site, user) in keys {
            pipes.add(redis::Cmd::get(user_key(site, user, &user_vector)));
        }
        for (site, item) in &touched {
            pipes.add(redis::Cmd::hget(site_key(site, &items_key), item));
        }
        let raw: Vec<Option<Vec<u8>>> = pipes.query_as(&mut self.conn)?;
        let users = keys
            .iter()
            .zip(&raw)
            .map(|((s, u), b)| {
                b.as_deref()
                    .and_then(|b| unpack(b, dim))
                    .unwrap_or_else(|| initial(&format!("{s}/{u}"), dim))
            })
            .collect();
        let mut vectors: HashMap<String, HashMap<String, Vec<f32>>> = HashMap::new();
        for ((s, i), b) in touched.iter().zip(&raw[keys.len()..]) {
            let v = b
                .as_deref()
                .and_then(|b| unpack(b, dim))
                .unwrap_or_else(|| initial(&format!("{s}/{i}"), dim));
            vectors
                .entry((*s).to_owned())
                .or_default()
                .insert((*i).to_owned(), v);
        }
        let mut pipes = Pipes::new();
        for (site, user) in keys {
            pipes.add(redis::Cmd::lrange(user_key(site, user, "recent"), 0, -1));
        }
        let windows = pipes.query_as(&mut self.conn)?;
        Ok((users, windows, vectors))
    }

    /// Item factors and co-visit rows, each past its watermark.
    fn write(
        &mut self,
        items: BTreeMap<String, Vec<ItemUpdate>>,
        rows: BTreeMap<String, Vec<RowUpdate>>,
    ) -> redis::RedisResult<()> {
        let v = self.version.version;
        for (site, ups) in items {
            let payload = in_offset_order(ups, |u| (&u.tp, u.off));
            let _: i64 = self
                .item_script
                .key(site_key(&site, &versioned("item_vectors", v)))
                .key(site_key(&site, &versioned("item_wm", v)))
                .arg(payload)
                .invoke(&mut self.conn)?;
        }
        for (site, ups) in rows {
            let payload = in_offset_order(ups, |u| (&u.tp, u.off));
            let _: i64 = self
                .covisit_script
                .key(site_key(&site, "covisit_norm"))
                .key(site_key(&site, "covisit_wm"))
                .arg(covisit_row_key(&site, ""))
                .arg(payload)
                .arg(self.covisit.row_cap)
                .invoke(&mut self.conn)?;
        }
        Ok(())
    }
}

/// A script's updates as MessagePack, in `topic:partition`, offset order: each
/// watermark then moves forward only.
fn in_offset_order<T: Serialize>(mut ups: Vec<T>, key: impl Fn(&T) -> (&String, i64)) -> Vec<u8> {
    ups.sort_by(|a, b| key(a).cmp(&key(b)));
    rmp_serde::to_vec_named(&ups).expect("updates serialize")
}
