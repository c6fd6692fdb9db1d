// A hostile client against both tiers: the same corpus of malformed,
// oversized, mislabelled and forged requests goes to the origin's
// POST /v1/events and to the edge's POST /v1/collect (in workerd, with the
// site's token secret and pages), and both must answer alike — the same
// status, one JSON error shape, a bounded body — and store nothing. Then
// label-cardinality probes: the origin's /metrics and resident memory
// stay bounded. The sizes are printed for the record.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import fs from "node:fs";
import zlib from "node:zlib";
import { encode } from "@msgpack/msgpack";
import { startOrigin, startWorker, batch, mintToken, ALLOWED_ORIGIN } from "./harness.mjs";

let origin, edge;
const BASE = "http://edge.test";
const nowS = () => Math.floor(Date.now() / 1000);

before(async () => {
  origin = await startOrigin();
  edge = startWorker({
    ORIGIN_URL: origin.url,
    SITE_KEY: origin.site.site_key,
    ORIGIN_API_KEY: origin.site.api_key,
    TOKEN_SECRET: origin.site.token_secret,
    ALLOWED_ORIGINS: ALLOWED_ORIGIN,
  });
  await edge.ready;
});

after(async () => {
  await edge?.dispose();
  origin?.stop();
});

/** The corpus: [name, headers, body]. Every entry must be refused. */
function corpus() {
  const site = origin.site.site_key;
  const valid = Buffer.from(batch(site, "anon-hostile", [{ kind: "click", item: "a1" }]));
  const msgpack = { "content-type": "application/msgpack" };
  const json = { "content-type": "application/json" };
  const withToken = (token) => Buffer.from(batch(site, "anon-hostile", [{ kind: "page_view" }], { token }));
  const nested = `{"v":1,"s":"${site}","a":"x","t":${Date.now()},"x":${"[".repeat(40)}${"]".repeat(40)},"e":[]}`;
  return [
    ["random bytes", msgpack, crypto.randomBytes(512)],
    ["a truncated batch", msgpack, valid.subarray(0, valid.length - 7)],
    ["empty body", msgpack, Buffer.alloc(0)],
    ["a batch as an array, not a map", msgpack, Buffer.from(encode([1, site, "a", null, Date.now(), 0, []]))],
    ["JSON nested 40 deep", json, Buffer.from(nested)],
    ["text/plain", { "content-type": "text/plain" }, valid],
    ["no content type", {}, valid],
    ["Content-Encoding br", { ...msgpack, "content-encoding": "br" }, valid],
    ["Content-Encoding deflate", { ...msgpack, "content-encoding": "deflate" }, zlib.deflateSync(valid)],
    ["labelled GZIP, not gzip", { ...msgpack, "content-encoding": "GZIP" }, valid],
    ["a gzip bomb", { ...msgpack, "content-encoding": "gzip" }, zlib.gzipSync(Buffer.alloc(4 * 1024 * 1024, 0x90))],
    ["300 KB", msgpack, Buffer.alloc(300 * 1024, 0x90)],
    ["an unknown site key", msgpack, Buffer.from(batch("no-such-site", "anon-hostile", [{ kind: "page_view" }]))],
    ["an unknown kind", msgpack, Buffer.from(batch(site, "anon-hostile", [{ kind: "hover" }]))],
    ["a 50 KB anonymous id", msgpack, Buffer.from(batch(site, "a".repeat(50_000), [{ kind: "page_view" }]))],
    ["a forged user token", msgpack, withToken(mintToken(site, "u1", "not-the-sites-secret-000", nowS() + 600))],
    ["an expired user token", msgpack, withToken(mintToken(site, "u1", origin.site.token_secret, nowS() - 10))],
    ["another site's user token", msgpack, withToken(mintToken("blog", "u1", origin.site.token_secret, nowS() + 600))],
    ["a foreign page", { ...msgpack, origin: "https://evil.example" }, valid],
  ];
}

async function accepted() {
  const text = await (await fetch(`${origin.url}/metrics`)).text();
  return text
    .split("\n")
    .filter((l) => l.startsWith("attune_events_accepted_total"))
    .reduce((sum, l) => sum + Number(l.split(" ").at(-1)), 0);
}

const rssKb = () => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${origin.pid}/status`, "utf8"))[1]);

async function answer(send) {
  const r = await send();
  const text = await r.text();
  let body = null;
  try {
    body = JSON.parse(text);
  } catch {}
  return { status: r.status, body, bytes: text.length };
}

test("every hostile request gets the same status and JSON error from the origin and the edge, and nothing is stored", async () => {
  const acceptedBefore = await accepted();
  for (const [name, headers, body] of corpus()) {
    const fromOrigin = await answer(() => fetch(`${origin.url}/v1/events`, { method: "POST", headers, body }));
    const fromEdge = await answer(() => edge.dispatchFetch(`${BASE}/v1/collect`, { method: "POST", headers, body }));
    for (const [tier, a] of [["origin", fromOrigin], ["edge", fromEdge]]) {
      assert.ok(a.status >= 400 && a.status < 500, `${name}: ${tier} answered ${a.status}`);
      assert.equal(typeof a.body?.error, "string", `${name}: ${tier}'s body is the JSON error shape`);
      assert.equal(typeof a.body?.message, "string", `${name}: ${tier}'s error has words`);
      assert.ok(a.bytes < 2048, `${name}: ${tier}'s error is ${a.bytes} B`);
    }
    assert.equal(fromEdge.status, fromOrigin.status, `${name}: edge ${JSON.stringify(fromEdge.body)} vs origin ${JSON.stringify(fromOrigin.body)}`);
    assert.equal(fromEdge.body.error, fromOrigin.body.error, name);
  }
  assert.equal(await accepted(), acceptedBefore, "nothing refused was stored");
});

test("label-cardinality probes and repeated abuse leave the origin's /metrics and memory bounded", async () => {
  const metricsBytes = async () => (await (await fetch(`${origin.url}/metrics`)).text()).length;
  const [metricsBefore, rssBefore] = [await metricsBytes(), rssKb()];
  // Made-up methods (one of 4 KB) and made-up paths, which a careless
  // metrics layer would turn into label values.
  const http = await import("node:http");
  const { port } = new URL(origin.url);
  const raw = (method, path) =>
    new Promise((resolve) => {
      const req = http.request({ host: "127.0.0.1", port, method, path }, (res) => res.resume().on("end", resolve));
      req.on("error", resolve);
      req.end();
    });
  for (let i = 0; i < 300; i++) {
    await raw(i === 0 ? "X".repeat(4096) : `PROBE${i}`, `/v1/events/${crypto.randomUUID()}?x=${i}`);
  }
  // At this pace the per-IP limit answers 429 before reading a body, and a
  // large upload may see its connection closed: that is the origin
  // refusing a flood, not a failure here.
  let closed = 0;
  for (let round = 0; round < 10; round++) {
    for (const [, headers, body] of corpus()) {
      await fetch(`${origin.url}/v1/events`, { method: "POST", headers, body }).then((r) => r.arrayBuffer(), () => closed++);
    }
  }
  console.log(`# ${closed} uploads of the flood had their connection closed by the origin`);
  const [metricsAfter, rssAfter] = [await metricsBytes(), rssKb()];
  console.log(`# origin /metrics ${metricsBefore} B → ${metricsAfter} B; RSS ${(rssBefore / 1024).toFixed(1)} MB → ${(rssAfter / 1024).toFixed(1)} MB after 300 probes and 10 rounds of the corpus`);
  const text = await (await fetch(`${origin.url}/metrics`)).text();
  assert.ok(!text.includes("PROBE") && !text.includes("XXXX"), "a client's method became a label");
  assert.ok(metricsAfter - metricsBefore < 32 * 1024, `/metrics grew ${metricsAfter - metricsBefore} B`);
  assert.ok(rssAfter - rssBefore < 64 * 1024, `RSS grew ${((rssAfter - rssBefore) / 1024).toFixed(1)} MB`);
});
