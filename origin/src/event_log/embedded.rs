//! The embedded event log: an in-process queue whose appends are committed to
//! redb before they are acknowledged, so a 202 survives a restart as in Kafka.
// redb's error type is large; it only travels to the edge of this module.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableTable, TableDefinition};
use tokio::sync::watch;

use super::{AppendError, EventLog, LogRecord};

/// (topic, offset) → (key, payload).
pub const LOG: TableDefinition<(&str, u64), (&str, &[u8])> = TableDefinition::new("event_log");

/// Appends to redb; `watch` tells readers (the embedded consumer) that the log grew.
pub struct EmbeddedLog {
    db: Arc<Database>,
    appended: watch::Sender<u64>,
}

impl EmbeddedLog {
    /// Uses an open database (shared with the embedded store).
    pub fn new(db: Arc<Database>) -> Result<Self, redb::Error> {
        let tx = db.begin_write()?;
        tx.open_table(LOG)?;
        tx.commit()?;
        Ok(EmbeddedLog {
            db,
            appended: watch::channel(0).0,
        })
    }

    /// Notified after every append.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.appended.subscribe()
    }
}

/// Every `(offset, key, payload)` of `topic` from `from` on.
pub fn read_topic(
    db: &Database,
    topic: &str,
    from: u64,
) -> Result<Vec<(u64, String, Vec<u8>)>, redb::Error> {
    let tx = db.begin_read()?;
    let log = tx.open_table(LOG)?;
    let mut out = Vec::new();
    for row in log.range((topic, from)..=(topic, u64::MAX))? {
        let (k, v) = row?;
        let (key, payload) = v.value();
        out.push((k.value().1, key.to_owned(), payload.to_vec()));
    }
    Ok(out)
}

fn append_all(db: &Database, records: &[LogRecord]) -> Result<(), redb::Error> {
    let tx = db.begin_write()?;
    {
        let mut log = tx.open_table(LOG)?;
        for r in records {
            // Next offset of this topic: one past the last.
            let next = log
                .range((r.topic, 0)..=(r.topic, u64::MAX))?
                .next_back()
                .transpose()?
                .map_or(0, |(k, _)| k.value().1 + 1);
            log.insert((r.topic, next), (&*r.key, &r.payload[..]))?;
        }
    }
    tx.commit()?;
    Ok(())
}

#[async_trait]
impl EventLog for EmbeddedLog {
    async fn append(&self, records: Vec<LogRecord>) -> Vec<Result<(), AppendError>> {
        let n = records.len();
        let db = self.db.clone();
        let result = tokio::task::spawn_blocking(move || append_all(&db, &records)).await;
        match result {
            Ok(Ok(())) => {
                self.appended.send_modify(|count| *count += n as u64);
                vec![Ok(()); n]
            }
            Ok(Err(e)) => vec![Err(AppendError::Unavailable(e.to_string())); n],
            Err(e) => vec![Err(AppendError::Unavailable(e.to_string())); n],
        }
    }

    async fn ping(&self) -> Result<(), String> {
        Ok(())
    }

    fn queue_depth(&self) -> u64 {
        0
    }

    async fn forget(&self, site: &str, user: &str) -> Result<(), String> {
        let key = attune_core::routing::partition_key(site, user);
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || purge(&db, &key))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }
}

/// Deletes every record keyed `key` (one user), across topics. Offsets are
/// never reused, so readers see a gap, not a shift.
fn purge(db: &Database, key: &str) -> Result<(), redb::Error> {
    let tx = db.begin_write()?;
    tx.open_table(LOG)?
        .retain(|_, (record_key, _)| record_key != key)?;
    tx.commit()?;
    Ok(())
}
