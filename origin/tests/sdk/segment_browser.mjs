// Segment's browser SDK, analytics-next (the npm package's UMD build,
// unmodified), in headless Chromium, pointed at an Attune origin by its one
// `cdnURL` option: it fetches its settings from the origin
// (/v1/projects/<key>/settings), which name the origin as where events go.
// Nothing is fetched from Segment. The page is served from here at
// /articles/<item>, so the SDK's own page() call carries that path.
//
// The first `track` request is answered 503 after the origin has stored it
// (a lost acknowledgement), so the SDK resends the same message: the origin
// must count it once.
//
// Args: origin URL, write key (the site's public key), anonymous id, item.
// Prints a JSON line of what the origin answered; exits 1 on a failure.
import http from "node:http";
import fs from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";

const [origin, writeKey, anonymousId, item] = process.argv.slice(2);
const dist = path.join(import.meta.dirname, "node_modules/@segment/analytics-next/dist/umd");
const FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"];

const server = http.createServer((req, res) => {
  const name = path.basename(new URL(req.url, "http://x").pathname);
  if (req.url.startsWith("/articles/")) {
    res.writeHead(200, { "content-type": "text/html" });
    res.end(`<!doctype html><title>Article</title><script src="/umd/index.js"></script>`);
  } else if (name.endsWith(".js") && fs.existsSync(path.join(dist, name))) {
    res.writeHead(200, { "content-type": "text/javascript" });
    fs.createReadStream(path.join(dist, name)).pipe(res);
  } else {
    res.writeHead(404).end();
  }
});
await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
const site = `http://127.0.0.1:${server.address().port}`;

const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: FLAGS });
const answers = [];
let failure = null;
try {
  const page = await browser.newPage();
  page.on("console", (m) => console.error(`page: ${m.text()}`));
  page.on("response", (r) => {
    if (r.url().startsWith(origin) && r.request().method() === "POST") {
      answers.push({ path: new URL(r.url()).pathname, status: r.status() });
    }
  });
  let lost = false;
  await page.route(`${origin}/v1/t`, async (route) => {
    if (lost) return route.continue();
    lost = true;
    const stored = await route.fetch();
    if (stored.status() !== 200) {
      failure = new Error(`the origin answered ${stored.status()}: ${await stored.text()}`);
      return route.abort();
    }
    await route.fulfill({
      status: 503,
      headers: { "access-control-allow-origin": "*", "retry-after": "1", "access-control-expose-headers": "retry-after" },
      body: "{}",
    });
  });
  await page.goto(`${site}/articles/${item}`);
  await page.evaluate(
    async ({ writeKey, origin, anonymousId, item }) => {
      const [analytics] = await window.AnalyticsNext.AnalyticsBrowser.load({ writeKey, cdnURL: origin });
      analytics.setAnonymousId(anonymousId);
      await analytics.page();
      await analytics.track("Product Clicked", { product_id: item });
      await analytics.track("Newsletter Signed Up", { list: "daily" });
    },
    { writeKey, origin, anonymousId, item },
  );
  // The page, the click (lost, then resent) and the custom event: four answers.
  const deadline = Date.now() + 30_000;
  while (answers.length < 4 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
  }
} catch (e) {
  failure = e;
} finally {
  await browser.close();
  server.close();
}
console.log(JSON.stringify(answers));
if (failure) {
  console.error(failure);
  process.exit(1);
}
