// Main-thread script time of 10,000 scroll events and 1,000 clicks in
// headless Chromium: a page without a tracker, with Attune, and with posthog-js,
// in the same run. Script time comes from the DevTools Performance domain
// (ScriptDuration); the page without a tracker is subtracted from both.
// Prints JSON on the last line.
import http from "node:http";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
const js = path.resolve(here, "..");
const posthogBundle = process.argv[2];
const items = Array.from({ length: 200 }, (_, i) => `<button data-attune-item="item-${i}" style="display:block;height:40px">Item ${i}</button>`).join("");
const page = (head) => `<!doctype html><html><head><meta charset="utf-8">${head}</head><body>${items}<div style="height:20000px"></div></body></html>`;
const variants = {
  baseline: page(`<script>window.ready = true</script>`),
  attune: page(`<script type="module">import { init } from "/dist/index.js"; await init({ endpoint: "/collect", siteKey: "bench" }); window.ready = true;</script>`),
  posthog: page(`<script src="/posthog.js"></script>`),
};

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

async function measure(variant) {
  const ctx = await browser.newContext();
  const p = await ctx.newPage();
  const cdp = await ctx.newCDPSession(p);
  await cdp.send("Performance.enable");
  await p.goto(`${base}/page/${variant}`);
  await p.waitForFunction(() => window.ready === true);
  await p.waitForTimeout(500);
  const script = async () => (await cdp.send("Performance.getMetrics")).metrics.find((m) => m.name === "ScriptDuration").value;
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

const runs = { baseline: [], attune: [], posthog: [] };
for (let round = 0; round < 3; round++) {
  for (const v of Object.keys(runs)) runs[v].push(await measure(v));
}
const median = (xs) => [...xs].sort((a, b) => a - b)[1];
const b = median(runs.baseline);
const attune = median(runs.attune) - b;
const posthog = median(runs.posthog) - b;
await browser.close();
server.close();
console.log(JSON.stringify({ baseline_ms: b, attune_ms: attune, posthog_ms: posthog, ratio: attune / posthog, runs }));
