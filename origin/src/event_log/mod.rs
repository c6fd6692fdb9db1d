//! The durable event log, behind one trait with two implementations: Kafka
//! (production) and an in-process queue persisted in redb (embedded mode).

pub mod embedded;
pub mod kafka;
pub mod lag;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

/// One message to append. A batch's records share one key and one payload
/// buffer (cheap clones: ingest makes 20 of these per request).
#[derive(Debug, Clone)]
pub struct LogRecord {
    /// Topic (one per interaction kind).
    pub topic: &'static str,
    /// Partition key (`site/user`).
    pub key: Arc<str>,
    /// Encoded [`EventRecord`](crate::record::EventRecord).
    pub payload: Bytes,
}

/// Why a record was not appended.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AppendError {
    /// The producer's local queue is full: back off.
    #[error("the producer queue is full")]
    QueueFull,
    /// The log did not acknowledge in time or refused.
    #[error("the event log did not acknowledge: {0}")]
    Unavailable(String),
}

/// Where acknowledged events are kept.
#[async_trait]
pub trait EventLog: Send + Sync {
    /// Appends every record and resolves, per record, once it is durable
    /// (Kafka: acknowledged by all in-sync replicas).
    async fn append(&self, records: Vec<LogRecord>) -> Vec<Result<(), AppendError>>;
    /// Answers when reachable.
    async fn ping(&self) -> Result<(), String>;
    /// Messages waiting in the producer, for `/metrics`.
    fn queue_depth(&self) -> u64;
    /// Deletes what the log holds of a user, where the log can: the embedded
    /// log purges their records; Kafka's are immutable and leave with the
    /// topics' retention (the consumers never apply a forgotten user's).
    async fn forget(&self, site: &str, user: &str) -> Result<(), String>;
}
