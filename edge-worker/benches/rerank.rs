//! The native floor of the edge's rerank: the same function and data as the
//! worker's `/__attune/bench/rerank`, timed natively. Prints microseconds per
//! rerank of 200 candidates; `cargo xtask bench edge` runs it beside workerd.

use std::time::Instant;

use attune_edge::fixture;

fn main() {
    // Setting up the fixture costs the same for every n; subtract it as the
    // worker bench subtracts its request overhead.
    let run = |n: usize| {
        let t0 = Instant::now();
        let checksum = fixture::rerank_loop(n);
        (t0.elapsed().as_secs_f64() * 1e6, checksum)
    };
    run(200); // warm-up
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let (full, _) = run(2000);
        let (empty, _) = run(0);
        best = best.min((full - empty) / 2000.0);
    }
    println!("{{\"native_us_per_rerank\": {best:.3}}}");
}
