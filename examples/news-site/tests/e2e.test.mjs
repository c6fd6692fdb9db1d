// The whole loop in real parts: headless Chromium on the news site, the
// tracker from npm, the edge worker in workerd, the origin on real Kafka and
// Redis, and a stream consumer — run by `cargo xtask test`, which starts the
// stack, builds everything and creates the topics under ATTUNE_E2E_TOPIC_PREFIX.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { decode } from "@msgpack/msgpack";
import { startSite, loadCatalog } from "../server.mjs";
import { CATEGORIES, articles, originItems } from "../catalog.mjs";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
const outDir = path.join(repo, "target/e2e");
const FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"];
const RAIL = 6;
/** How long the origin may take to reflect the events (consumer + ranking). */
const CONSISTENCY_WINDOW_MS = 15000;

function need(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run this through \`cargo xtask test\` (it starts Kafka and Redis and creates the topics)`);
  return v;
}
const wait = (ms) => new Promise((r) => setTimeout(r, ms));
async function until(check, ms, what) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await wait(100);
  }
}
async function freePort() {
  const s = http.createServer();
  await new Promise((r) => s.listen(0, "127.0.0.1", r));
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

let origin, consumer, site, browser, context, page;
const procs = [];
const id = Math.random().toString(36).slice(2, 10);
const siteKey = `news-e2e-${id}`;
const apiKey = `sk-news-e2e-${id}-0123456789`;
/** A second site, for the cold-start test: its own readers only. */
const coldSite = { siteKey: `news-e2e-cold-${id}`, apiKey: `sk-news-e2e-cold-${id}-0123456789`, site: null, dayStartMs: 0 };
/** Every batch the edge accepted: ids with multiplicity, and the events. */
const delivered = { ids: [], events: [] };
/** Every event id the tracker sent the edge, whatever the answer. */
const sent = new Set();
/** Between the edge and the origin: forwards, or drops connections while `down`. */
const link = { down: false, url: null, server: null };

async function startLink(target) {
  link.server = http.createServer(async (req, res) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    if (link.down) return req.socket.destroy();
    try {
      const headers = { ...req.headers };
      delete headers.host;
      const up = await fetch(target + req.url, { method: req.method, headers, body: ["GET", "HEAD"].includes(req.method) ? undefined : Buffer.concat(chunks) });
      const type = up.headers.get("content-type");
      res.writeHead(up.status, type ? { "content-type": type } : {}).end(Buffer.from(await up.arrayBuffer()));
    } catch {
      req.socket.destroy();
    }
  });
  await new Promise((r) => link.server.listen(0, "127.0.0.1", r));
  link.url = `http://127.0.0.1:${link.server.address().port}`;
}
const timings = {};

function startProcess(args, env) {
  const bin = process.env.ATTUNE_ORIGIN_BIN ?? path.join(repo, "target/debug/attune-origin");
  if (!fs.existsSync(bin)) throw new Error(`${bin} is missing: cargo build -p attune-origin`);
  const p = spawn(bin, args, { env: { ...process.env, RUST_LOG: "warn", ...env }, stdio: ["ignore", "inherit", "inherit"] });
  procs.push(p);
  return p;
}

async function api(pathAndQuery) {
  const r = await fetch(`${origin}${pathAndQuery}`, { headers: { authorization: `Bearer ${apiKey}` } });
  assert.equal(r.status, 200, `${pathAndQuery}: ${r.status}`);
  return r.json();
}

before(async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "attune-e2e-"));
  const config = path.join(dir, "attune.toml");
  fs.writeFileSync(
    config,
    `[[sites]]\nsite_key = "${siteKey}"\napi_key = "${apiKey}"\ntoken_secret = "ts-news-e2e-${id}-0123456789"\nallowed_origins = ["*"]\n` +
      `[[sites]]\nsite_key = "${coldSite.siteKey}"\napi_key = "${coldSite.apiKey}"\ntoken_secret = "ts-news-e2e-cold-${id}-0123456789"\nallowed_origins = ["*"]\n`,
  );
  // The origin measures the lag of the group its consumer runs in.
  const backends = { KAFKA_BROKERS: need("KAFKA_BROKERS"), REDIS_URL: need("REDIS_URL"), ATTUNE_TOPIC_PREFIX: need("ATTUNE_E2E_TOPIC_PREFIX"), ATTUNE_CONSUMER_GROUP: `news-e2e-${id}`, ATTUNE_CONFIG: config };
  const port = await freePort();
  origin = `http://127.0.0.1:${port}`;
  startProcess(["serve"], { ...backends, ATTUNE_LISTEN: `127.0.0.1:${port}` });
  consumer = startProcess(["consume"], { ...backends, ATTUNE_CONSUMER_LISTEN: `127.0.0.1:${await freePort()}` });
  await until(async () => (await fetch(`${origin}/readyz`).catch(() => null))?.ok, 30000, "the origin to be ready");
  await startLink(origin);
  site = await startSite({
    originUrl: link.url,
    apiKey,
    siteKey,
    onCollect: (body, status) => {
      try {
        for (const e of decode(body).e) sent.add(Buffer.from(e.i).toString("hex"));
      } catch {}
      if (status !== 202) return;
      for (const e of decode(body).e) {
        delivered.ids.push(Buffer.from(e.i).toString("hex"));
        delivered.events.push(e);
      }
    },
  });
  await loadCatalog({ originUrl: origin, apiKey, dayStartMs: site.dayStartMs });
  // Newcomers' lists are cached 1 s, so the cold-start test sees the counts as they land.
  coldSite.site = await startSite({ originUrl: origin, apiKey: coldSite.apiKey, siteKey: coldSite.siteKey, edgeVars: { CANDIDATES_TTL_S: "1", CANDIDATES_SWR_S: "0" } });
  coldSite.dayStartMs = coldSite.site.dayStartMs;
  browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: FLAGS });
  context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  page = await context.newPage();
  page.on("pageerror", (e) => console.error(`page error: ${e.message}`));
  fs.mkdirSync(outDir, { recursive: true });
});

after(async () => {
  await browser?.close();
  await site?.stop();
  await coldSite.site?.stop();
  link.server?.close();
  for (const p of procs) p.kill("SIGINT");
  fs.mkdirSync(outDir, { recursive: true });
  fs.writeFileSync(path.join(outDir, "timings.json"), JSON.stringify(timings, null, 2) + "\n");
});

const rail = () => page.evaluate(() => window.rail);
const user = async () => `anon:${await page.evaluate(() => localStorage.getItem("attune_aid"))}`;
const inCategory = (items, category) => items.filter((i) => i.startsWith(`${category}-`)).length;

/** Reads the open article: scrolls through it with the wheel, visibly, for about 1.5 s. */
async function read() {
  for (let i = 0; i < 6; i++) {
    await page.mouse.wheel(0, 600);
    await wait(250);
  }
}

let category;
let lastClickAt;

test("reading three articles of one category shifts the rail toward it within 1 s of the last click (edge)", async () => {
  await page.goto(site.url);
  await page.waitForFunction(() => window.rail.version >= 1);
  const cold = await rail();
  // The category the cold rail shows least, so that the shift is the reader's doing.
  category = Object.keys(CATEGORIES).sort((a, b) => inCategory(cold.items, a) - inCategory(cold.items, b) || a.localeCompare(b))[0];
  const before = inCategory(cold.items, category);
  assert.ok(before <= 1, `cold rail ${cold.items}`);

  await page.click(`nav a[data-category=${category}]`);
  for (let n = 0; n < 3; n++) {
    const version = (await rail()).version;
    const link = n === 0 ? `main a[data-article^="${category}-"]` : `#more a[data-article^="${category}-"]`;
    lastClickAt = Date.now();
    await page.click(link);
    await page.waitForFunction((v) => window.rail.version > v, version, { timeout: 5000 });
    if (n < 2) await read();
  }
  const shifted = await until(async () => {
    const r = await rail();
    return inCategory(r.items, category) >= 4 ? r : null;
  }, 1000, `${category} to lead the rail`);
  timings.click_to_rerank_ms = Date.now() - lastClickAt;
  timings.click_to_rerank_page_ms = shifted.clickToRailMs;
  console.log(`# click → reranked rail: ${timings.click_to_rerank_ms} ms (the page measured ${shifted.clickToRailMs} ms); ${category}: ${before} → ${inCategory(shifted.items, category)} of ${RAIL}`);
  assert.ok(timings.click_to_rerank_ms < 1000, `${timings.click_to_rerank_ms} ms`);
  await read();
  await page.evaluate(() => scrollTo(0, 0));
  await page.screenshot({ path: path.join(outDir, "news-site.png") });
  // Leaving the article sends its scroll depth and visible dwell.
  await page.click(".masthead");
  await page.evaluate(() => window.attune.flush());
});

test("the origin's recommendations and profile follow within the consistency window", async () => {
  const who = await user();
  const started = Date.now();
  const recs = await until(async () => {
    const r = await api(`/v1/recommendations?user=${encodeURIComponent(who)}&k=${RAIL}`);
    return inCategory(r.items.map((i) => i.item), category) >= 4 ? r : null;
  }, CONSISTENCY_WINDOW_MS, `the origin to rank ${category} first for ${who}`);
  timings.origin_follows_after_last_click_ms = Date.now() - lastClickAt;
  console.log(`# origin recommendations lead with ${category} ${timings.origin_follows_after_last_click_ms} ms after the last click (model: ${recs.model}; waited ${Date.now() - started} ms)`);
  const profile = await api(`/v1/profile?user=${encodeURIComponent(who)}`);
  const top = Object.entries(profile.affinities).sort((a, b) => b[1] - a[1])[0];
  assert.equal(top[0], category, JSON.stringify(profile.affinities));
  assert.ok(profile.counts.click >= 3, JSON.stringify(profile.counts));
  assert.ok(profile.dwell_ms_total > 0, "visible dwell was recorded");
  assert.ok(delivered.events.some((e) => e.k === "scroll" && e.dp > 10), "scroll depth was sent");
  // Article pages name their item (meta attune:item): view and scroll count for the article.
  const articleEvents = (k) => delivered.events.filter((e) => e.k === k && String(e.it ?? "").startsWith(`${category}-`));
  assert.ok(articleEvents("page_view").length >= 3, "the article views carry the article");
  assert.ok(articleEvents("scroll").length >= 1, "the article's scroll depth carries the article");
});

test("a rail click is attributed to its serve and position: CTR by position on the dashboard and /metrics", async () => {
  await page.click(".masthead");
  await page.waitForFunction(() => window.rail.version >= 1 && window.rail.items.length >= 3);
  await wait(1700); // the rail's items are seen for a second: impressions
  const served = await rail();
  assert.match(served.serveId, /^edge\.[0-9a-f]{32}$/);
  const version = served.version;
  await page.click("#rail-items li:nth-child(3) a");
  await page.waitForFunction((v) => window.rail.version > v, version, { timeout: 5000 });
  await page.evaluate(() => window.attune.flush());
  const click = delivered.events.find((e) => e.k === "click" && e.sv === served.serveId);
  assert.ok(click, `the rail click names its serve: ${JSON.stringify(delivered.events.filter((e) => e.k === "click"))}`);
  assert.equal(click.ps, 2);
  assert.equal(click.it, served.items[2]);
  const shown = delivered.events.filter((e) => e.k === "impression" && e.sv === served.serveId);
  assert.ok(shown.length >= 3, `the rail's impressions name its serve: ${shown.length}`);
  const rails = await until(async () => {
    const d = await api("/v1/dashboard");
    const at2 = d.rails.find((r) => r.ranker === "edge" && r.position === "2");
    return at2 && at2.clicked >= 1 ? d.rails : null;
  }, CONSISTENCY_WINDOW_MS, "the dashboard to count the rail click at position 2");
  timings.rail_ctr_by_position = Object.fromEntries(rails.map((r) => [`${r.ranker} #${r.position}`, `${r.clicked}/${r.shown}`]));
  console.log(`# rail CTR by position (clicks/impressions): ${Object.entries(timings.rail_ctr_by_position).map(([k, v]) => `${k} ${v}`).join(", ")}`);
  const metrics = await (await fetch(`${origin}/metrics`)).text();
  assert.match(metrics, new RegExp(`attune_rail_clicks_total\\{site="${siteKey}",ranker="edge",position="2"\\} [1-9]`), "on /metrics");
  // Back to the front page, as the next test expects.
  await page.click(".masthead");
  await page.evaluate(() => window.attune.flush());
});

test("reloading and going offline then online duplicate nothing: profile counts equal distinct event ids", async () => {
  const who = await user();
  await page.reload();
  await page.waitForFunction(() => window.rail.version >= 1);

  // Offline: a click and a read are queued and persisted, not lost.
  await context.setOffline(true);
  const offlineItem = await page.getAttribute("main a[data-article]", "data-article");
  await page.click("main a[data-article]");
  await read();
  await page.click(".masthead");
  await wait(500);
  assert.ok(!delivered.events.some((e) => e.k === "click" && e.it === offlineItem), "nothing got through while offline");
  // Reload while the queue holds unsent events, then come back online.
  await context.setOffline(false);
  await page.reload();
  await page.waitForFunction(() => window.rail.version >= 1);
  await until(() => delivered.events.some((e) => e.k === "click" && e.it === offlineItem), 10000, "the offline click to arrive");
  await page.evaluate(() => window.attune.flush());

  const { distinct, total } = await countsOnceQuiet(who);
  console.log(`# ${delivered.ids.length} events delivered to the edge, ${distinct} distinct; the profile counts ${total}`);
  timings.events_delivered = delivered.ids.length;
  timings.events_distinct = distinct;
  assert.equal(total, distinct);
});

/**
 * Once the page has stopped sending: the distinct event ids the edge
 * acknowledged, and the events the reader's profile counts.
 */
async function countsOnceQuiet(who) {
  let seen = -1;
  await until(async () => {
    const now = delivered.ids.length;
    const quiet = now === seen;
    seen = now;
    if (!quiet) await wait(1500);
    return quiet;
  }, 20000, "the page to stop sending");
  const distinct = new Set(delivered.ids).size;
  await until(async () => {
    const p = await api(`/v1/profile?user=${encodeURIComponent(who)}`);
    return Object.values(p.counts).reduce((a, b) => a + b, 0) >= distinct;
  }, CONSISTENCY_WINDOW_MS, `the profile to count ${distinct} events`);
  // Late duplicates (retries in flight) would show up now.
  await wait(1500);
  const p = await api(`/v1/profile?user=${encodeURIComponent(who)}`);
  assert.equal(new Set(delivered.ids).size, distinct, "nothing arrived while counting");
  return { distinct, total: Object.values(p.counts).reduce((a, b) => a + b, 0) };
}

test("the dashboard shows the stream, the consumer and this reader's affinities and rail", async () => {
  const who = await user();
  const dash = await context.newPage();
  await dash.goto(`${origin}/dashboard#key=${encodeURIComponent(apiKey)}&user=${encodeURIComponent(who)}`);
  await dash.waitForFunction(() => window.dash.polls >= 3 && window.dash.railRows.length >= 1, null, { timeout: 15000 });
  // The reader goes on reading (the charts fill, the rail history moves on).
  for (let n = 0; n < 4; n++) {
    await page.click(n === 0 ? "main a[data-article]" : "#more a[data-article]");
    await read();
    await page.evaluate(() => window.attune.flush());
  }
  await dash.waitForFunction(() => window.dash.railRows.length >= 2, null, { timeout: CONSISTENCY_WINDOW_MS });
  const state = await dash.evaluate(() => ({
    error: window.dash.error,
    consumers: document.getElementById("consumers-now").textContent,
    affinities: document.querySelectorAll("#affinities div").length,
    topCategories: [...document.querySelectorAll("#top-categories span[title]")].map((s) => s.textContent),
  }));
  assert.equal(state.error, null);
  assert.ok(Number(state.consumers) >= 1, `consumers reporting: ${state.consumers}`);
  assert.ok(state.affinities >= 1, "the reader's affinities are drawn");
  assert.ok(state.topCategories.includes(category), `top categories ${state.topCategories}`);
  // The consumers' state in words: current once the reader's events are in,
  // and what it says when they are behind or gone.
  await dash.waitForFunction(() => document.getElementById("lag-note").textContent.startsWith("consumers are current"), null, { timeout: CONSISTENCY_WINDOW_MS });
  const words = await dash.evaluate(() => [window.dash.lagWords(7, 0, 0), window.dash.lagWords(120, 1, 40), document.getElementById("user-note").textContent, window.dash.readerWords(0, 900, 1), window.dash.readerWords(4, 7, 0)]);
  assert.match(words[0], /^7 events wait and no consumer is running/);
  assert.match(words[1], /^120 events behind: .* about 3 s to go$/);
  assert.equal(words[2], "", "a current reader's panel needs no excuse");
  assert.match(words[3], /^the consumers are 900 events behind: this reader's newest events may not be in their profile/);
  assert.match(words[4], /^no consumer is running: /);
  // The online model's live validation in words: none yet, and two consumers' windows pooled.
  const model = await dash.evaluate(() => [
    document.getElementById("model-note").textContent,
    window.dash.modelWords([null]),
    window.dash.modelWords([
      { window: 500, hr10: 0.4, ndcg10: 0.3, evaluated: 900, degraded: false },
      { window: 500, hr10: 0.2, ndcg10: 0.1, evaluated: 600, degraded: true },
    ]),
  ]);
  assert.ok(model[0].length > 0, "the model panel says something");
  assert.match(model[1], /^no prediction checked yet/);
  assert.equal(model[2], "degraded: HR@10 30.0 %, NDCG@10 0.200 over the last 1000 predictions (1500 checked since the consumers started); it hits less often than its own recent history");
  // The model versions in words: the demo's one online version, and a refused retrain.
  const versions = await dash.evaluate(() => {
    const online = { version: 1, recipe: { epochs: 1, regularization: 0.01 }, fitted_events: 0, comparison: null };
    const refused = { version: 2, recipe: { epochs: 10, regularization: 0.03 }, fitted_events: 900, comparison: { champion: 1, checks: 90, champion_hr10: 0.7, challenger_hr10: 0.078, better: false } };
    return [
      document.getElementById("versions-note").textContent,
      window.dash.versionWords({ serving: 1, history: [1], versions: [online, refused] }),
    ];
  });
  assert.equal(versions[0], "version 1 serves (the online model)");
  assert.equal(versions[1], "version 1 serves (the online model); the latest retrain, version 2, against version 1 on 90 holdout predictions: HR@10 70.0 % → 7.8 %, refused");
  // An experiment (stopped, so no reader's rail changes) gets its panel.
  const defined = await fetch(`${origin}/v1/experiments/e2e-panel`, {
    method: "PUT",
    headers: { authorization: `Bearer ${apiKey}`, "content-type": "application/json" },
    body: JSON.stringify({ status: "stopped", variants: [{ name: "control", ranker: "production", weight: 0.5 }, { name: "popular", ranker: "popularity", weight: 0.5 }] }),
  });
  assert.equal(defined.status, 200, await defined.text());
  await dash.waitForFunction(() => document.getElementById("experiments").textContent.includes("e2e-panel"), null, { timeout: 15000 });
  const panel = await dash.evaluate(() => document.getElementById("experiments").textContent);
  assert.match(panel, /e2e-panel · phase 1 · 0 units/);
  assert.match(panel, /popular \(popularity, 50 %\)/);
  assert.match(panel, /Keep running: not enough units to compare yet\./);
  // The panel's words for an interleaving result and for a sample ratio mismatch.
  const drawn = await dash.evaluate(() => {
    const arms = [{ name: "a", ranker: "production", weight: 0.5, units: 30 }, { name: "b", ranker: "popularity", weight: 0.5, units: 30 }];
    const effect = { value: 0.5, always_valid: { low: 0.1, high: 0.9 } };
    const el = document.createElement("table");
    el.innerHTML = window.dash.experimentRows([
      { key: "il", phase: 1, units: 30, arms, srm: null, metrics: [{ name: "interleaved_clicks_per_unit", values: [0.5, 1], comparisons: [{ arm: "b", difference: effect, lift: null }] }], decision: "b wins" },
      { key: "ab", phase: 2, units: 30, arms, srm: { p_value: 0.0001, mismatch: true }, metrics: [{ name: "rail_ctr", values: [0.1, 0.15], comparisons: [{ arm: "b", difference: effect, lift: effect }] }], decision: "Do not trust" },
    ]);
    return el.textContent;
  });
  assert.match(drawn, /il · phase 1 · 30 units · interleaved/);
  assert.match(drawn, /1\.00 clicks\/reader\+0\.50 \[\+0\.10, \+0\.90\]/);
  assert.match(drawn, /sample ratio mismatch \(p = 1\.0e-4\)/);
  assert.match(drawn, /CTR 15\.00 %\+50\.0 % \[\+10\.0 %, \+90\.0 %\]/);
  await dash.screenshot({ path: path.join(outDir, "dashboard.png"), fullPage: true });
});

/** A UUIDv7 string, as the tracker makes ids. */
function uuidv7() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  const ms = Date.now();
  for (let i = 0; i < 6; i++) b[i] = Math.floor(ms / 2 ** (8 * (5 - i))) & 0xff;
  b[6] = (b[6] & 0x0f) | 0x70;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = Buffer.from(b).toString("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

const IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1";
const LINUX_CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";

test("a newcomer through the edge gets what readers like them read: by device class and by referrer", async () => {
  // A site of its own with three articles of one age in three categories, so
  // the ranking of a newcomer is the blend of segment popularities alone.
  const cold = coldSite;
  const [a, b, c] = ["world", "sports", "food"].map((cat) => originItems(articles(cold.dayStartMs)).find((i) => i.tags[0] === cat));
  const catalog = [a, b, c].map((i) => ({ ...i, published_at_ms: cold.dayStartMs }));
  let r = await fetch(`${origin}/v1/items`, { method: "POST", headers: { authorization: `Bearer ${cold.apiKey}`, "content-type": "application/json" }, body: JSON.stringify({ items: catalog }) });
  assert.equal(r.status, 200);
  // Readers, each one batch through the edge: phones read A coming direct,
  // desktops from search read B, desktops coming direct read C. Segment
  // popularity then ranks (see the blend in origin/src/ranking/candidates.rs):
  // phone direct A,C,B; desktop direct C,A,B; desktop from search C,B,A.
  const readers = [[IPHONE, a, null, 3], [LINUX_CHROME, b, "https://www.google.com/search?q=news", 2], [LINUX_CHROME, c, null, 4]];
  for (const [ua, item, referrer, count] of readers) {
    for (let n = 0; n < count; n++) {
      const now = Date.now();
      const event = (kind) => ({ id: uuidv7(), kind, ts: now, item: item.id, ...(kind === "page_view" && referrer ? { context: { referrer } } : {}) });
      const body = { schema_version: 1, site_key: cold.siteKey, anonymous_id: `reader-${id}-${item.id}-${n}`, sent_at: now, events: [event("page_view"), event("click")] };
      r = await fetch(`${cold.site.url}/attune/v1/collect`, { method: "POST", headers: { "content-type": "application/json", "user-agent": ua, origin: cold.site.url }, body: JSON.stringify(body) });
      assert.equal(r.status, 202, await r.text());
    }
  }
  const originOrder = async (ua, referrer) => {
    const q = await fetch(`${origin}/v1/recommendations?user=anon:_cold&k=3${referrer ? `&referrer=${encodeURIComponent(referrer)}` : ""}`, { headers: { authorization: `Bearer ${cold.apiKey}`, "user-agent": ua } });
    return (await q.json()).items.map((i) => i.item).join(",");
  };
  // The consumers have counted every reader once each segment's order is in
  // at the origin (the readers' events sit on different partitions, so one
  // segment's being counted says nothing of another's).
  const order = (...items) => items.map((i) => i.id).join(",");
  const counted = async () =>
    (await originOrder(IPHONE)) === order(a, c, b) &&
    (await originOrder(LINUX_CHROME)) === order(c, a, b) &&
    (await originOrder(LINUX_CHROME, "https://www.google.com/")) === order(c, b, a);
  await until(counted, CONSISTENCY_WINDOW_MS, "the readers' segments to be counted");

  const newcomerRail = async (userAgent, referer) => {
    const ctx = await browser.newContext({ viewport: { width: 390, height: 844 }, userAgent });
    try {
      const p = await ctx.newPage();
      await p.goto(`${cold.site.url}/`, referer ? { referer } : {});
      await p.waitForFunction(() => window.rail.version >= 1);
      return p.evaluate(() => window.rail.items);
    } finally {
      await ctx.close();
    }
  };
  const phone = await newcomerRail(IPHONE);
  const desktop = await newcomerRail(LINUX_CHROME);
  const fromSearch = await newcomerRail(LINUX_CHROME, "https://www.google.com/");
  const ids = (...items) => items.map((i) => i.id);
  assert.deepEqual(phone, ids(a, c, b), "a phone newcomer: what phone readers read leads");
  assert.deepEqual(desktop, ids(c, a, b), "a desktop newcomer who came direct: what desktop readers read leads");
  assert.deepEqual(fromSearch, ids(c, b, a), "a desktop newcomer from search: what search readers read moves up");
  timings.coldStartRails = { phone, desktop, fromSearch };
});

test("origin down for 60 s while the reader goes on: every event id is stored once it is back, none twice", async () => {
  const who = await user();
  const acknowledged = new Set(delivered.ids);
  link.down = true;
  const downAt = Date.now();
  try {
    // The reader keeps reading; the rail is served from the edge cache.
    while (Date.now() - downAt < 60000) {
      await page.click("#more a[data-article], main a[data-article]");
      await read();
      await page.evaluate(() => window.attune.flush());
      await wait(2000);
    }
  } finally {
    link.down = false;
  }
  const during = [...sent].filter((i) => !acknowledged.has(i));
  assert.ok(during.length >= 10, `the tracker sent ${during.length} new events during the outage`);
  assert.ok(!during.some((i) => delivered.ids.includes(i)), "nothing was acknowledged while the origin was down");
  const back = Date.now();
  await until(() => during.every((i) => delivered.ids.includes(i)), 30000, "every event of the outage to be acknowledged");
  timings.outage_events = during.length;
  timings.outage_recovery_ms = Date.now() - back;
  // The tracker also queued what it had not sent yet; that follows now.
  const { distinct, total } = await countsOnceQuiet(who);
  const unacknowledged = [...sent].filter((i) => !delivered.ids.includes(i));
  console.log(`# origin down 60 s: ${during.length} events sent meanwhile, all acknowledged ${timings.outage_recovery_ms} ms after it came back; the profile counts ${total} for ${distinct} distinct ids`);
  assert.deepEqual(unacknowledged, [], "every event the tracker sent was stored in the end");
  assert.equal(total, distinct, "each event applied once");
});
