//! Online implicit-feedback matrix factorization: the math only, no I/O.
//!
//! Every interaction is one stochastic-gradient step (ISGD, Vinagre et al.
//! 2014) toward 1 for the item, weighted by attune-core's feedback weight, plus
//! a few steps toward 0 for items sampled in proportion to their popularity —
//! eALS's "popularity-weighted missing data" (He et al. 2016), sampled rather
//! than summed so that one update costs O(dimensions × samples), not O(items).
//! L2 regularization keeps the factors small. Scores blend the dot product
//! with decayed popularity, which carries new users and new items.
//!
//! [`covisit`] is the other learned signal (item-to-item, from each reader's
//! sequence); [`online`] is one engagement's whole update of both, shared by
//! the consumers and `cargo xtask eval`.

pub mod batch;
pub mod covisit;
pub mod online;
pub mod validation;
pub mod versions;

/// Hyper-parameters.
#[derive(Debug, Clone, Copy)]
pub struct MfConfig {
    /// Factors per user and item.
    pub dim: usize,
    /// SGD step size.
    pub learning_rate: f32,
    /// L2 regularization.
    pub regularization: f32,
    /// Negative samples per interaction.
    pub negatives: usize,
    /// Weight of a negative sample's step.
    pub negative_weight: f32,
    /// Largest feedback weight applied to one step (keeps SGD stable).
    pub max_weight: f32,
}

impl Default for MfConfig {
    fn default() -> Self {
        MfConfig {
            dim: 32,
            learning_rate: 0.05,
            regularization: 0.01,
            negatives: 4,
            negative_weight: 0.5,
            max_weight: 3.0,
        }
    }
}

/// A deterministic starting vector for `id`: every process initializes a new
/// user or item identically, with no coordination.
///
/// Written out rather than taken from `rand`: the bits must stay the same in
/// every process and every release (stored factors grow from them, and the
/// eval's figures depend on them), and `rand`'s `SmallRng` and std's hashers
/// promise neither. FNV-1a and splitmix64 are fixed, published algorithms;
/// a test pins their output.
pub fn initial(id: &str, dim: usize) -> Vec<f32> {
    // FNV-1a of the id seeds splitmix64.
    let mut state = fnv1a(id);
    (0..dim)
        .map(|_| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            ((z >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.1
        })
        .collect()
}

/// FNV-1a, 64 bits: a fixed, published hash, the same in every process.
pub fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Packs a vector as little-endian f32 (how factors are stored, in Redis
/// and in the embedded store alike).
pub fn pack(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Unpacks a little-endian f32 vector; `None` if the length is not `dim`.
pub fn unpack(bytes: &[u8], dim: usize) -> Option<Vec<f32>> {
    (bytes.len() == dim * 4).then(|| {
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    })
}

/// Unpacks a packed little-endian f32 vector of any length.
pub fn unpack_any(bytes: &[u8]) -> Option<Vec<f32>> {
    unpack(bytes, bytes.len() / 4)
}

/// The dot product.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// One weighted SGD step of `user` and `item` toward `target`, in place.
pub fn step(user: &mut [f32], item: &mut [f32], target: f32, weight: f32, cfg: &MfConfig) {
    let err = (target - dot(user, item)) * weight.min(cfg.max_weight);
    let (lr, reg) = (cfg.learning_rate, cfg.regularization);
    for (u, i) in user.iter_mut().zip(item.iter_mut()) {
        let (u0, i0) = (*u, *i);
        *u += lr * (err * i0 - reg * u0);
        *i += lr * (err * u0 - reg * i0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_vectors_are_deterministic_small_and_distinct() {
        let a = initial("user-1", 16);
        assert_eq!(a, initial("user-1", 16));
        assert_ne!(a, initial("user-2", 16));
        // The bits every release must keep (see `initial`).
        let pinned: Vec<u32> = initial("site/item-1", 3)
            .iter()
            .map(|x| x.to_bits())
            .collect();
        assert_eq!(pinned, [1_014_737_792, 1_009_429_523, 3_170_994_618]);
        assert!(a.iter().all(|x| x.abs() <= 0.05));
    }

    #[test]
    fn vectors_pack_and_unpack() {
        let v = initial("x", 8);
        assert_eq!(unpack(&pack(&v), 8), Some(v));
        assert_eq!(unpack(&[0; 7], 8), None);
    }

    #[test]
    fn positive_steps_raise_the_score_and_negative_steps_lower_it() {
        let cfg = MfConfig::default();
        let (mut u, mut i) = (initial("u", 16), initial("i", 16));
        let before = dot(&u, &i);
        for _ in 0..20 {
            step(&mut u, &mut i, 1.0, 1.0, &cfg);
        }
        let up = dot(&u, &i);
        assert!(up > before, "{before} → {up}");
        for _ in 0..20 {
            step(&mut u, &mut i, 0.0, 1.0, &cfg);
        }
        assert!(dot(&u, &i) < up);
    }
}
