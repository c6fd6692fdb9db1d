//! Item-to-item co-visitation learned online: the math only, no I/O.
//!
//! Each reader keeps a short window of the items they engaged with last,
//! newest first. When they engage with a new item, it is counted as
//! co-visited with every item in the window, more strongly the closer the two
//! were in the reader's sequence. Counts are symmetric; each item also keeps
//! its total (its norm). A reader's score for a candidate is the sum over
//! their window of the cosine-like similarity between the window item and
//! the candidate, the newest window items counting most — item-based kNN
//! (Sarwar et al. 2001; Linden et al. 2003) with the sequence as context, in
//! O(window) per event and O(window × neighbours) per request.

use std::collections::HashMap;
use std::sync::Arc;

/// Hyper-parameters (how they were chosen: `cargo xtask eval --tune`, on the
/// validation part of the stream only; see `docs/eval.md`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CovisitConfig {
    /// Distinct recent items a reader's window holds.
    pub window: usize,
    /// A pair `gap` places apart in the window counts `pair_decay^gap`.
    pub pair_decay: f64,
    /// At request time, the window item at position `p` counts `recency_decay^p`.
    pub recency_decay: f64,
    /// Similarity `c(j, x) / (n(j)^alpha · n(x)^(1 − alpha))`; 0.5 is cosine.
    /// Larger values favour popular candidates less.
    pub alpha: f64,
}

impl Default for CovisitConfig {
    fn default() -> Self {
        CovisitConfig {
            window: 20,
            pair_decay: 1.0,
            recency_decay: 0.8,
            alpha: 0.7,
        }
    }
}

/// What one engagement adds: the item's norm and its co-visit counts with
/// the items of the reader's window (added to both rows: `c(item, j)` and
/// `c(j, item)`).
#[derive(Debug, Clone, PartialEq)]
pub struct CovisitDelta {
    /// The item engaged with.
    pub item: String,
    /// Added to the item's norm.
    pub norm: f64,
    /// `(other item, amount)`, added symmetrically.
    pub pairs: Vec<(String, f64)>,
}

/// The change one engagement with `item` makes, given the reader's window
/// (newest first) before it. `None` when the item is already in the window:
/// repeated signals about one item (view, scroll, dwell of the same article)
/// are one visit, so they neither inflate its norm nor its pairs.
pub fn visit(window: &[String], item: &str, cfg: &CovisitConfig) -> Option<CovisitDelta> {
    if window.iter().any(|w| w == item) {
        return None;
    }
    let pairs = window
        .iter()
        .take(cfg.window)
        .zip(0..)
        .map(|(j, gap)| (j.clone(), cfg.pair_decay.powi(gap)))
        .collect();
    Some(CovisitDelta {
        item: item.to_owned(),
        norm: 1.0,
        pairs,
    })
}

/// Moves `item` to the front of the window (the rule the stores apply with
/// the event: Redis `LREM`+`LPUSH`+`LTRIM`, the embedded profile likewise).
pub fn push(window: &mut Vec<String>, item: &str, size: usize) {
    window.retain(|w| w != item);
    window.insert(0, item.to_owned());
    window.truncate(size);
}

/// Co-visit counts of some items and every item's norm.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Neighbours {
    /// Item → (other item → count).
    pub rows: crate::store::CovisitRows,
    /// Item → norm (shared: every request of a site reads the same).
    pub norms: Arc<HashMap<String, f64>>,
}

impl Neighbours {
    /// Adds a delta to both rows and the norm (what the stores do).
    pub fn apply(&mut self, d: &CovisitDelta) {
        *Arc::make_mut(&mut self.norms)
            .entry(d.item.clone())
            .or_default() += d.norm;
        for (j, amount) in &d.pairs {
            *self
                .rows
                .entry(d.item.clone())
                .or_default()
                .entry(j.clone())
                .or_default() += amount;
            *self
                .rows
                .entry(j.clone())
                .or_default()
                .entry(d.item.clone())
                .or_default() += amount;
        }
    }

    /// The reader's score per candidate: Σ over their window (newest first)
    /// of `recency_decay^p · similarity(window item, candidate)`. Items with no
    /// co-visits are absent.
    pub fn scores(&self, window: &[String], cfg: &CovisitConfig) -> HashMap<&str, f64> {
        let mut out: HashMap<&str, f64> = HashMap::new();
        for (j, p) in window.iter().take(cfg.window).zip(0..) {
            let (Some(row), Some(&nj)) = (self.rows.get(j), self.norms.get(j)) else {
                continue;
            };
            let weight = cfg.recency_decay.powi(p) / nj.max(1e-9).powf(cfg.alpha);
            for (x, c) in row {
                let nx = self.norms.get(x).copied().unwrap_or(1.0).max(1e-9);
                *out.entry(x.as_str()).or_default() += weight * c / nx.powf(1.0 - cfg.alpha);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_visit_pairs_the_item_with_the_window_closer_ones_more() {
        let cfg = CovisitConfig::default();
        let d = visit(&window(&["b", "a"]), "c", &cfg).unwrap();
        assert_eq!(d.norm, 1.0);
        let cfg = CovisitConfig {
            pair_decay: 0.5,
            ..cfg
        };
        let d = visit(&window(&["b", "a"]), "c", &cfg).unwrap();
        assert_eq!(d.pairs, [("b".into(), 1.0), ("a".into(), 0.5)]);
        assert_eq!(visit(&window(&["b", "c"]), "c", &cfg), None);
    }

    #[test]
    fn the_window_keeps_distinct_items_newest_first() {
        let mut w = window(&["b", "a"]);
        push(&mut w, "a", 2);
        assert_eq!(w, ["a", "b"]);
        push(&mut w, "c", 2);
        assert_eq!(w, ["c", "a"]);
    }

    #[test]
    fn items_visited_together_score_for_a_reader_of_one_of_them() {
        let cfg = CovisitConfig::default();
        let mut n = Neighbours::default();
        // Three readers read a then b; one read a then c.
        for reader in [&["a", "b"][..], &["a", "b"], &["a", "b"], &["a", "c"]] {
            let mut w = Vec::new();
            for item in reader {
                if let Some(d) = visit(&w, item, &cfg) {
                    n.apply(&d);
                }
                push(&mut w, item, cfg.window);
            }
        }
        let s = n.scores(&window(&["a"]), &cfg);
        assert!(s["b"] > s["c"], "{s:?}");
        assert!(!s.contains_key("a"));
        // b's row knows a (symmetry).
        assert_eq!(n.rows["b"]["a"], 3.0);
    }
}
