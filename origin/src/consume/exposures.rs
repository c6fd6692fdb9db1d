//! The exposures consumer: `attune.exposures` into the store, beside the
//! interaction consumer in `attune-origin consume` (its own group,
//! `<group>.exposures`).
//!
//! Exactly once in effect without a transaction: the store keeps the first
//! exposure per (unit, experiment, phase) and never changes it
//! (`store::redis::RECORD_EXPOSURE`, which also refuses forgotten units),
//! so a record applied again after a crash, before its offset was
//! committed, or sent twice by two origins, changes nothing. Offsets are
//! committed after the writes. Like the interaction consumer, it records
//! where the store is after every batch and resumes each partition from
//! the earlier of that and the committed offset ([`super::resume`]), so a
//! Redis restored from an older backup gets its exposures back from Kafka.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use attune_core::routing::{partition_key, EXPOSURES};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use super::resume::{self, ResumeFromStore};
use crate::config::ConsumeArgs;
use crate::event_log::kafka::RECONNECT_BACKOFF_MAX_MS;
use crate::experiments::{Exposure, EXPOSURE_VERSION};
use crate::store::redis::conn::{Pipes, SyncConn};
use crate::store::redis::{exposures_key, site_key, RECORD_EXPOSURE};

const POLL: Duration = Duration::from_millis(200);
const BATCH: usize = 1_000;

/// Why a record is not an exposure (a closed set: a metric label).
fn refusal(key: Option<&[u8]>, payload: &[u8]) -> Result<Exposure, &'static str> {
    let exposure: Exposure = serde_json::from_slice(payload).map_err(|_| "undecodable")?;
    if exposure.v != EXPOSURE_VERSION {
        return Err("unsupported_version");
    }
    if key != Some(partition_key(&exposure.site, &exposure.unit).as_bytes()) {
        return Err("invalid");
    }
    Ok(exposure)
}

/// Runs until `stop` is set; restarts its clients after any error.
pub fn run(args: &ConsumeArgs, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        if let Err(e) = run_client(args, stop) {
            tracing::warn!("exposures consumer restarting: {e:#}");
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

fn run_client(args: &ConsumeArgs, stop: &AtomicBool) -> Result<()> {
    let topic = format!("{}{EXPOSURES}", args.topic_prefix);
    let consumer: BaseConsumer<ResumeFromStore> = ClientConfig::new()
        .set("bootstrap.servers", &args.kafka_brokers)
        .set("group.id", format!("{}.exposures", args.group))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("reconnect.backoff.max.ms", RECONNECT_BACKOFF_MAX_MS)
        .create_with_context(ResumeFromStore::new(&args.redis_url))
        .context("create the exposures consumer")?;
    consumer.subscribe(&[topic.as_str()])?;
    let mut redis =
        SyncConn::open(&args.redis_url).context("connect the exposures consumer to Redis")?;
    let script = redis::Script::new(RECORD_EXPOSURE);
    while !stop.load(Ordering::SeqCst) {
        if let Some(e) = consumer.context().take_error() {
            anyhow::bail!("an assignment could not be placed from the store's positions: {e}");
        }
        let owed = consumer.context().take_owed(&consumer);
        if !owed.is_empty() {
            commit(&consumer, &owed)?;
        }
        let mut next: BTreeMap<(String, i32), i64> = BTreeMap::new();
        let mut pipes = Pipes::new();
        let mut writes = 0;
        let deadline = Instant::now() + POLL;
        while writes < BATCH {
            let wait = deadline.saturating_duration_since(Instant::now());
            let Some(polled) = consumer.poll(wait) else {
                break;
            };
            let m = polled?;
            next.insert((m.topic().to_owned(), m.partition()), m.offset() + 1);
            match refusal(m.key(), m.payload().unwrap_or_default()) {
                Ok(e) => {
                    let json = serde_json::to_string(&e)?;
                    pipes.invoke(
                        &script,
                        script
                            .key(site_key(&e.site, "forgotten"))
                            .key(exposures_key(&e.site, &e.experiment, e.phase))
                            .arg(&e.unit)
                            .arg(json),
                    );
                    writes += 1;
                }
                Err(reason) => {
                    tracing::warn!(offset = m.offset(), reason, "exposure record refused");
                    metrics::counter!("attune_consumer_exposures_total", "outcome" => reason)
                        .increment(1);
                }
            }
        }
        if next.is_empty() {
            continue;
        }
        if writes > 0 {
            let kept: Vec<i64> = pipes.query_as(&mut redis)?;
            let new = kept.iter().filter(|k| **k == 1).count() as u64;
            metrics::counter!("attune_consumer_exposures_total", "outcome" => "kept")
                .increment(new);
            metrics::counter!("attune_consumer_exposures_total", "outcome" => "duplicate")
                .increment(kept.len() as u64 - new);
        }
        // After the writes: where this store resumes, then the group.
        resume::record(&mut redis, &next, None)?;
        commit(&consumer, &next)?;
    }
    Ok(())
}

fn commit(
    consumer: &BaseConsumer<ResumeFromStore>,
    next: &BTreeMap<(String, i32), i64>,
) -> Result<()> {
    let mut offsets = TopicPartitionList::new();
    for ((topic, partition), offset) in next {
        offsets.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
    }
    consumer.commit(&offsets, CommitMode::Sync)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_current_exposures_under_their_own_key_are_taken() {
        let e = Exposure {
            v: EXPOSURE_VERSION,
            site: "news".into(),
            experiment: "exp".into(),
            phase: 1,
            unit: "u1".into(),
            arm: 0,
            at_ms: 1,
            baseline: Default::default(),
        };
        let json = serde_json::to_vec(&e).unwrap();
        assert_eq!(refusal(Some(b"news/u1"), &json), Ok(e.clone()));
        assert_eq!(refusal(Some(b"news/u2"), &json), Err("invalid"));
        assert_eq!(refusal(None, &json), Err("invalid"));
        assert_eq!(refusal(Some(b"news/u1"), b"\xff{"), Err("undecodable"));
        let future = serde_json::to_vec(&Exposure { v: 2, ..e }).unwrap();
        assert_eq!(
            refusal(Some(b"news/u1"), &future),
            Err("unsupported_version")
        );
    }
}
