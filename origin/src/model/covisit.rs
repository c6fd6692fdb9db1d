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
    /// Larger values penalize popular candidates less.
    pub alpha: f64,
    /// A row keeps at least this many of its largest counts and at most
    /// twice as many (see [`trim`]): memory per item and request cost stay
    /// bounded however popular the item.
    pub row_cap: usize,
}

impl Default for CovisitConfig {
    fn default() -> Self {
        CovisitConfig {
            window: 20,
            pair_decay: 1.0,
            recency_decay: 0.8,
            alpha: 0.7,
            row_cap: 200,
        }
    }
}

impl CovisitConfig {
    /// How much the window item at position `p`, with norm `nj`, weighs its
    /// row: `recency_decay^p / nj^alpha`.
    pub fn row_weight(&self, p: i32, nj: f64) -> f64 {
        self.recency_decay.powi(p) / nj.max(1e-9).powf(self.alpha)
    }

    /// A candidate's share of a row for its count `c` and norm `nx`:
    /// `c / nx^(1 − alpha)`. With [`Self::row_weight`], the similarity
    /// `c(j, x) / (n(j)^alpha · n(x)^(1 − alpha))`.
    pub fn candidate_share(&self, c: f64, nx: f64) -> f64 {
        c / nx.max(1e-9).powf(1.0 - self.alpha)
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

/// The rule every store applies after each change of a row: once it holds
/// more than `2 · cap` cells, only the `cap` largest counts stay (ties: the
/// smaller id). Amortized, a trim runs once per `cap` new cells; the Redis
/// trainer's script and the embedded consumer implement the same rule.
pub fn trim(row: &mut HashMap<String, f64>, cap: usize) {
    if row.len() <= 2 * cap {
        return;
    }
    if cap == 0 {
        row.clear();
        return;
    }
    // The cap-th best cell, found in linear time; then keep what is not worse
    // (the order is total: counts descending, then ids ascending).
    let better = |a: (f64, &str), b: (f64, &str)| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1));
    let mut cells: Vec<(f64, &str)> = row.iter().map(|(k, v)| (*v, k.as_str())).collect();
    cells.select_nth_unstable_by(cap - 1, |a, b| better(*a, *b));
    let (last_count, last_id) = (cells[cap - 1].0, cells[cap - 1].1.to_owned());
    row.retain(|k, v| better((*v, k), (last_count, &last_id)).is_le());
}

/// Co-visitation rows: item → other item → count.
pub type CovisitRows = HashMap<String, HashMap<String, f64>>;

/// Co-visit counts of some items and every item's norm.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Neighbours {
    /// Item → (other item → count).
    pub rows: CovisitRows,
    /// Item → norm (shared: every request of a site reads the same).
    pub norms: Arc<HashMap<String, f64>>,
}

impl Neighbours {
    /// Adds a delta to both rows and the norm, trimming each changed row
    /// (what the stores do, in this order).
    pub fn apply(&mut self, d: &CovisitDelta, cfg: &CovisitConfig) {
        *entry(Arc::make_mut(&mut self.norms), &d.item) += d.norm;
        let row = entry(&mut self.rows, &d.item);
        for (j, amount) in &d.pairs {
            *entry(row, j) += amount;
        }
        trim(row, cfg.row_cap);
        for (j, amount) in &d.pairs {
            let row = entry(&mut self.rows, j);
            *entry(row, &d.item) += amount;
            trim(row, cfg.row_cap);
        }
    }
}

/// `map.entry(key.to_owned()).or_default()` without allocating the key when
/// it is already there (the common case: rows and cells repeat).
fn entry<'m, V: Default>(map: &'m mut HashMap<String, V>, key: &str) -> &'m mut V {
    if !map.contains_key(key) {
        map.insert(key.to_owned(), V::default());
    }
    map.get_mut(key).expect("just inserted")
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
    fn readers_sequences_become_symmetric_counts_and_norms() {
        let cfg = CovisitConfig::default();
        let mut n = Neighbours::default();
        // Three readers read a then b; one read a then c.
        for reader in [&["a", "b"][..], &["a", "b"], &["a", "b"], &["a", "c"]] {
            let mut w = Vec::new();
            for item in reader {
                if let Some(d) = visit(&w, item, &cfg) {
                    n.apply(&d, &cfg);
                }
                push(&mut w, item, cfg.window);
            }
        }
        assert_eq!((n.rows["a"]["b"], n.rows["b"]["a"]), (3.0, 3.0));
        assert_eq!(n.rows["a"]["c"], 1.0);
        assert_eq!((n.norms["a"], n.norms["b"], n.norms["c"]), (4.0, 3.0, 1.0));
    }

    #[test]
    fn a_row_past_twice_its_cap_keeps_its_largest_counts() {
        let mut row: HashMap<String, f64> = (0..6)
            .map(|i| (format!("x{i}"), f64::from(i % 3)))
            .collect();
        trim(&mut row, 3);
        assert_eq!(row.len(), 6, "at 2 · cap nothing is dropped");
        row.insert("y".into(), 0.5);
        trim(&mut row, 3);
        let mut kept: Vec<_> = row.keys().cloned().collect();
        kept.sort();
        // x2 and x5 hold 2; of the 1s, x1 wins the tie against x4.
        assert_eq!(kept, ["x1", "x2", "x5"]);
    }

    proptest::proptest! {
        /// Linear-time trim keeps exactly what sorting would keep.
        #[test]
        fn trim_keeps_what_a_full_sort_keeps(
            counts in proptest::collection::hash_map("[a-e]{1,3}", 0u8..4, 0..60),
            cap in 0usize..12,
        ) {
            let mut row: HashMap<String, f64> =
                counts.into_iter().map(|(k, v)| (k, f64::from(v))).collect();
            let mut sorted: Vec<(String, f64)> = row.clone().into_iter().collect();
            sorted.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            if sorted.len() > 2 * cap {
                sorted.truncate(cap);
            }
            trim(&mut row, cap);
            proptest::prop_assert_eq!(row, sorted.into_iter().collect::<HashMap<_, _>>());
        }
    }

    #[test]
    fn similarity_favours_close_counts_and_penalizes_popular_candidates_by_alpha() {
        let cfg = CovisitConfig {
            alpha: 0.5,
            recency_decay: 0.5,
            ..CovisitConfig::default()
        };
        // Cosine at alpha 0.5: 2 / sqrt(4 · 4).
        assert_eq!(cfg.row_weight(0, 4.0) * cfg.candidate_share(2.0, 4.0), 0.5);
        assert_eq!(cfg.row_weight(1, 4.0), 0.25);
        // A smaller alpha penalizes a popular candidate more.
        let niche = CovisitConfig { alpha: 0.2, ..cfg };
        assert!(niche.candidate_share(1.0, 9.0) < cfg.candidate_share(1.0, 9.0));
    }
}
