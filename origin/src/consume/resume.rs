//! Where each partition resumes: from the store's own position whenever it
//! is behind the group's committed offset.
//!
//! The consumers commit their Kafka offsets right after the Redis writes, so
//! a Redis that loses its last second (a host crash under `appendfsync
//! everysec`) or is restored from an older backup holds less than the
//! committed offsets say. After each round the consumer records, in the
//! store, the next offset of every partition it read ([`record`], after all
//! of the round's writes, so a snapshot that holds a position holds every
//! write before it). On every assignment [`ResumeFromStore`] starts each
//! partition at the smaller of that position and the committed offset: the
//! events the store lost are replayed, and every write of the stream skips
//! what it already holds (per-user event ids and offset watermarks, each
//! aggregate's own watermarks). A partition the store has no position for
//! starts at the beginning of the log: an empty store is rebuilt from Kafka,
//! as far back as retention reaches.
//!
//! The serving model version has positions of its own (how far it has
//! learned each partition, `store::redis::model_position_key`): a partition
//! starts no later than that either, so a version that starts serving —
//! fitted up to some offsets, or back after a rollback — catches up by
//! replay. Its own watermarks keep the replay from teaching it anything
//! twice, and everything else skips what it has.
//!
//! A group that never committed a partition (a new or renamed group on a
//! store that is current) starts at the store's position and owes Kafka that
//! commit ([`ResumeFromStore::take_owed`]): until it is made, the group's lag
//! would count the partition's whole history.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use redis::Commands;

use crate::store::redis::conn::{Pipes, SyncConn};
use crate::store::redis::{model_position_key, RESUME_KEY};

/// The model version a consumer trains: its deployment's topic prefix and
/// its number.
pub type Trained<'a> = (&'a str, u32);

/// How long an assignment may wait for the group's committed offsets.
const COMMITTED_TIMEOUT: Duration = Duration::from_secs(10);

/// Records the round's positions, `topic:partition` → next offset to read,
/// for the store and for the model version the round trained, if any; on a
/// cluster, returns once replicas hold them and this connection's earlier
/// writes.
pub fn record(
    conn: &mut SyncConn,
    next: &BTreeMap<(String, i32), i64>,
    model: Option<Trained>,
) -> redis::RedisResult<()> {
    let fields: Vec<(String, i64)> = next
        .iter()
        .map(|((topic, partition), offset)| (format!("{topic}:{partition}"), *offset))
        .collect();
    if fields.is_empty() {
        return Ok(());
    }
    let mut pipes = Pipes::new();
    pipes.add_ignored(redis::Cmd::hset_multiple(RESUME_KEY, &fields));
    if let Some((prefix, version)) = model {
        pipes.add_ignored(redis::Cmd::hset_multiple(
            model_position_key(prefix, version),
            &fields,
        ));
    }
    pipes.query(conn)?;
    conn.wait_replicated()
}

/// Where the store resumes each partition: its own position, or the model
/// version's where that is earlier.
pub fn earliest(
    store: HashMap<String, i64>,
    version: &HashMap<String, i64>,
) -> HashMap<String, i64> {
    store
        .into_iter()
        .map(|(tp, at)| {
            let v = version.get(&tp).copied().unwrap_or(at);
            (tp, at.min(v))
        })
        .collect()
}

/// Where a partition starts: the store's position when it is behind the
/// committed offset (or the group never committed), else the committed one.
pub fn start_at(committed: Offset, stored: Option<i64>) -> Offset {
    match (committed, stored) {
        (_, None) => Offset::Beginning,
        (Offset::Offset(c), Some(s)) if c <= s => Offset::Offset(c),
        (_, Some(s)) => Offset::Offset(s),
    }
}

/// The consumer's context: assigns each partition from [`start_at`]. If the
/// store cannot be read, the failure is kept for the poll loop, which must
/// then restart before it applies anything ([`ResumeFromStore::take_error`]).
pub struct ResumeFromStore {
    redis_url: String,
    /// The model version the consumer trains, if it does (topic prefix, number).
    model: Option<(String, u32)>,
    error: Mutex<Option<String>>,
    owed: Mutex<BTreeMap<(String, i32), i64>>,
}

impl ResumeFromStore {
    /// A context reading positions from the Redis at `redis_url`.
    pub fn new(redis_url: &str) -> Self {
        ResumeFromStore {
            redis_url: redis_url.to_owned(),
            model: None,
            error: Mutex::new(None),
            owed: Mutex::new(BTreeMap::new()),
        }
    }

    /// Why the last assignment could not consult the store, once.
    pub fn take_error(&self) -> Option<String> {
        self.error.lock().expect("not poisoned").take()
    }

    /// Positions to commit for the group: partitions it never committed,
    /// started at the store's position, and still assigned to it.
    pub fn take_owed(&self, consumer: &BaseConsumer<Self>) -> BTreeMap<(String, i32), i64> {
        let owed = std::mem::take(&mut *self.owed.lock().expect("not poisoned"));
        if owed.is_empty() {
            return owed;
        }
        let Ok(assigned) = consumer.assignment() else {
            return BTreeMap::new();
        };
        owed.into_iter()
            .filter(|((t, p), _)| assigned.find_partition(t, *p).is_some())
            .collect()
    }

    /// The same, for a consumer training model `version`: its partitions
    /// also start no later than the version's positions.
    pub fn for_model(redis_url: &str, (prefix, version): Trained) -> Self {
        ResumeFromStore {
            model: Some((prefix.to_owned(), version)),
            ..ResumeFromStore::new(redis_url)
        }
    }

    fn stored_positions(&self) -> redis::RedisResult<HashMap<String, i64>> {
        let mut conn = SyncConn::open_with_timeout(&self.redis_url, COMMITTED_TIMEOUT)?;
        let store: HashMap<String, i64> = conn.hgetall(RESUME_KEY)?;
        let Some((prefix, version)) = &self.model else {
            return Ok(store);
        };
        let model: HashMap<String, i64> = conn.hgetall(model_position_key(prefix, *version))?;
        Ok(earliest(store, &model))
    }

    /// Sets every partition of `tpl` to where it starts.
    fn positions(
        &self,
        consumer: &BaseConsumer<Self>,
        tpl: &mut TopicPartitionList,
    ) -> Result<(), String> {
        let asked = std::time::Instant::now();
        let committed = consumer
            .committed_offsets(tpl.clone(), COMMITTED_TIMEOUT)
            .map_err(|e| format!("read the group's committed offsets: {e}"))?;
        if asked.elapsed() > Duration::from_secs(1) {
            // Offsets of a transaction still open (a member died mid-round)
            // are held back until the broker aborts it.
            tracing::warn!(
                waited = ?asked.elapsed(),
                "the partitions waited for their committed offsets: a dead member's open \
                 transaction holds them until the broker aborts it (ATTUNE_CONSUMER_TX_TIMEOUT_MS, \
                 brokers' transaction.abort.timed.out.transaction.cleanup.interval.ms), or until \
                 it restarts under its ATTUNE_CONSUMER_INSTANCE"
            );
        }
        let stored = self
            .stored_positions()
            .map_err(|e| format!("read the store's positions: {e}"))?;
        for e in committed.elements() {
            let tp = format!("{}:{}", e.topic(), e.partition());
            let start = start_at(e.offset(), stored.get(&tp).copied());
            // A new group starts where the store says without comment.
            if matches!(e.offset(), Offset::Offset(_)) && start != e.offset() {
                tracing::warn!(
                    partition = %tp,
                    committed = ?e.offset(),
                    resume = ?start,
                    "the store is behind the committed offset: replaying from its position"
                );
            }
            if let (Offset::Invalid, Offset::Offset(s)) = (e.offset(), start) {
                self.owed
                    .lock()
                    .expect("not poisoned")
                    .insert((e.topic().to_owned(), e.partition()), s);
            }
            tpl.set_partition_offset(e.topic(), e.partition(), start)
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

impl ClientContext for ResumeFromStore {}

impl ConsumerContext for ResumeFromStore {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                if let Err(e) = self.positions(consumer, tpl) {
                    *self.error.lock().expect("not poisoned") = Some(e);
                }
                if let Err(e) = consumer.assign(tpl) {
                    *self.error.lock().expect("not poisoned") = Some(format!("assign: {e}"));
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                if let Err(e) = consumer.unassign() {
                    tracing::warn!("unassign: {e}");
                }
            }
            other => tracing::warn!("rebalance error: {other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_starts_at_the_earlier_of_store_and_group() {
        // The store lost events: replay them.
        assert_eq!(start_at(Offset::Offset(100), Some(40)), Offset::Offset(40));
        // A commit failed after the store was written: the group decides
        // (the round's dead letters and updates were in that transaction).
        assert_eq!(
            start_at(Offset::Offset(100), Some(120)),
            Offset::Offset(100)
        );
        // The group never committed, the store has a position.
        assert_eq!(start_at(Offset::Invalid, Some(7)), Offset::Offset(7));
        // The store knows nothing of the partition: rebuild from the log.
        assert_eq!(start_at(Offset::Offset(100), None), Offset::Beginning);
        assert_eq!(start_at(Offset::Invalid, None), Offset::Beginning);
    }

    #[test]
    fn a_model_version_behind_the_store_is_caught_up_from_its_position() {
        let store = HashMap::from([("t:0".to_owned(), 100), ("t:1".to_owned(), 50)]);
        let version = HashMap::from([("t:0".to_owned(), 40), ("t:1".to_owned(), 70)]);
        let at = earliest(store.clone(), &version);
        assert_eq!(at["t:0"], 40, "the version is behind: replay for it");
        assert_eq!(at["t:1"], 50, "the store is behind: replay for it");
        // A version with no position for a partition does not hold it back.
        assert_eq!(earliest(store.clone(), &HashMap::new()), store);
    }
}
