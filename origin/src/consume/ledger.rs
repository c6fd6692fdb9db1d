//! The consumers' side of the reconciliation ledger ([`crate::ledger`]):
//! every record a round read, once, as applied, duplicate, forgotten or
//! dead-lettered, in its minute × site × kind.
//!
//! Once per record: a count lands only past its `topic:partition` offset
//! watermark, moved in the same Lua call, so a replayed round (same offsets)
//! adds nothing. It is written before the round's offsets commit; which
//! events are new comes from the round's `unseen` marks, taken before the
//! profile script records the ids — so a replay after a crash between the
//! two classifies nothing differently. Each site keeps its own watermarks
//! (one Lua call per site, in the site's hash slot).

use std::collections::{BTreeMap, HashMap};

use attune_core::routing::kind_of_topic;
use attune_core::EventKind;
use serde::Serialize;

use super::apply::{Incoming, UserEvents};
use crate::ledger::{minute_of, unreadable_site, Measure, ALL_KINDS};
use crate::store::redis::conn::{Pipes, SyncConn};
use crate::store::redis::{ledger_key, ledger_watermarks_key, LEDGER_TTL_S};

/// KEYS: the site's watermark hash. ARGV: the site's entries (MessagePack, in
/// `topic:partition`, offset order), TTL in seconds.
const LEDGER_SCRIPT: &str = r"
local entries = cmsgpack.unpack(ARGV[1])
local ttl = tonumber(ARGV[2])
for _, e in ipairs(entries) do
  local wm = tonumber(redis.call('HGET', KEYS[1], e.tp) or '-1')
  if e.off > wm then
    redis.call('HINCRBY', e.k, e.f, 1)
    redis.call('EXPIRE', e.k, ttl)
    redis.call('HSET', KEYS[1], e.tp, e.off)
  end
end
return 1
";

/// One record's count.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Entry {
    /// The site counted (its ledger and watermarks).
    #[serde(skip)]
    pub site: String,
    /// `topic:partition`.
    pub tp: String,
    /// Offset.
    pub off: i64,
    /// The ledger minute's key.
    pub k: String,
    /// The field: `<measure>.<kind>`.
    pub f: String,
}

/// A record the round could not read: topic, partition, offset, Kafka
/// timestamp (ms).
pub type Unreadable<'a> = (&'a str, i32, i64, i64);

/// The round's entries, in `topic:partition`, offset order. `groups` are the
/// round's readable events after the forgotten users were dropped and the
/// seen ones marked.
pub fn entries(
    incoming: &[Incoming],
    groups: &UserEvents,
    unreadable: &[Unreadable],
    topic_prefix: &str,
) -> Vec<Entry> {
    let unseen: HashMap<(&str, i64), bool> = groups
        .values()
        .flatten()
        .map(|e| ((e.topic_partition.as_str(), e.offset), e.unseen))
        .collect();
    let mut out: Vec<Entry> = incoming
        .iter()
        .map(|m| {
            let tp = format!("{}:{}", m.topic, m.partition);
            let measure = match unseen.get(&(tp.as_str(), m.offset)) {
                Some(true) => Measure::Applied,
                Some(false) => Measure::Duplicate,
                None => Measure::Forgotten,
            };
            let r = &m.record;
            Entry {
                site: r.site_key.clone(),
                k: ledger_key(&r.site_key, minute_of(r.received_at_ms)),
                f: measure.field(r.event.kind().as_str()),
                off: m.offset,
                tp,
            }
        })
        .collect();
    out.extend(unreadable.iter().map(|(t, partition, offset, ts_ms)| {
        let kind = kind_of_topic(t, topic_prefix).map_or(ALL_KINDS, EventKind::as_str);
        let site = unreadable_site(topic_prefix);
        Entry {
            tp: format!("{t}:{partition}"),
            off: *offset,
            k: ledger_key(&site, minute_of(*ts_ms)),
            site,
            f: Measure::DeadLettered.field(kind),
        }
    }));
    out.sort_by(|a, b| (&a.tp, a.off).cmp(&(&b.tp, b.off)));
    out
}

/// The consumer's ledger writer.
pub struct LedgerWriter {
    conn: SyncConn,
    script: redis::Script,
}

impl LedgerWriter {
    /// Connects.
    pub fn connect(url: &str) -> redis::RedisResult<Self> {
        Ok(LedgerWriter {
            conn: SyncConn::open(url)?,
            script: redis::Script::new(LEDGER_SCRIPT),
        })
    }

    /// Waits until Redis replicas hold this writer's writes (on a cluster).
    pub fn wait_replicated(&mut self) -> redis::RedisResult<()> {
        self.conn.wait_replicated()
    }

    /// Counts the round's records, each past its site's watermark.
    pub fn record(&mut self, entries: &[Entry]) -> redis::RedisResult<()> {
        let mut by_site: BTreeMap<&str, Vec<&Entry>> = BTreeMap::new();
        for e in entries {
            by_site.entry(&e.site).or_default().push(e);
        }
        let mut pipes = Pipes::new();
        for (site, entries) in by_site {
            let payload = rmp_serde::to_vec_named(&entries).expect("entries serialize");
            pipes.invoke(
                &self.script,
                self.script
                    .key(ledger_watermarks_key(site))
                    .arg(payload)
                    .arg(LEDGER_TTL_S),
            );
        }
        pipes.query(&mut self.conn).map(drop)
    }
}
