// Collect latency: what a tracker waits for a 202, with the edge storing the
// batch at the origin first (FORWARD=origin) or in a Cloudflare Queue
// (FORWARD=queue, drained into the origin meanwhile), beside the origin
// answering directly (the floor under FORWARD=origin). Same run, rounds
// interleaved; the origin on the real Kafka + Redis. Prints JSON.
//
// On loopback the edge–origin round trip is ~0; in production FORWARD=origin
// adds that round trip (tens of ms between a PoP and a far origin), which
// this measurement does not include.
import { startOrigin, startWorker, startQueuedWorker, batch } from "../tests/harness.mjs";

const ROUNDS = 10;
const PER_ROUND = 40;
const origin = await startOrigin();
const site = origin.site.site_key;
const bindings = { ORIGIN_URL: origin.url, SITE_KEY: site, ORIGIN_API_KEY: origin.site.api_key };
const sync = startWorker(bindings);
const queued = startQueuedWorker(bindings);
await sync.ready;
await queued.ready;

const events = () => [{ kind: "page_view", item: "a1" }, { kind: "click", item: "a1" }, { kind: "scroll", item: "a1", dp: 60 }, { kind: "dwell", item: "a1", ms: 4000 }, { kind: "click", item: "a2" }];
const systems = {
  origin_direct: (body) => fetch(`${origin.url}/v1/events`, { method: "POST", headers: { "content-type": "application/msgpack" }, body }),
  edge_forward_origin: (body) => sync.dispatchFetch("http://edge.test/v1/collect", { method: "POST", headers: { "content-type": "application/msgpack" }, body }),
  edge_forward_queue: (body) => queued.dispatchFetch("http://edge.test/v1/collect", { method: "POST", headers: { "content-type": "application/msgpack" }, body }),
};
const times = Object.fromEntries(Object.keys(systems).map((k) => [k, []]));
for (let round = 0; round <= ROUNDS; round++) {
  for (const [name, send] of Object.entries(systems)) {
    for (let i = 0; i < PER_ROUND; i++) {
      const body = batch(site, `bench-${name}-${i % 8}`, events());
      const t0 = process.hrtime.bigint();
      const r = await send(body);
      await r.arrayBuffer();
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if (r.status !== 202) throw new Error(`${name} answered ${r.status}`);
      if (round > 0) times[name].push(ms); // round 0 warms up
    }
  }
}
const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};
const report = Object.fromEntries(Object.entries(times).map(([k, xs]) => [k, { p50_ms: pct(xs, 50), p99_ms: pct(xs, 99), n: xs.length }]));
await sync.dispose();
await queued.dispose();
origin.stop();
console.log(JSON.stringify(report));
