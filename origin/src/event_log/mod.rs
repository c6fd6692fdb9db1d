//! The durable event log, behind one trait with two implementations: Kafka
//! (production) and an in-process queue persisted in redb (embedded mode).

pub mod embedded;
pub mod kafka;

use async_trait::async_trait;

/// One message to append.
#[derive(Debug, Clone)]
pub struct LogRecord {
    /// Topic (one per interaction kind).
    pub topic: &'static str,
    /// Partition key (`site/user`).
    pub key: String,
    /// Encoded [`EventRecord`](crate::record::EventRecord).
    pub payload: Vec<u8>,
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
}
