//! What ingest asks the store about a sender (forgotten? stated attributes?),
//! bounded: Kafka is the durable log and must keep taking events while the
//! store is slow or down. A lookup that fails or outlasts the timeout gives
//! an unknown context: the events are appended without stored attributes,
//! their records say so (`attributes_unknown`), and the consumers check the
//! forgotten mark again before they apply anything. After a failure the store
//! is not asked for [`BACK_OFF`], so a dead store costs requests nothing.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use crate::clock::now_ms;
use crate::store::{IngestContext, Store};

/// How long ingest leaves the store alone after a failed lookup.
pub const BACK_OFF: Duration = Duration::from_secs(1);

/// The sender's context, or `None` when the store could not say in time.
pub struct ContextLookup {
    timeout: Duration,
    /// Until when (Unix ms) lookups are skipped.
    skip_until_ms: AtomicI64,
}

impl ContextLookup {
    /// Lookups bounded by `timeout`.
    pub fn new(timeout: Duration) -> Self {
        ContextLookup {
            timeout,
            skip_until_ms: AtomicI64::new(0),
        }
    }

    /// The sender's context, or `None` when the store failed, was too slow,
    /// or failed less than [`BACK_OFF`] ago.
    pub async fn get(&self, store: &dyn Store, site: &str, user: &str) -> Option<IngestContext> {
        if now_ms() < self.skip_until_ms.load(Ordering::Relaxed) {
            metrics::counter!("attune_ingest_context_unknown_total", "reason" => "backing_off")
                .increment(1);
            return None;
        }
        let reason = match tokio::time::timeout(self.timeout, store.ingest_context(site, user))
            .await
        {
            Ok(Ok(context)) => return Some(context),
            Ok(Err(e)) => {
                tracing::warn!("ingest goes on without the store for {BACK_OFF:?}: {e}");
                "store_error"
            }
            Err(_) => {
                tracing::warn!(
                    "the store did not answer within {:?}; ingest goes on without it for {BACK_OFF:?}",
                    self.timeout
                );
                "store_timeout"
            }
        };
        metrics::counter!("attune_ingest_context_unknown_total", "reason" => reason).increment(1);
        self.skip_until_ms
            .store(now_ms() + BACK_OFF.as_millis() as i64, Ordering::Relaxed);
        None
    }
}
