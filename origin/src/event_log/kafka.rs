//! The production event log: Kafka through an idempotent, `acks=all` producer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::channel::oneshot;
use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientConfig;

use super::{AppendError, EventLog, LogRecord};

/// Kafka producer.
pub struct KafkaLog {
    producer: ThreadedProducer<AppendAcks>,
    topic_prefix: String,
    /// How long a request waits for its acknowledgements.
    timeout: Duration,
}

/// Routes librdkafka's delivery reports to the append each message belongs to.
/// A request waits for its append as a whole and is woken once, by the last
/// report (a future per message woke it up to 20 times, across threads).
struct AppendAcks;

impl ClientContext for AppendAcks {}

impl ProducerContext for AppendAcks {
    type DeliveryOpaque = Box<Slot>;

    fn delivery(&self, result: &DeliveryResult<'_>, mut slot: Box<Slot>) {
        slot.result = Some(match result {
            Ok(_) => Ok(()),
            Err((e, _)) => Err(AppendError::Unavailable(e.to_string())),
        });
    }
}

/// One append in flight: a result per record (`None` until it reports) and
/// the wake-up of its request.
struct PendingAppend {
    results: Mutex<Vec<Option<Result<(), AppendError>>>>,
    remaining: AtomicUsize,
    done: Mutex<Option<oneshot::Sender<()>>>,
}

impl PendingAppend {
    /// An append of `len` records, and what fires once all of them reported.
    fn new(len: usize) -> (Arc<PendingAppend>, oneshot::Receiver<()>) {
        let (done, all_reported) = oneshot::channel();
        let pending = PendingAppend {
            results: Mutex::new(vec![None; len]),
            remaining: AtomicUsize::new(len),
            done: Mutex::new(Some(done)),
        };
        (Arc::new(pending), all_reported)
    }

    fn slot(self: &Arc<Self>, index: usize) -> Box<Slot> {
        Box::new(Slot {
            append: self.clone(),
            index,
            result: None,
        })
    }

    /// Every record's result so far: one that has not reported by now is
    /// not acknowledged (it may still land; a retry of its id is harmless).
    fn take_results(&self) -> Vec<Result<(), AppendError>> {
        std::mem::take(&mut *lock(&self.results))
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(AppendError::Unavailable(
                        "Kafka did not acknowledge it within the produce timeout".into(),
                    ))
                })
            })
            .collect()
    }
}

/// One message's place in its [`PendingAppend`]. It reports when dropped, whatever
/// happened to the message (delivered, refused at send, or dropped by a
/// producer shutting down), so an append can never wait forever.
struct Slot {
    append: Arc<PendingAppend>,
    index: usize,
    result: Option<Result<(), AppendError>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let result = self.result.take().unwrap_or_else(|| {
            Err(AppendError::Unavailable(
                "the producer dropped the message".into(),
            ))
        });
        if let Some(r) = lock(&self.append.results).get_mut(self.index) {
            *r = Some(result);
        }
        if self.append.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            if let Some(done) = lock(&self.append.done).take() {
                let _ = done.send(());
            }
        }
    }
}

/// The data behind these locks stays consistent even if a holder panicked.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// librdkafka backs off reconnecting up to 10 s by default, so a broker back
/// from a restart waited up to that long for its clients; 1 s bounds it.
pub const RECONNECT_BACKOFF_MAX_MS: &str = "1000";

/// Topics to create, `names`, on a cluster of `brokers`: attune-core's
/// partitions and replication (`min.insync.replicas` included).
pub fn new_topics(names: &[String], brokers: usize) -> Vec<rdkafka::admin::NewTopic<'_>> {
    let r = attune_core::routing::replication(brokers);
    let min_insync = if r.min_insync >= 2 { "2" } else { "1" };
    names
        .iter()
        .map(|t| {
            rdkafka::admin::NewTopic::new(
                t,
                attune_core::routing::PARTITIONS_PER_TOPIC,
                rdkafka::admin::TopicReplication::Fixed(r.factor),
            )
            .set("min.insync.replicas", min_insync)
        })
        .collect()
}

/// The producer settings of ingest: idempotent, `acks=all`, lz4. `linger`
/// trades latency for larger produce batches (less broker work per event).
/// Public so the ingest benchmark's bare producer runs the very same settings.
pub fn producer_config(brokers: &str, linger: Duration) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", linger.as_millis().to_string())
        .set("compression.type", "lz4")
        .set("queue.buffering.max.messages", "200000")
        .set("reconnect.backoff.max.ms", RECONNECT_BACKOFF_MAX_MS);
    config
}

impl KafkaLog {
    /// Creates the producer; `timeout` bounds how long a message may wait for
    /// its acknowledgement (then ingest answers 503).
    pub fn new(
        brokers: &str,
        linger: Duration,
        timeout: Duration,
        topic_prefix: &str,
    ) -> anyhow::Result<Self> {
        let producer = producer_config(brokers, linger)
            .set("message.timeout.ms", timeout.as_millis().to_string())
            .create_with_context(AppendAcks)?;
        Ok(KafkaLog {
            producer,
            topic_prefix: topic_prefix.to_owned(),
            timeout,
        })
    }
}

#[async_trait]
impl EventLog for KafkaLog {
    async fn append(&self, records: Vec<LogRecord>) -> Vec<Result<(), AppendError>> {
        if records.is_empty() {
            return Vec::new();
        }
        let started = Instant::now();
        let (pending, all_reported) = PendingAppend::new(records.len());
        // Enqueue everything (never blocks); each slot reports back when done.
        for (index, r) in records.iter().enumerate() {
            let topic: std::borrow::Cow<str> = if self.topic_prefix.is_empty() {
                r.topic.into()
            } else {
                format!("{}{}", self.topic_prefix, r.topic).into()
            };
            let record = BaseRecord::with_opaque_to(&topic, pending.slot(index))
                .key(&*r.key)
                .payload(&r.payload[..]);
            if let Err((e, refused)) = self.producer.send(record) {
                let mut slot = refused.delivery_opaque;
                slot.result = Some(Err(match e {
                    KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull) => {
                        AppendError::QueueFull
                    }
                    other => AppendError::Unavailable(other.to_string()),
                }));
            }
        }
        // Every slot reports exactly once, so the channel always fires; but
        // librdkafka may report a timed-out message well after
        // message.timeout.ms (measured 10-15 s for 5 s), and the client's
        // budget is the configured timeout: what has not reported by then
        // is answered as not stored.
        let _ = tokio::time::timeout(self.timeout, all_reported).await;
        metrics::histogram!("attune_produce_duration_seconds").record(started.elapsed());
        pending.take_results()
    }

    async fn ping(&self) -> Result<(), String> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(None, Duration::from_secs(2))
                .map(|_| ())
                .map_err(|e| format!("Kafka did not answer: {e}"))
        })
        .await
        .map_err(|e| e.to_string())?
    }

    fn queue_depth(&self) -> u64 {
        self.producer.in_flight_count().max(0) as u64
    }

    async fn forget(&self, _site: &str, _user: &str) -> Result<(), String> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_slot_to_report_wakes_the_batch_with_every_result() {
        let (append, mut all_reported) = PendingAppend::new(3);
        let mut delivered = append.slot(0);
        delivered.result = Some(Ok(()));
        let mut refused = append.slot(1);
        refused.result = Some(Err(AppendError::QueueFull));
        let lost = append.slot(2);

        drop(delivered);
        drop(refused);
        assert_eq!(all_reported.try_recv(), Ok(None), "one record is still out");
        drop(lost);
        assert_eq!(all_reported.try_recv(), Ok(Some(())));

        let results = append.take_results();
        assert!(results[0].is_ok());
        assert!(matches!(results[1], Err(AppendError::QueueFull)));
        // A slot dropped without a delivery report counts as not appended.
        assert!(matches!(results[2], Err(AppendError::Unavailable(_))));
    }

    #[test]
    fn a_record_that_has_not_reported_by_the_deadline_is_not_acknowledged() {
        let (append, _all_reported) = PendingAppend::new(2);
        let mut delivered = append.slot(0);
        delivered.result = Some(Ok(()));
        drop(delivered);
        let late = append.slot(1);
        let results = append.take_results();
        assert!(results[0].is_ok());
        assert!(matches!(results[1], Err(AppendError::Unavailable(_))));
        // Its report after the request has answered changes nothing.
        drop(late);
    }
}
