//! Served rails' counts: each impression and click of a served item (an
//! event with a rail slot) adds one to its ranker's count at its position
//! (`store::rail_field`), once per event like popularity — the round's
//! unseen events only, each site's counts past their `topic:partition`
//! offset watermark in the same Lua call, so neither a client retry nor a
//! replayed round counts twice. `/metrics` and the dashboard read them.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::store::profile_event::ProfileEvent;
use crate::store::redis::conn::{Pipes, SyncConn};
use crate::store::redis::site_key;
use crate::store::{rail_field, RailOutcome};

/// KEYS: rails, rails_wm. ARGV: counts (MessagePack, in `topic:partition`,
/// offset order).
const COUNT_SCRIPT: &str = r"
local counts = cmsgpack.unpack(ARGV[1])
for _, c in ipairs(counts) do
  local wm = tonumber(redis.call('HGET', KEYS[2], c.tp) or '-1')
  if c.off > wm then
    redis.call('HINCRBY', KEYS[1], c.f, 1)
    redis.call('HSET', KEYS[2], c.tp, c.off)
  end
end
return 1
";

/// One event's count.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RailTick {
    /// The count it adds one to (`store::rail_field`).
    #[serde(rename = "f")]
    pub field: String,
    /// `topic:partition` of the site's watermark.
    #[serde(rename = "tp")]
    pub topic_partition: String,
    /// Offset in that partition.
    #[serde(rename = "off")]
    pub offset: i64,
}

/// The count an event adds to, if it is an impression or click of a served item.
pub fn field_of(event: &ProfileEvent) -> Option<String> {
    let (ranker, position) = event.slot?;
    let outcome = match event.kind {
        "impression" => RailOutcome::Shown,
        "click" => RailOutcome::Clicked,
        _ => return None,
    };
    Some(rail_field(ranker, position, outcome))
}

/// The round's counts per site, from its unseen events, in
/// `topic:partition`, offset order (a watermark only moves forward).
pub fn ticks(
    groups: &BTreeMap<(String, String), Vec<ProfileEvent>>,
) -> BTreeMap<String, Vec<RailTick>> {
    let mut out: BTreeMap<String, Vec<RailTick>> = BTreeMap::new();
    for ((site, _), events) in groups {
        for e in events.iter().filter(|e| e.unseen) {
            if let Some(field) = field_of(e) {
                out.entry(site.clone()).or_default().push(RailTick {
                    field,
                    topic_partition: e.topic_partition.clone(),
                    offset: e.offset,
                });
            }
        }
    }
    for ticks in out.values_mut() {
        ticks.sort_by(|a, b| (&a.topic_partition, a.offset).cmp(&(&b.topic_partition, b.offset)));
    }
    out
}

/// The consumer's rail counter.
pub struct RailWriter {
    conn: SyncConn,
    script: redis::Script,
}

impl RailWriter {
    /// Connects.
    pub fn connect(url: &str) -> redis::RedisResult<Self> {
        Ok(RailWriter {
            conn: SyncConn::open(url)?,
            script: redis::Script::new(COUNT_SCRIPT),
        })
    }

    /// Waits until Redis replicas hold this writer's writes (on a cluster).
    pub fn wait_replicated(&mut self) -> redis::RedisResult<()> {
        self.conn.wait_replicated()
    }

    /// Counts the round's unseen served impressions and clicks, one script
    /// call per site (in the site's slot).
    pub fn count(
        &mut self,
        groups: &BTreeMap<(String, String), Vec<ProfileEvent>>,
    ) -> redis::RedisResult<()> {
        let ticks = ticks(groups);
        if ticks.is_empty() {
            return Ok(());
        }
        let mut pipes = Pipes::new();
        for (site, ticks) in &ticks {
            let payload = rmp_serde::to_vec_named(ticks).expect("ticks serialize");
            pipes.invoke(
                &self.script,
                self.script
                    .key(site_key(site, "rails"))
                    .key(site_key(site, "rails_wm"))
                    .arg(payload),
            );
        }
        pipes.query(&mut self.conn).map(drop)
    }
}
