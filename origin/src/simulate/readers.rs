//! Readers whose tastes are known: the reader model of `attune-origin
//! simulate` (the demo's traffic) and of `cargo xtask bench experiment`.
//!
//! Each reader has a favourite and a second category; each item a quality.
//! Besides the rail, a reader finds articles on their own ([`World::browse`]),
//! by taste: what a site's sections and links bring them.
//! A reader examines rail position p with probability 1/(1+p)^0.7
//! (position bias) and clicks an examined item with probability
//! (0.02 + 0.8 · taste(category) · quality) · activity, where a reader's
//! activity is log-normal with median 1. Because these probabilities are
//! known, so is each served rail's expected number of clicks.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Taste for the favourite category, the second, and the rest together.
const FAVOURITE: f64 = 0.7;
const SECOND: f64 = 0.2;
const REST: f64 = 0.1;

/// The readers and the catalog.
#[derive(Debug, Clone)]
pub struct World {
    /// Each item's category (an index).
    category_of: Vec<usize>,
    quality: Vec<f64>,
    tastes: Vec<Vec<f64>>,
    /// How readily each reader clicks at all (heavy and light readers).
    activity: Vec<f64>,
}

impl World {
    /// `readers` readers over items whose categories are `category_of`
    /// (indices below `categories`, at least 2), drawn from `seed`.
    pub fn new(seed: u64, readers: usize, category_of: Vec<usize>, categories: usize) -> World {
        let categories = categories.max(2);
        let mut rng = SmallRng::seed_from_u64(seed);
        let quality = category_of
            .iter()
            .map(|_| rng.random_range(0.5..1.5))
            .collect();
        let rest = REST / (categories - 2).max(1) as f64;
        let tastes = (0..readers)
            .map(|_| {
                let favourite = rng.random_range(0..categories);
                let second = (favourite + rng.random_range(1..categories)) % categories;
                let mut t = vec![rest; categories];
                t[favourite] = FAVOURITE;
                t[second] = SECOND;
                t
            })
            .collect();
        // Log-normal, median 1: a few readers click far more than most.
        let activity = (0..readers)
            .map(|_| {
                let normal: f64 = (0..12).map(|_| rng.random::<f64>()).sum::<f64>() - 6.0;
                (0.8 * normal).exp()
            })
            .collect();
        World {
            category_of,
            quality,
            tastes,
            activity,
        }
    }

    /// Readers.
    pub fn readers(&self) -> usize {
        self.tastes.len()
    }

    /// Items.
    pub fn items(&self) -> usize {
        self.category_of.len()
    }

    /// The probability that `reader` clicks `item` once they examine it.
    pub fn p_click(&self, reader: usize, item: usize) -> f64 {
        let taste = self.tastes[reader][self.category_of[item]];
        ((0.02 + 0.8 * taste * self.quality[item]) * self.activity[reader]).min(0.95)
    }

    /// An article `reader` finds on their own (a section page, a link, a
    /// search): a category drawn by their tastes, an item of it by quality.
    pub fn browse(&self, reader: usize, rng: &mut SmallRng) -> usize {
        let t = &self.tastes[reader];
        let mut x = rng.random::<f64>() * t.iter().sum::<f64>();
        let category = (0..t.len())
            .find(|&c| {
                x -= t[c];
                x <= 0.0
            })
            .unwrap_or(t.len() - 1);
        let of: Vec<usize> = (0..self.items())
            .filter(|&i| self.category_of[i] == category)
            .collect();
        if of.is_empty() {
            return rng.random_range(0..self.items());
        }
        let mut x = rng.random::<f64>() * of.iter().map(|&i| self.quality[i]).sum::<f64>();
        *of.iter()
            .find(|&&i| {
                x -= self.quality[i];
                x <= 0.0
            })
            .unwrap_or(&of[of.len() - 1])
    }

    /// The category `reader` likes most.
    pub fn favourite(&self, reader: usize) -> usize {
        let t = &self.tastes[reader];
        (0..t.len())
            .max_by(|&a, &b| t[a].total_cmp(&t[b]))
            .unwrap_or(0)
    }
}

/// The probability that a reader examines rail position `position` (0-based).
pub fn examine(position: usize) -> f64 {
    1.0 / (1.0 + position as f64).powf(0.7)
}

/// What one rail did for one reader: drawn and expected.
#[derive(Debug, Clone, Copy, Default)]
pub struct Outcome {
    /// Clicks drawn.
    pub clicks: u32,
    /// Positions examined (impressions) drawn.
    pub impressions: u32,
    /// Clicks expected.
    pub expected_clicks: f64,
    /// Impressions expected.
    pub expected_impressions: f64,
}

/// `reader` looks at `rail` (item indices): impressions and clicks drawn,
/// and what was expected; per position, whether it was examined and clicked.
pub fn look(
    world: &World,
    reader: usize,
    rail: &[usize],
    rng: &mut SmallRng,
) -> (Outcome, Vec<(bool, bool)>) {
    let mut o = Outcome::default();
    let mut seen = Vec::with_capacity(rail.len());
    for (p, &item) in rail.iter().enumerate() {
        let (e, c) = (examine(p), world.p_click(reader, item));
        o.expected_impressions += e;
        o.expected_clicks += e * c;
        let examined = rng.random::<f64>() < e;
        let clicked = examined && rng.random::<f64>() < c;
        o.impressions += u32::from(examined);
        o.clicks += u32::from(clicked);
        seen.push((examined, clicked));
    }
    (o, seen)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Readers click their favourite category far more than others, and
    /// the top position is examined most: the structure the model and the
    /// experiments must find is there.
    #[test]
    fn readers_prefer_their_favourite_category_and_the_top_of_the_rail() {
        let category_of: Vec<usize> = (0..40).map(|i| i / 10).collect();
        let w = World::new(3, 200, category_of, 4);
        let (mut own, mut other) = (0.0, 0.0);
        for r in 0..w.readers() {
            let fav = w.favourite(r);
            for i in 0..w.items() {
                if i / 10 == fav {
                    own += w.p_click(r, i) / 10.0;
                } else {
                    other += w.p_click(r, i) / 30.0;
                }
            }
        }
        assert!(own > 3.0 * other, "{own} vs {other}");
        let mut rng = SmallRng::seed_from_u64(2);
        let fav = w.favourite(5);
        let browsed = (0..1000)
            .filter(|_| w.browse(5, &mut rng) / 10 == fav)
            .count();
        assert!(
            (600..800).contains(&browsed),
            "{browsed} of 1000 in the favourite category"
        );
        assert!(examine(0) > examine(1) && examine(1) > examine(5));
        let mut rng = SmallRng::seed_from_u64(1);
        let (o, seen) = look(&w, 0, &[0, 1, 2], &mut rng);
        assert_eq!(seen.len(), 3);
        assert!(o.expected_impressions > 1.0 && o.expected_clicks > 0.0);
    }
}
