//! Ingest's side of the reconciliation ledger ([`crate::ledger`]): what it
//! acknowledged, what the log refused, what it ignored, what clients said
//! they dropped. Counted in memory per request and added to the store once a
//! second, so the hot path takes one short lock, not a round trip.
//!
//! A crash loses at most the last second's counts; the audit then names the
//! minute as one where Kafka holds more than ingest counted — a false alarm
//! on the safe side, never a hidden loss.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use attune_core::EventKind;

use crate::ledger::{self, minute_of, Counts, Measure, ALL_KINDS};
use crate::store::Store;

/// How often the counts go to the store.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Counts not yet in the store.
#[derive(Default)]
pub struct IngestLedger {
    pending: Mutex<Counts>,
}

/// One batch's outcome, by kind.
pub struct BatchOutcome<'a> {
    /// Site.
    pub site: &'a str,
    /// Receipt time, Unix ms (the minute every tier counts it in).
    pub received_at_ms: i64,
    /// Kinds of the events appended and acknowledged.
    pub accepted: &'a [EventKind],
    /// Kinds of the events the log did not acknowledge.
    pub unstored: &'a [EventKind],
    /// Kinds of the events ignored for a forgotten user.
    pub forgotten: &'a [EventKind],
    /// What the client reported dropping before it sent.
    pub client_dropped: u32,
}

impl IngestLedger {
    /// Counts one batch: per kind first, so the shared map (and its keys'
    /// strings) is touched once per kind, not once per event.
    pub fn record(&self, b: &BatchOutcome) {
        let minute = minute_of(b.received_at_ms);
        let per_kind = |kinds: &[EventKind]| {
            let mut n = [0u64; EventKind::ALL.len()];
            for kind in kinds {
                n[EventKind::ALL
                    .iter()
                    .position(|k| k == kind)
                    .expect("in ALL")] += 1;
            }
            n
        };
        let counted = [
            (per_kind(b.accepted), Measure::Accepted),
            (per_kind(b.unstored), Measure::Unstored),
            (per_kind(b.forgotten), Measure::IngestForgotten),
        ];
        let mut pending = self.pending.lock().expect("not poisoned");
        for (n, measure) in counted {
            for (kind, n) in EventKind::ALL.iter().zip(n) {
                // `add` skips zeros.
                ledger::add(&mut pending, minute, b.site, kind.as_str(), measure, n);
            }
        }
        let dropped = u64::from(b.client_dropped);
        ledger::add(
            &mut pending,
            minute,
            b.site,
            ALL_KINDS,
            Measure::ClientDropped,
            dropped,
        );
    }

    /// Moves the pending counts to the store; on failure they stay pending.
    pub async fn flush(&self, store: &dyn Store) {
        let taken = std::mem::take(&mut *self.pending.lock().expect("not poisoned"));
        if taken.is_empty() {
            return;
        }
        if let Err(e) = store.add_ledger(&taken).await {
            tracing::warn!("ingest ledger not written, retrying: {e}");
            let mut pending = self.pending.lock().expect("not poisoned");
            for (key, n) in taken {
                *pending.entry(key).or_default() += n;
            }
        }
    }

    /// Flushes every [`FLUSH_EVERY`] while the ledger is in use.
    pub fn spawn_flusher(self: &Arc<Self>, store: Arc<dyn Store>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(FLUSH_EVERY);
            loop {
                tick.tick().await;
                let Some(ledger) = weak.upgrade() else { return };
                ledger.flush(&*store).await;
            }
        });
    }

    #[cfg(test)]
    fn pending(&self) -> Counts {
        self.pending.lock().expect("not poisoned").clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Cell;

    #[test]
    fn a_batch_counts_per_kind_in_its_minute() {
        let ledger = IngestLedger::default();
        ledger.record(&BatchOutcome {
            site: "s",
            received_at_ms: 125_000,
            accepted: &[EventKind::Click, EventKind::Click, EventKind::Dwell],
            unstored: &[EventKind::Scroll],
            forgotten: &[],
            client_dropped: 4,
        });
        let cell = |kind: &str| Cell {
            minute: 2,
            site: "s".into(),
            kind: kind.into(),
        };
        let want = Counts::from([
            ((cell("click"), Measure::Accepted), 2),
            ((cell("dwell"), Measure::Accepted), 1),
            ((cell("scroll"), Measure::Unstored), 1),
            ((cell("all"), Measure::ClientDropped), 4),
        ]);
        assert_eq!(ledger.pending(), want);
    }
}
