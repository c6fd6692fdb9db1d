//! Item popularity, credited after the log acknowledged the events.
//!
//! Contributions are merged in memory (attune-core's decayed sums merge in any
//! order) and written to the store a few times a second in one call per site,
//! so ingest never waits on it and the store sees one write per flush, not one
//! per batch. Popularity is a ranking signal, not an accounting: a crash loses
//! at most one flush interval of it, and never an event.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use attune_core::{DecayedScore, HalfLife};

use crate::store::Store;

/// How often pending popularity is written.
pub const FLUSH_EVERY: Duration = Duration::from_millis(200);

/// Pending contributions: site → item → decayed sum.
#[derive(Default)]
pub struct PopularityBuffer {
    pending: Mutex<HashMap<String, HashMap<String, DecayedScore>>>,
}

impl PopularityBuffer {
    /// Adds `(item, weight, t_ms)` contributions to each of `scopes` (the site,
    /// and its segments), under one lock.
    pub fn add(&self, scopes: &[String], contributions: &[(&str, f64, i64)], half_life: HalfLife) {
        // One decayed sum per item first, outside the lock.
        let mut merged: Vec<(&str, DecayedScore)> = Vec::with_capacity(contributions.len());
        for &(item, w, t) in contributions {
            match merged.iter_mut().find(|(i, _)| *i == item) {
                Some((_, score)) => score.add(w, t, half_life),
                None => merged.push((item, DecayedScore::point(w, t))),
            }
        }
        let mut pending = self.pending.lock().expect("not poisoned");
        for scope in scopes {
            let items = match pending.get_mut(scope) {
                Some(items) => items,
                None => pending.entry(scope.clone()).or_default(),
            };
            for &(item, score) in &merged {
                match items.get_mut(item) {
                    Some(s) => *s = s.merge(score, half_life),
                    None => {
                        items.insert(item.to_owned(), score);
                    }
                }
            }
        }
    }

    /// Writes everything pending; what fails is logged and dropped.
    pub async fn flush(&self, store: &dyn Store, half_life: HalfLife) {
        let pending = std::mem::take(&mut *self.pending.lock().expect("not poisoned"));
        for (site, items) in pending {
            let contributions: Vec<(String, f64, i64)> = items
                .into_iter()
                .map(|(item, s)| (item, s.value, s.at_ms))
                .collect();
            if let Err(e) = store.add_popularity(&site, &contributions, half_life).await {
                tracing::warn!(%site, items = contributions.len(), "popularity update lost: {e}");
            }
        }
    }

    /// Flushes every [`FLUSH_EVERY`] until the buffer or the store is dropped
    /// (the task holds neither, so it never keeps a closed app's store open).
    pub fn spawn_flusher(self: &Arc<Self>, store: &Arc<dyn Store>, half_life: HalfLife) {
        let (buffer, store): (Weak<Self>, Weak<dyn Store>) =
            (Arc::downgrade(self), Arc::downgrade(store));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(FLUSH_EVERY);
            loop {
                tick.tick().await;
                let (Some(buffer), Some(store)) = (buffer.upgrade(), store.upgrade()) else {
                    return;
                };
                buffer.flush(store.as_ref(), half_life).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contributions_merge_per_item() {
        let hl = HalfLife::from_ms(1000.0).unwrap();
        let buf = PopularityBuffer::default();
        buf.add(&["s".into()], &[("a", 1.0, 0), ("a", 4.0, 2000)], hl);
        let pending = buf.pending.lock().unwrap();
        assert_eq!(pending["s"]["a"], DecayedScore::point(4.25, 2000));
    }
}
