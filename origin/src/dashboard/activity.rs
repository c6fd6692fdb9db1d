//! What this origin process accepted, for the dashboard: events per kind
//! (lock-free counters) and the users seen most recently per site.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use attune_core::EventKind;

/// Recent users remembered per site.
const RECENT_USERS: usize = 20;

/// Counters shared by every ingest request.
#[derive(Default)]
pub struct Activity {
    by_kind: [AtomicU64; EventKind::ALL.len()],
    recent: Mutex<HashMap<String, VecDeque<String>>>,
}

impl Activity {
    /// Counts a batch's accepted events (also on `/metrics`) and remembers its user.
    pub fn record(&self, site: &str, user: &str, kinds: impl IntoIterator<Item = EventKind>) {
        let mut counts = [0u64; EventKind::ALL.len()];
        for kind in kinds {
            counts[kind as usize] += 1;
        }
        for (kind, n) in EventKind::ALL.iter().zip(counts) {
            if n > 0 {
                self.by_kind[*kind as usize].fetch_add(n, Ordering::Relaxed);
                metrics::counter!("attune_events_accepted_total", "kind" => kind.as_str())
                    .increment(n);
            }
        }
        // A hint for the dashboard's user picker: skipped rather than waited for.
        if let Ok(mut recent) = self.recent.try_lock() {
            let users = match recent.get_mut(site) {
                Some(users) => users,
                None => recent.entry(site.to_owned()).or_default(),
            };
            if users.front().map(String::as_str) != Some(user) {
                users.retain(|u| u != user);
                users.push_front(user.to_owned());
                users.truncate(RECENT_USERS);
            }
        }
    }

    /// Events accepted per kind since the process started.
    pub fn totals(&self) -> BTreeMap<&'static str, u64> {
        EventKind::ALL
            .iter()
            .map(|k| {
                (
                    k.as_str(),
                    self.by_kind[*k as usize].load(Ordering::Relaxed),
                )
            })
            .collect()
    }

    /// The site's most recent users, newest first.
    pub fn recent_users(&self, site: &str) -> Vec<String> {
        self.recent
            .lock()
            .expect("not poisoned")
            .get(site)
            .map(|u| u.iter().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_kind_and_keeps_recent_users_newest_first() {
        let a = Activity::default();
        a.record("s", "u1", [EventKind::Click, EventKind::Click]);
        a.record("s", "u2", [EventKind::Dwell]);
        a.record("s", "u1", [EventKind::PageView]);
        a.record("t", "u3", [EventKind::Impression]);
        let t = a.totals();
        assert_eq!(t["click"], 2);
        assert_eq!(t["dwell"], 1);
        assert_eq!(t["page_view"], 1);
        assert_eq!(t["impression"], 1);
        assert_eq!(t["scroll"], 0);
        assert_eq!(a.recent_users("s"), ["u1", "u2"]);
        assert_eq!(a.recent_users("t"), ["u3"]);
        assert!(a.recent_users("x").is_empty());
    }
}
