//! A site's candidates as columns: what every request of the site ranks
//! against, gathered once per snapshot (see [`super::snapshots`]) so that a
//! request touches its own user's data by key and the catalog by index.

use std::collections::HashMap;
use std::sync::Arc;

use attune_core::{DecayedScore, HalfLife};

use crate::store::Item;

/// The catalog, indexed: item ids and tags to positions.
#[derive(Debug, Default)]
pub struct Catalog {
    items: Vec<Item>,
    index: HashMap<String, u32>,
    /// Items by the path of their `metadata.url`.
    paths: HashMap<String, u32>,
    tags: HashMap<String, u32>,
    /// Tag positions of item `n`: `item_tags[tag_start[n]..tag_start[n + 1]]`.
    item_tags: Vec<u32>,
    tag_start: Vec<u32>,
}

/// The path of a URL (`https://news.example/a/b?x` → `/a/b`), or the text
/// itself when it is a path already.
pub fn path_of(url: &str) -> Option<String> {
    if url.starts_with('/') {
        let end = url.find(['?', '#']).unwrap_or(url.len());
        return Some(url[..end].to_owned());
    }
    let uri: axum::http::Uri = url.parse().ok()?;
    uri.authority()?;
    Some(uri.path().to_owned())
}

impl Catalog {
    /// Indexes `items` (a repeated id keeps its first position).
    pub fn new(items: Vec<Item>) -> Self {
        let mut index = HashMap::with_capacity(items.len());
        let mut paths = HashMap::new();
        let mut tags: HashMap<String, u32> = HashMap::new();
        let mut item_tags = Vec::new();
        let mut tag_start = Vec::with_capacity(items.len() + 1);
        for (n, item) in items.iter().enumerate() {
            index.entry(item.id.clone()).or_insert(n as u32);
            if let Some(path) = item
                .metadata
                .get("url")
                .and_then(|u| u.as_str())
                .and_then(path_of)
            {
                paths.entry(path).or_insert(n as u32);
            }
            tag_start.push(item_tags.len() as u32);
            for tag in &item.tags {
                let next = tags.len() as u32;
                item_tags.push(*tags.entry(tag.clone()).or_insert(next));
            }
        }
        tag_start.push(item_tags.len() as u32);
        Catalog {
            items,
            index,
            paths,
            tags,
            item_tags,
            tag_start,
        }
    }

    /// The items, in catalog order.
    pub fn items(&self) -> &[Item] {
        &self.items
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Position of an item id.
    pub fn position(&self, id: &str) -> Option<usize> {
        self.index.get(id).map(|&n| n as usize)
    }

    /// The item whose `metadata.url` has this path, if one has.
    pub fn by_path(&self, path: &str) -> Option<&str> {
        self.paths
            .get(path)
            .map(|&n| self.items[n as usize].id.as_str())
    }

    /// Position of a tag.
    pub fn tag(&self, tag: &str) -> Option<usize> {
        self.tags.get(tag).map(|&t| t as usize)
    }

    /// Distinct tags.
    pub fn tag_count(&self) -> usize {
        self.tags.len()
    }

    /// Tag positions of the item at `n`.
    pub fn tags_of(&self, n: usize) -> &[u32] {
        &self.item_tags[self.tag_start[n] as usize..self.tag_start[n + 1] as usize]
    }
}

/// What the consumers learned about the catalog's items, in catalog order.
#[derive(Debug, Default)]
pub struct Learned {
    dim: usize,
    /// Item factors row by row; zeros where an item has none (scores 0, as
    /// no factors do).
    vectors: Vec<f32>,
    /// Co-visitation norms by item id (window items need not be in the catalog).
    pub norms: Arc<HashMap<String, f64>>,
    /// The same norms per catalog position, 1 where unknown.
    norm_at: Vec<f64>,
}

impl Learned {
    /// Gathers factors and co-visit norms into `catalog`'s order.
    pub fn new(
        catalog: &Catalog,
        vectors: &HashMap<String, Vec<f32>>,
        norms: Arc<HashMap<String, f64>>,
    ) -> Self {
        let dim = vectors.values().map(Vec::len).max().unwrap_or(0);
        let mut matrix = vec![0.0; dim * catalog.len()];
        for (n, item) in catalog.items.iter().enumerate() {
            if let Some(v) = vectors.get(&item.id) {
                matrix[n * dim..n * dim + v.len()].copy_from_slice(v);
            }
        }
        let norm_at = catalog
            .items
            .iter()
            .map(|i| norms.get(&i.id).copied().unwrap_or(1.0))
            .collect();
        Learned {
            dim,
            vectors: matrix,
            norms,
            norm_at,
        }
    }

    /// Factors of the item at `n` (empty when nothing was learned).
    pub fn vector(&self, n: usize) -> &[f32] {
        &self.vectors[n * self.dim..(n + 1) * self.dim]
    }

    /// Co-visit norm of the item at `n`.
    pub fn norm_at(&self, n: usize) -> f64 {
        self.norm_at[n]
    }
}

/// Popularity per catalog position, both columns normalized to 0..=1 over
/// the catalog (ids outside it can never be recommended, so they never
/// shrink the scale).
#[derive(Debug, Default, Clone)]
pub struct Popularity {
    /// The item's own.
    pub item: Vec<f64>,
    /// Its best category's: the sum of its items' popularity.
    pub category: Vec<f64>,
}

impl Popularity {
    /// From decayed scores valued at `now_ms` (normalization makes the
    /// choice of `now_ms` irrelevant to the result: every score decays by
    /// the same factor).
    pub fn new(
        catalog: &Catalog,
        scores: &HashMap<String, DecayedScore>,
        half_life: HalfLife,
        now_ms: i64,
    ) -> Self {
        Self::from_values(catalog, values(catalog, scores, half_life, now_ms))
    }

    /// A newcomer's: half the site's, half the mean of their segments'
    /// (each normalized first). Segments with no popularity are left out.
    pub fn blend(
        &self,
        catalog: &Catalog,
        segments: &[HashMap<String, DecayedScore>],
        half_life: HalfLife,
        now_ms: i64,
    ) -> Self {
        let segments: Vec<Vec<f64>> = segments
            .iter()
            .filter(|s| !s.is_empty())
            .map(|s| normalized(values(catalog, s, half_life, now_ms)))
            .collect();
        if segments.is_empty() {
            return self.clone();
        }
        let share = 0.5 / segments.len() as f64;
        let blended = (0..catalog.len())
            .map(|n| 0.5 * self.item[n] + segments.iter().map(|s| share * s[n]).sum::<f64>())
            .collect();
        Self::from_values(catalog, blended)
    }

    fn from_values(catalog: &Catalog, item: Vec<f64>) -> Self {
        let mut per_tag = vec![0.0; catalog.tag_count()];
        for (n, v) in item.iter().enumerate() {
            for &t in catalog.tags_of(n) {
                per_tag[t as usize] += v;
            }
        }
        let item = normalized(item);
        let per_tag = normalized(per_tag);
        let category = (0..catalog.len())
            .map(|n| {
                catalog
                    .tags_of(n)
                    .iter()
                    .map(|&t| per_tag[t as usize])
                    .fold(0.0, f64::max)
            })
            .collect();
        Popularity { item, category }
    }
}

/// Decayed scores valued at `now_ms`, by catalog position (0 where none).
fn values(
    catalog: &Catalog,
    scores: &HashMap<String, DecayedScore>,
    half_life: HalfLife,
    now_ms: i64,
) -> Vec<f64> {
    let mut out = vec![0.0; catalog.len()];
    for (id, s) in scores {
        if let Some(n) = catalog.position(id) {
            out[n] = s.value_at(now_ms, half_life);
        }
    }
    out
}

/// Scaled so the largest is 1 (all zeros stay zeros).
fn normalized(mut v: Vec<f64>) -> Vec<f64> {
    let max = v.iter().copied().fold(0.0, f64::max);
    if max > 0.0 {
        v.iter_mut().for_each(|x| *x /= max);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, tags: &[&str]) -> Item {
        Item {
            id: id.into(),
            length_words: None,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            published_at_ms: None,
            metadata: serde_json::Value::Null,
        }
    }

    fn scores(pairs: &[(&str, f64)]) -> HashMap<String, DecayedScore> {
        pairs
            .iter()
            .map(|(id, v)| (id.to_string(), DecayedScore::point(*v, 0)))
            .collect()
    }

    #[test]
    fn items_are_found_by_the_path_of_their_url() {
        let with_url = |id: &str, url: &str| Item {
            metadata: serde_json::json!({"url": url}),
            ..item(id, &[])
        };
        let catalog = Catalog::new(vec![
            with_url("a", "https://news.example/2026/12/a-slug?utm=x"),
            with_url("b", "/world/b-slug"),
            item("c", &[]),
        ]);
        assert_eq!(catalog.by_path("/2026/12/a-slug"), Some("a"));
        assert_eq!(catalog.by_path("/world/b-slug"), Some("b"));
        assert_eq!(catalog.by_path("/2026/12"), None);
        assert_eq!(path_of("https://x.example/p?q#f").as_deref(), Some("/p"));
        assert_eq!(path_of("/p?q").as_deref(), Some("/p"));
        assert_eq!(path_of("not a url"), None);
    }

    #[test]
    fn popularity_is_normalized_over_the_catalog_per_item_and_best_category() {
        let catalog = Catalog::new(vec![
            item("a", &["x"]),
            item("b", &["x", "y"]),
            item("c", &["y"]),
        ]);
        let hl = HalfLife::from_hours(1.0).unwrap();
        // An id outside the catalog does not shrink the scale.
        let p = Popularity::new(
            &catalog,
            &scores(&[("a", 2.0), ("b", 1.0), ("zz", 99.0)]),
            hl,
            0,
        );
        assert_eq!(p.item, [1.0, 0.5, 0.0]);
        // x sums 3, y sums 1.
        assert_eq!(p.category, [1.0, 1.0, 1.0 / 3.0]);
        // Valued later, every score decays alike: the columns do not move.
        assert_eq!(
            Popularity::new(&catalog, &scores(&[("a", 2.0), ("b", 1.0)]), hl, 7_200_000).item,
            p.item
        );
    }

    #[test]
    fn a_segment_breaks_a_tie_of_the_site() {
        let catalog = Catalog::new(vec![item("m", &[]), item("d", &[])]);
        let hl = HalfLife::from_hours(1.0).unwrap();
        let site = Popularity::new(&catalog, &scores(&[("m", 1.0), ("d", 1.0)]), hl, 0);
        let blended = site.blend(&catalog, &[scores(&[("m", 1.0)]), HashMap::new()], hl, 0);
        assert!(blended.item[0] > blended.item[1], "{blended:?}");
        assert_eq!(
            site.blend(&catalog, &[HashMap::new()], hl, 0).item,
            site.item
        );
    }

    #[test]
    fn missing_factors_are_zeros_and_missing_norms_one() {
        let catalog = Catalog::new(vec![item("a", &[]), item("b", &[])]);
        let vectors = HashMap::from([("b".to_string(), vec![1.0, 2.0])]);
        let norms = Arc::new(HashMap::from([("a".to_string(), 4.0)]));
        let l = Learned::new(&catalog, &vectors, norms);
        assert_eq!(
            (l.vector(0), l.vector(1)),
            (&[0.0, 0.0][..], &[1.0, 2.0][..])
        );
        assert_eq!((l.norm_at(0), l.norm_at(1)), (4.0, 1.0));
    }
}
