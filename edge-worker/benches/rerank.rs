//! The native floor of the edge's rerank: the same function and data as the
//! worker's `/__attune/bench/rerank`, timed natively. Prints microseconds per
//! rerank of 200 candidates; `cargo xtask bench edge` runs it beside workerd.

use std::time::Instant;

use attune_core::{HalfLife, RerankConfig};
use attune_edge::candidates::rerank_for;
use attune_edge::fixture;

fn main() {
    let hl = HalfLife::from_hours(1.0).expect("positive");
    let candidates = fixture::candidates(200);
    let state = fixture::state(&candidates, hl);
    let run = |n: usize| {
        let t0 = Instant::now();
        let mut checksum = 0.0;
        for i in 0..n {
            let ranked = rerank_for(
                &candidates,
                Some(&state),
                1_800_000_060_000 + i as i64,
                hl,
                RerankConfig::default(),
                10,
            );
            checksum += ranked[0].score;
        }
        (t0.elapsed().as_secs_f64() * 1e6 / n as f64, checksum)
    };
    run(200); // warm-up
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        best = best.min(run(2000).0);
    }
    println!("{{\"native_us_per_rerank\": {best:.3}}}");
}
