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
    if let Some(worst) = worst_kept(row.iter().map(|(k, v)| (*v, k.as_str())), cap) {
        row.retain(|k, v| kept((*v, k), &worst));
    }
}

/// The order of cells: counts descending, then ids ascending (total).
fn better(a: (f64, &str), b: (f64, &str)) -> std::cmp::Ordering {
    b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1))
}

/// Whether a trim keeps `cell`, given the worst cell it keeps.
fn kept(cell: (f64, &str), worst: &(f64, String)) -> bool {
    better(cell, (worst.0, &worst.1)).is_le()
}

/// For a row of `cells` that a trim to `cap` shrinks, the worst cell it keeps
/// (the cap-th best, found in linear time); `None` when nothing goes.
fn worst_kept<'n>(
    cells: impl ExactSizeIterator<Item = (f64, &'n str)>,
    cap: usize,
) -> Option<(f64, String)> {
    if cells.len() <= 2 * cap {
        return None;
    }
    if cap == 0 {
        return Some((f64::INFINITY, String::new()));
    }
    let mut cells: Vec<(f64, &str)> = cells.collect();
    cells.select_nth_unstable_by(cap - 1, |a, b| better(*a, *b));
    Some((cells[cap - 1].0, cells[cap - 1].1.to_owned()))
}

/// Co-visitation rows: item → other item → count.
pub type CovisitRows = HashMap<String, HashMap<String, f64>>;

/// A fast hasher for the in-memory rows: their keys are small integers the
/// interner hands out, never chosen by a client.
type Fast = foldhash::fast::RandomState;

/// Co-visit counts and every item's norm, in memory (`cargo xtask eval`, and
/// the tests that hold the stores to the same rules). Item ids are interned,
/// so a cell is an integer and a count, and updating one compares no strings.
#[derive(Debug, Clone, Default)]
pub struct Neighbours {
    ids: HashMap<String, u32, Fast>,
    names: Vec<String>,
    /// By interned id: other id → count.
    rows: Vec<HashMap<u32, f64, Fast>>,
    /// Item → norm (shared: every request of a site reads the same).
    pub norms: Arc<HashMap<String, f64>>,
}

impl Neighbours {
    /// Adds a delta to both rows and the norm, trimming each changed row
    /// (what the stores do, in this order).
    pub fn apply(&mut self, d: &CovisitDelta, cfg: &CovisitConfig) {
        *entry(Arc::make_mut(&mut self.norms), &d.item) += d.norm;
        let item = self.intern(&d.item);
        let others: Vec<(u32, f64)> = d
            .pairs
            .iter()
            .map(|(j, amount)| (self.intern(j), *amount))
            .collect();
        let row = &mut self.rows[item as usize];
        for &(j, amount) in &others {
            *row.entry(j).or_default() += amount;
        }
        self.trim(item, cfg.row_cap);
        for &(j, amount) in &others {
            *self.rows[j as usize].entry(item).or_default() += amount;
            self.trim(j, cfg.row_cap);
        }
    }

    /// [`trim`] of the row of interned `item`.
    fn trim(&mut self, item: u32, cap: usize) {
        let (row, names) = (&mut self.rows[item as usize], &self.names);
        let name = |k: &u32| names[*k as usize].as_str();
        if let Some(worst) = worst_kept(row.iter().map(|(k, v)| (*v, name(k))), cap) {
            row.retain(|k, v| kept((*v, name(k)), &worst));
        }
    }

    fn intern(&mut self, id: &str) -> u32 {
        if let Some(&n) = self.ids.get(id) {
            return n;
        }
        let n = u32::try_from(self.names.len()).expect("fewer than 2^32 items");
        self.ids.insert(id.to_owned(), n);
        self.names.push(id.to_owned());
        self.rows.push(HashMap::default());
        n
    }

    /// The count of `a` with `b`, if the row of `a` holds one.
    pub fn count(&self, a: &str, b: &str) -> Option<f64> {
        let (a, b) = (self.ids.get(a)?, self.ids.get(b)?);
        self.rows[*a as usize].get(b).copied()
    }

    /// The rows of `items` that have any, as a store's `covisit_rows` answers.
    pub fn rows_of<'s>(&self, items: impl IntoIterator<Item = &'s String>) -> CovisitRows {
        items
            .into_iter()
            .filter_map(|item| {
                let row = &self.rows[*self.ids.get(item)? as usize];
                let row: HashMap<String, f64> = row
                    .iter()
                    .map(|(k, v)| (self.names[*k as usize].clone(), *v))
                    .collect();
                (!row.is_empty()).then(|| (item.clone(), row))
            })
            .collect()
    }

    /// Every row.
    pub fn rows(&self) -> CovisitRows {
        self.rows_of(&self.names)
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
        assert_eq!(
            (n.count("a", "b"), n.count("b", "a")),
            (Some(3.0), Some(3.0))
        );
        assert_eq!(n.count("a", "c"), Some(1.0));
        assert_eq!(n.count("b", "c"), None);
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
