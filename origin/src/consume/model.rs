//! The online model's updates in the consumer, exactly once like the profiles.
//!
//! Per batch: events whose ids the user already has are left out; every new
//! event with a positive weight takes one SGD step for its item and a few
//! popularity-sampled negatives (`crate::model`), its weight decayed by the
//! event's age ([`RECENCY_HALF_LIFE_H`]: a backlog replayed late teaches less
//! than what happens now). Each item's change is
//! applied by a Lua script only past that item's `topic:partition` offset
//! watermark (so a replay adds nothing); each user's change rides in the
//! profile script, which applies it only with the event's id (so a retry adds
//! nothing). Vectors are little-endian f32 strings: users at
//! `attune:{site/user}:vector`, items in the hash `attune:{site}:item_vectors`.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use super::apply::ScriptEvent;
use crate::clock::now_ms;
use crate::model::{initial, step, MfConfig};
use crate::store::redis::user_key;

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

#[derive(Serialize)]
struct ItemUpdate {
    item: String,
    tp: String,
    off: i64,
    d: Vec<f32>,
}

/// Packs a vector as little-endian f32.
pub fn pack(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Unpacks a little-endian f32 vector; `None` if the length is not `dim`.
pub fn unpack(bytes: &[u8], dim: usize) -> Option<Vec<f32>> {
    (bytes.len() == dim * 4).then(|| {
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    })
}

fn items_key(site: &str, what: &str) -> String {
    format!("attune:{{{site}}}:{what}")
}

/// The consumer's model writer.
pub struct ModelWriter {
    conn: redis::Connection,
    item_script: redis::Script,
    cfg: MfConfig,
    /// Recent positive items per site: drawing uniformly from them samples
    /// negatives in proportion to popularity.
    recent: HashMap<String, Vec<String>>,
    rng: u64,
}

const RECENT: usize = 10_000;

/// Half-life of an event's weight in the model, by its age when learned.
pub const RECENCY_HALF_LIFE_H: f64 = 7.0 * 24.0;

impl ModelWriter {
    /// Connects.
    pub fn connect(url: &str, cfg: MfConfig) -> redis::RedisResult<Self> {
        Ok(ModelWriter {
            conn: redis::Client::open(url)?.get_connection()?,
            item_script: redis::Script::new(&format!("{LUA_VEC_ADD}{ITEM_SCRIPT}")),
            cfg,
            recent: HashMap::new(),
            rng: 0x2545_f491_4f6c_dd1d ^ u64::from(std::process::id()),
        })
    }

    fn random(&mut self) -> usize {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 1) as usize
    }

    /// Computes this batch's model steps, applies the item side, and leaves the
    /// user side in each event's `user_delta` for the profile script.
    pub fn update(
        &mut self,
        groups: &mut BTreeMap<(String, String), Vec<ScriptEvent>>,
    ) -> redis::RedisResult<()> {
        // Redis refuses an empty pipeline (a batch of only undecodable records).
        if groups.is_empty() {
            return Ok(());
        }
        let dim = self.cfg.dim;
        // 1. Which events are new to their user (ids not yet applied)?
        let mut pipe = redis::pipe();
        for ((site, user), events) in groups.iter() {
            let mut cmd = redis::cmd("ZMSCORE");
            cmd.arg(user_key(site, user, "seen"));
            for e in events {
                cmd.arg(&e.id);
            }
            pipe.add_command(cmd);
        }
        let seen: Vec<Vec<Option<f64>>> = pipe.query(&mut self.conn)?;

        // 2. Negatives, and the vectors to read (created at their start point if new).
        let mut plan: Vec<(usize, usize, Vec<String>)> = Vec::new(); // (group, event, negatives)
        let mut items: HashSet<(String, String)> = HashSet::new();
        for (g, (((site, _), events), seen)) in groups.iter().zip(&seen).enumerate() {
            let mut ids = HashSet::new();
            for (k, (e, s)) in events.iter().zip(seen).enumerate() {
                let Some(item) = e.item.as_deref() else {
                    continue;
                };
                if s.is_some() || e.w <= 0.0 || !ids.insert(e.id.clone()) {
                    continue;
                }
                let mut negatives = Vec::new();
                for _ in 0..self.cfg.negatives {
                    let r = self.random();
                    if let Some(pool) = self.recent.get(site).filter(|p| !p.is_empty()) {
                        let j = &pool[r % pool.len()];
                        if j != item {
                            negatives.push(j.clone());
                        }
                    }
                }
                items.insert((site.clone(), item.to_owned()));
                items.extend(negatives.iter().map(|j| (site.clone(), j.clone())));
                plan.push((g, k, negatives));
            }
        }
        if plan.is_empty() {
            return Ok(());
        }
        let keys: Vec<(String, String)> = groups.keys().cloned().collect();
        let items: Vec<(String, String)> = items.into_iter().collect();
        let mut pipe = redis::pipe();
        for (site, user) in &keys {
            pipe.cmd("SET")
                .arg(user_key(site, user, "vector"))
                .arg(pack(&initial(&format!("{site}/{user}"), dim)))
                .arg("NX")
                .ignore();
        }
        for (site, item) in &items {
            pipe.hset_nx(
                items_key(site, "item_vectors"),
                item,
                pack(&initial(&format!("{site}/{item}"), dim)),
            )
            .ignore();
        }
        for (site, user) in &keys {
            pipe.get(user_key(site, user, "vector"));
        }
        for (site, item) in &items {
            pipe.hget(items_key(site, "item_vectors"), item);
        }
        let raw: Vec<Option<Vec<u8>>> = pipe.query(&mut self.conn)?;
        let fresh = |key: &str| initial(key, dim);
        let mut user_vecs: Vec<Vec<f32>> = keys
            .iter()
            .zip(&raw)
            .map(|((s, u), b)| {
                b.as_deref()
                    .and_then(|b| unpack(b, dim))
                    .unwrap_or_else(|| fresh(&format!("{s}/{u}")))
            })
            .collect();
        let mut item_vecs: HashMap<(String, String), Vec<f32>> = items
            .iter()
            .zip(&raw[keys.len()..])
            .map(|((s, i), b)| {
                let v = b
                    .as_deref()
                    .and_then(|b| unpack(b, dim))
                    .unwrap_or_else(|| fresh(&format!("{s}/{i}")));
                ((s.clone(), i.clone()), v)
            })
            .collect();

        // 3. The steps, in batch order; deltas per event (user) and per item.
        let recency = attune_core::HalfLife::from_hours(RECENCY_HALF_LIFE_H).expect("positive");
        let now = now_ms();
        let mut updates: BTreeMap<String, Vec<ItemUpdate>> = BTreeMap::new();
        let group_refs: Vec<&mut Vec<ScriptEvent>> = groups.values_mut().collect();
        let mut group_refs = group_refs;
        for (g, k, negatives) in plan {
            let site = keys[g].0.clone();
            let event = &mut group_refs[g][k];
            let item = event.item.clone().unwrap_or_default();
            let u = &mut user_vecs[g];
            let before = u.clone();
            let weight = event.w * recency.factor(now.saturating_sub(event.ts).max(0));
            let mut touched = vec![(item.clone(), 1.0f32, weight as f32)];
            touched.extend(
                negatives
                    .into_iter()
                    .map(|j| (j, 0.0, self.cfg.negative_weight)),
            );
            for (j, target, weight) in touched {
                let Some(q) = item_vecs.get_mut(&(site.clone(), j.clone())) else {
                    continue;
                };
                let q_before = q.clone();
                step(u, q, target, weight, &self.cfg);
                updates.entry(site.clone()).or_default().push(ItemUpdate {
                    item: j,
                    tp: event.tp.clone(),
                    off: event.off,
                    d: q.iter().zip(&q_before).map(|(a, b)| a - b).collect(),
                });
            }
            event.user_delta = Some(u.iter().zip(&before).map(|(a, b)| a - b).collect());
            let pool = self.recent.entry(site).or_default();
            if pool.len() >= RECENT {
                let r = self.rng as usize % RECENT;
                pool[r] = item;
            } else {
                pool.push(item);
            }
        }

        // 4. Item side, past each item's watermark.
        for (site, mut ups) in updates {
            ups.sort_by(|a, b| (&a.tp, a.off).cmp(&(&b.tp, b.off)));
            let payload = rmp_serde::to_vec_named(&ups).expect("updates serialize");
            let _: i64 = self
                .item_script
                .key(items_key(&site, "item_vectors"))
                .key(items_key(&site, "item_wm"))
                .arg(payload)
                .invoke(&mut self.conn)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_pack_and_unpack() {
        let v = initial("x", 8);
        assert_eq!(unpack(&pack(&v), 8), Some(v));
        assert_eq!(unpack(&[0; 7], 8), None);
    }
}
