//! Item popularity from the consumed events, counted once per event like the
//! profiles: site-wide and per contextual segment (the segments ingest put in
//! the record), each event with an item and a non-zero weight adding its
//! weight at its time to a decayed sum.
//!
//! Once per event: an event whose id the user already had is left out (the
//! round's `unseen` mark), and each scope's sum changes only past that
//! scope's `topic:partition` offset watermark, in the same Lua call — so a
//! client retry (same id, new offset) and a replayed round (same offsets)
//! add nothing. The credit runs before the profile script, which records the
//! ids; a crash between the two replays a round whose credits the
//! watermarks already hold.

use std::collections::BTreeMap;

use attune_core::HalfLife;
use serde::Serialize;

use crate::segments;
use crate::store::profile_event::ProfileEvent;
use crate::store::redis::conn::{Pipes, SyncConn};
use crate::store::redis::{site_key, LUA_DECAYED_ADD};

/// KEYS: pop, pop_wm. ARGV: half-life ms, credits (MessagePack, in
/// `topic:partition`, offset order).
const CREDIT_SCRIPT: &str = r"
local h = tonumber(ARGV[1])
local credits = cmsgpack.unpack(ARGV[2])
for _, c in ipairs(credits) do
  local wm = tonumber(redis.call('HGET', KEYS[2], c.tp) or '-1')
  if c.off > wm then
    decayed_add(KEYS[1], c.item, c.w, c.t, h)
    redis.call('HSET', KEYS[2], c.tp, c.off)
  end
end
return 1
";

/// One event's contribution to one scope.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Credit {
    /// The item.
    pub item: String,
    /// Feedback weight.
    #[serde(rename = "w")]
    pub weight: f64,
    /// Event time on the server clock, Unix ms.
    #[serde(rename = "t")]
    pub ts_ms: i64,
    /// `topic:partition` of the scope's watermark.
    #[serde(rename = "tp")]
    pub topic_partition: String,
    /// Offset in that partition.
    #[serde(rename = "off")]
    pub offset: i64,
}

/// The popularity scopes `event` counts toward and its credit, if it has an
/// item and a weight: `site`, then `site~segment` for each of its segments.
pub fn credit_of(site: &str, event: &ProfileEvent) -> Option<(Vec<String>, Credit)> {
    let item = event.item.as_deref()?;
    if event.weight == 0.0 {
        return None;
    }
    let scopes = std::iter::once(site.to_owned())
        .chain(event.segments.iter().map(|s| segments::scope(site, s)))
        .collect();
    let credit = Credit {
        item: item.to_owned(),
        weight: event.weight,
        ts_ms: event.ts_ms,
        topic_partition: event.topic_partition.clone(),
        offset: event.offset,
    };
    Some((scopes, credit))
}

/// The round's credits per scope, from its unseen events, each scope's in
/// `topic:partition`, offset order (a watermark only moves forward).
pub fn credits(
    groups: &BTreeMap<(String, String), Vec<ProfileEvent>>,
) -> BTreeMap<String, Vec<Credit>> {
    let mut out: BTreeMap<String, Vec<Credit>> = BTreeMap::new();
    for ((site, _), events) in groups {
        for (scopes, credit) in events
            .iter()
            .filter(|e| e.unseen)
            .filter_map(|e| credit_of(site, e))
        {
            for scope in scopes {
                out.entry(scope).or_default().push(credit.clone());
            }
        }
    }
    for credits in out.values_mut() {
        credits.sort_by(|a, b| (&a.topic_partition, a.offset).cmp(&(&b.topic_partition, b.offset)));
    }
    out
}

/// The consumer's popularity writer.
pub struct PopularityWriter {
    conn: SyncConn,
    script: redis::Script,
    half_life: HalfLife,
}

impl PopularityWriter {
    /// Connects.
    pub fn connect(url: &str, half_life: HalfLife) -> redis::RedisResult<Self> {
        Ok(PopularityWriter {
            conn: SyncConn::open(url)?,
            script: redis::Script::new(&format!("{LUA_DECAYED_ADD}{CREDIT_SCRIPT}")),
            half_life,
        })
    }

    /// Waits until Redis replicas hold this writer's writes (on a cluster).
    pub fn wait_replicated(&mut self) -> redis::RedisResult<()> {
        self.conn.wait_replicated()
    }

    /// Credits the round's unseen events, one script call per scope (each in
    /// its scope's slot).
    pub fn credit(
        &mut self,
        groups: &BTreeMap<(String, String), Vec<ProfileEvent>>,
    ) -> redis::RedisResult<()> {
        let credits = credits(groups);
        if credits.is_empty() {
            return Ok(());
        }
        let mut pipes = Pipes::new();
        for (scope, credits) in &credits {
            let payload = rmp_serde::to_vec_named(credits).expect("credits serialize");
            pipes.invoke(
                &self.script,
                self.script
                    .key(site_key(scope, "pop"))
                    .key(site_key(scope, "pop_wm"))
                    .arg(self.half_life.as_ms())
                    .arg(payload),
            );
        }
        pipes.query(&mut self.conn).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, offset: i64, item: Option<&str>, weight: f64, unseen: bool) -> ProfileEvent {
        ProfileEvent {
            id: id.into(),
            topic_partition: "attune.clicks:3".into(),
            offset,
            kind: "click",
            ts_ms: 1_000 + offset,
            item: item.map(Into::into),
            dwell_ms: None,
            read: false,
            read_through: None,
            depth_pct: None,
            tags: vec![],
            weight,
            user_delta: None,
            device_class: None,
            browser: None,
            os: None,
            segments: vec!["device:mobile".into()],
            slot: None,
            team: None,
            exposure: 0.0,
            unseen,
            first_record: unseen,
        }
    }

    #[test]
    fn only_unseen_events_with_an_item_and_a_weight_are_credited_to_each_scope_in_offset_order() {
        let groups = BTreeMap::from([(
            ("s".to_string(), "u".to_string()),
            vec![
                event("b", 7, Some("x"), 1.0, true),
                event("a", 5, Some("y"), 2.0, true),
                event("seen", 6, Some("z"), 1.0, false),
                event("page", 8, None, 1.0, true),
                event("nil", 9, Some("w"), 0.0, true),
            ],
        )]);
        let credits = credits(&groups);
        assert_eq!(credits.keys().collect::<Vec<_>>(), ["s", "s~device:mobile"]);
        for scope in credits.values() {
            let items: Vec<(&str, i64)> =
                scope.iter().map(|c| (c.item.as_str(), c.offset)).collect();
            assert_eq!(items, [("y", 5), ("x", 7)]);
        }
    }
}
