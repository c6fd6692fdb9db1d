//! The production event log: Kafka through an idempotent, `acks=all` producer.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::future::join_all;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::ClientConfig;

use super::{AppendError, EventLog, LogRecord};

/// Kafka producer.
pub struct KafkaLog {
    producer: FutureProducer,
    topic_prefix: String,
}

impl KafkaLog {
    /// Creates the producer; `timeout` bounds how long a message may wait for
    /// its acknowledgement (then ingest answers 503).
    pub fn new(brokers: &str, timeout: Duration, topic_prefix: &str) -> anyhow::Result<Self> {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "1")
            .set("compression.type", "lz4")
            .set("message.timeout.ms", timeout.as_millis().to_string())
            .set("queue.buffering.max.messages", "200000")
            .create()?;
        Ok(KafkaLog {
            producer,
            topic_prefix: topic_prefix.to_owned(),
        })
    }
}

#[async_trait]
impl EventLog for KafkaLog {
    async fn append(&self, records: Vec<LogRecord>) -> Vec<Result<(), AppendError>> {
        let started = Instant::now();
        // Enqueue everything first (never blocks), then wait for every ack.
        let pending: Vec<_> = records
            .iter()
            .map(|r| {
                let topic: std::borrow::Cow<str> = if self.topic_prefix.is_empty() {
                    r.topic.into()
                } else {
                    format!("{}{}", self.topic_prefix, r.topic).into()
                };
                self.producer
                    .send_result(
                        FutureRecord::to(&topic)
                            .key(&*r.key)
                            .payload(&r.payload[..]),
                    )
                    .map_err(|(e, _)| match e {
                        KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull) => {
                            AppendError::QueueFull
                        }
                        other => AppendError::Unavailable(other.to_string()),
                    })
            })
            .collect();
        let results = join_all(pending.into_iter().map(|p| async move {
            match p {
                Err(e) => Err(e),
                Ok(delivery) => match delivery.await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err((e, _))) => Err(AppendError::Unavailable(e.to_string())),
                    Err(_) => Err(AppendError::Unavailable("producer shut down".into())),
                },
            }
        }))
        .await;
        metrics::histogram!("attune_produce_duration_seconds").record(started.elapsed());
        results
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
}
