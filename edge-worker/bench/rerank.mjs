// Rerank of 200 candidates inside workerd: the worker's clock stands still
// while it computes (Spectre mitigation), so the time is measured outside,
// as the difference between requests that rerank n times and requests that
// rerank zero times. Prints JSON.
import { startWorker } from "../tests/harness.mjs";

const mf = startWorker({ ORIGIN_URL: "http://127.0.0.1:9", SITE_KEY: "bench", ORIGIN_API_KEY: "unused-0123456789" });
await mf.ready;
async function time(n, reps) {
  let best = Infinity;
  for (let i = 0; i < reps; i++) {
    const t0 = process.hrtime.bigint();
    const r = await mf.dispatchFetch(`http://edge.test/__attune/bench/rerank?n=${n}`);
    await r.json();
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e3);
  }
  return best;
}
await time(200, 3); // warm-up
const N = 2000;
const empty = await time(0, 20);
const full = await time(N, 5);
console.log(JSON.stringify({ workerd_us_per_rerank: (full - empty) / N, request_overhead_us: empty }));
await mf.dispose();
