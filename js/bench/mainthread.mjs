// Main-thread script time of 10,000 scroll events and 1,000 clicks in
// headless Chromium: a page without a tracker, with Attune, and with posthog-js,
// in the same run. Script time comes from the DevTools Performance domain
// (ScriptDuration); the page without a tracker is subtracted from both.
// Then the cost of following many items: script time from load until the
// first visibility callback over 2,000 and 8,000 items has run (minus the
// same page without a tracker): linear, the 8,000 case is ~4× the 2,000
// one; a per-item lookup that scans would make it up to 16×.
// Prints JSON on the last line.
import http from "node:http";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
const js = path.resolve(here, "..");
const posthogBundle = process.argv[2];
const items = (n) => Array.from({ length: n }, (_, i) => `<button data-attune-item="item-${i}" style="display:block;height:40px">Item ${i}</button>`).join("");
const page = (head, n = 200) => `<!doctype html><html><head><meta charset="utf-8">${head}</head><body>${items(n)}<div style="height:20000px"></div></body></html>`;
const heads = {
  baseline: `<script>window.ready = true</script>`,
  attune: `<script type="module">import { init } from "/dist/index.js"; await init({ endpoint: "/collect", siteKey: "bench" }); window.ready = true;</script>`,
  posthog: `<script src="/posthog.js"></script>`,
};
const variants = Object.fromEntries(Object.entries(heads).map(([k, h]) => [k, page(h)]));
for (const n of [2000, 8000]) for (const k of ["baseline", "attune"]) variants[`${k}-${n}`] = page(heads[k], n);

const server = http.createServer((req, res) => {
  const url = req.url.split("?")[0];
  if (url.startsWith("/page/")) return res.writeHead(200, { "content-type": "text/html" }).end(variants[url.slice(6)]);
  if (url === "/posthog.js") return res.writeHead(200, { "content-type": "text/javascript" }).end(fs.readFileSync(posthogBundle));
  if (url.startsWith("/dist/")) {
    const file = path.join(js, url);
    const type = file.endsWith(".wasm") ? "application/wasm" : "text/javascript";
    return res.writeHead(200, { "content-type": type }).end(fs.readFileSync(file));
  }
  req.resume();
  res.writeHead(url === "/collect" ? 202 : 200, { "content-type": "application/json" }).end("{}");
});
await new Promise((r) => server.listen(0, "127.0.0.1", r));
const base = `http://127.0.0.1:${server.address().port}`;

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});

// A fresh context on the variant's page once it is ready, and its script
// time so far (CDP's ScriptDuration, seconds).
async function open(variant) {
  const ctx = await browser.newContext();
  const p = await ctx.newPage();
  const cdp = await ctx.newCDPSession(p);
  await cdp.send("Performance.enable");
  await p.goto(`${base}/page/${variant}`);
  await p.waitForFunction(() => window.ready === true);
  const script = async () => (await cdp.send("Performance.getMetrics")).metrics.find((m) => m.name === "ScriptDuration").value;
  return { ctx, p, script };
}

async function measure(variant) {
  const { ctx, p, script } = await open(variant);
  await p.waitForTimeout(500);
  const before = await script();
  await p.evaluate(async () => {
    const frame = () => new Promise((r) => requestAnimationFrame(r));
    const buttons = document.querySelectorAll("button");
    const max = document.documentElement.scrollHeight - innerHeight;
    for (let i = 0; i < 10000; i++) {
      window.scrollTo(0, (i * 37) % max);
      window.dispatchEvent(new Event("scroll"));
      if (i % 10 === 9) buttons[(i / 10) % buttons.length | 0].click(); // 1,000 clicks
      if (i % 100 === 99) await frame();
    }
    await frame();
  });
  await p.waitForTimeout(300);
  const after = await script();
  await ctx.close();
  return (after - before) * 1000; // ms
}

// Script time from navigation until the first visibility callbacks ran.
async function load(variant) {
  const { ctx, p, script } = await open(variant);
  await p.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
  await p.waitForTimeout(300);
  const ms = (await script()) * 1000;
  await ctx.close();
  return ms;
}

const runs = { baseline: [], attune: [], posthog: [] };
const loads = { "baseline-2000": [], "attune-2000": [], "baseline-8000": [], "attune-8000": [] };
for (let round = 0; round < 3; round++) {
  for (const v of Object.keys(runs)) runs[v].push(await measure(v));
  for (const v of Object.keys(loads)) loads[v].push(await load(v));
}
const median = (xs) => [...xs].sort((a, b) => a - b)[1];
const b = median(runs.baseline);
const attune = median(runs.attune) - b;
const posthog = median(runs.posthog) - b;
const items2k = median(loads["attune-2000"]) - median(loads["baseline-2000"]);
const items8k = median(loads["attune-8000"]) - median(loads["baseline-8000"]);
await browser.close();
server.close();
console.log(JSON.stringify({ baseline_ms: b, attune_ms: attune, posthog_ms: posthog, ratio: attune / posthog, items_2000_ms: items2k, items_8000_ms: items8k, items_ratio: items8k / items2k, runs, loads }));
