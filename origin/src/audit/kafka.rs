//! The middle ledger: the audit counts the records on the interaction topics
//! themselves, per minute × site × kind, from the offsets at a time to the
//! log end as it stood when the count began.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use attune_core::routing::{kind_of_topic, topic};
use attune_core::EventKind;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use crate::ledger::{self, minute_of, unreadable_site, Counts, Measure, Minute};
use crate::record::EventRecord;

const TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a count may take before the audit gives up.
const READ_LIMIT: Duration = Duration::from_secs(300);

/// Counts the records received in `minutes` (`InKafka`, and `FirstInKafka`
/// for an event id its user had not sent before). Reading starts at
/// `read_from_ms`, earlier than the window, so that a retry of an event from
/// just before it is known as one.
pub fn count(
    brokers: &str,
    topic_prefix: &str,
    minutes: std::ops::Range<Minute>,
    read_from_ms: i64,
) -> Result<Counts> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "attune-audit")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .context("create the Kafka consumer")?;
    let mut by_time = TopicPartitionList::new();
    for kind in EventKind::ALL {
        let name = &format!("{topic_prefix}{}", topic(kind));
        let metadata = consumer.fetch_metadata(Some(name), TIMEOUT)?;
        for t in metadata.topics() {
            for p in t.partitions() {
                by_time.add_partition_offset(t.name(), p.id(), Offset::Offset(read_from_ms))?;
            }
        }
    }
    let starts = consumer.offsets_for_times(by_time, TIMEOUT)?;
    let mut assignment = TopicPartitionList::new();
    // The log end of each partition we read, as it is now.
    let mut ends: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for e in starts.elements() {
        let (_, high) = consumer.fetch_watermarks(e.topic(), e.partition(), TIMEOUT)?;
        let Offset::Offset(start) = e.offset() else {
            continue; // nothing at or after the time
        };
        if start < high {
            assignment.add_partition_offset(e.topic(), e.partition(), Offset::Offset(start))?;
            ends.insert((e.topic().to_owned(), e.partition()), high);
        }
    }
    let mut counts = Counts::new();
    if ends.is_empty() {
        return Ok(counts);
    }
    consumer.assign(&assignment)?;
    let mut seen: HashSet<(String, String, uuid::Uuid)> = HashSet::new();
    let deadline = Instant::now() + READ_LIMIT;
    while !ends.is_empty() {
        if Instant::now() > deadline {
            bail!("the topics were not read within {READ_LIMIT:?}: audit fewer minutes");
        }
        let m = match consumer.poll(Duration::from_millis(500)) {
            None => continue,
            Some(Err(e)) => return Err(e).context("read the interaction topics"),
            Some(Ok(m)) => m,
        };
        let key = (m.topic().to_owned(), m.partition());
        let Some(&end) = ends.get(&key) else { continue };
        if m.offset() + 1 >= end {
            ends.remove(&key);
        }
        if m.offset() >= end {
            continue;
        }
        let kind = kind_of_topic(m.topic(), topic_prefix);
        match EventRecord::decode(m.payload().unwrap_or_default()) {
            Ok(r) => {
                let first = seen.insert((r.site_key.clone(), r.user_id.clone(), r.event.id));
                let minute = minute_of(r.received_at_ms);
                if minutes.contains(&minute) {
                    let kind = r.event.kind().as_str();
                    ledger::add(&mut counts, minute, &r.site_key, kind, Measure::InKafka, 1);
                    if first {
                        let m = Measure::FirstInKafka;
                        ledger::add(&mut counts, minute, &r.site_key, kind, m, 1);
                    }
                }
            }
            Err(_) => {
                let minute = minute_of(m.timestamp().to_millis().unwrap_or(0));
                if minutes.contains(&minute) {
                    let kind = kind.map_or(ledger::ALL_KINDS, EventKind::as_str);
                    let site = unreadable_site(topic_prefix);
                    ledger::add(&mut counts, minute, &site, kind, Measure::InKafka, 1);
                }
            }
        }
    }
    Ok(counts)
}
