// The news site's local server: the pages, the tracker package as a site owner
// installs it (npm), and the Attune edge worker in real workerd (Miniflare)
// under /attune/ on the same origin — as a Cloudflare route would place it.
//
//   node server.mjs --origin http://127.0.0.1:8080 --api-key … [--load-catalog]
//
// Every flag also reads an env var (see `options` below).
import http from "node:http";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { Miniflare } from "miniflare";
import { articles, originItems } from "./catalog.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const TRACKER_DIST = path.dirname(fileURLToPath(import.meta.resolve("attune-tracker")));
const DAY_MS = 86_400_000;

/** Today 00:00 UTC: the catalog's publish times count back from it. */
export const dayStart = () => Math.floor(Date.now() / DAY_MS) * DAY_MS;

const TYPES = { ".html": "text/html; charset=utf-8", ".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css", ".wasm": "application/wasm", ".json": "application/json", ".svg": "image/svg+xml" };

/** Files the site serves, by URL path. */
function staticFile(urlPath) {
  if (urlPath === "/catalog.mjs") return path.join(here, "catalog.mjs");
  if (urlPath.startsWith("/vendor/attune-tracker/")) {
    const name = path.basename(urlPath);
    return ["index.js", "attune_tracker_bg.wasm"].includes(name) ? path.join(TRACKER_DIST, name) : null;
  }
  const file = path.join(here, "public", path.normalize(urlPath).replace(/^(\.\.[/\\])+/, ""));
  return file.startsWith(path.join(here, "public")) && fs.existsSync(file) && fs.statSync(file).isFile() ? file : null;
}

/** Loads the catalog into the origin (`POST /v1/items`, in one call). */
export async function loadCatalog({ originUrl, apiKey, dayStartMs }) {
  const items = originItems(articles(dayStartMs));
  const r = await fetch(`${originUrl}/v1/items`, {
    method: "POST",
    headers: { authorization: `Bearer ${apiKey}`, "content-type": "application/json" },
    body: JSON.stringify({ items }),
  });
  if (!r.ok) throw new Error(`loading the catalog into ${originUrl} failed: ${r.status} ${await r.text()}`);
  return items.length;
}

/**
 * Starts the edge (workerd) and the site. Returns { url, edge, dayStartMs, stop }.
 * `edgeVars` override the worker's [vars] (e.g. CANDIDATES_TTL_S);
 * `demoDashboardKey` (local demos only) goes into the pages' dashboard link;
 * `onCollect(body, status)` sees every batch the edge answered (for tests).
 */
export async function startSite({ port = 0, host = "127.0.0.1", originUrl, apiKey, siteKey = "demo", stateSecret, workerBuild, dashboardUrl, demoDashboardKey, edgeVars = {}, onCollect, dayStartMs = dayStart() }) {
  const build = workerBuild ?? path.resolve(here, "../../edge-worker/build");
  if (!fs.existsSync(path.join(build, "index.js"))) {
    throw new Error(`${build}/index.js is missing: build the edge first (\`cargo xtask demo\` does it)`);
  }
  const edge = new Miniflare({
    modules: true,
    modulesRoot: build,
    scriptPath: path.join(build, "index.js"),
    modulesRules: [{ type: "CompiledWasm", include: ["**/*.wasm"] }],
    compatibilityDate: "2025-01-01",
    bindings: {
      ORIGIN_URL: originUrl,
      SITE_KEY: siteKey,
      ORIGIN_API_KEY: apiKey,
      EDGE_STATE_SECRET: stateSecret ?? `news-site-edge-secret-${apiKey}`,
      // Every article is a candidate, so the edge knows each one's category.
      CANDIDATE_COUNT: "300",
      ...edgeVars,
    },
  });
  await edge.ready;

  const server = http.createServer(async (req, res) => {
    try {
      const url = new URL(req.url, "http://site");
      if (url.pathname.startsWith("/attune/")) return await toEdge(edge, req, res, onCollect);
      if (url.pathname === "/site-config.json") {
        res.writeHead(200, { "content-type": TYPES[".json"], "cache-control": "no-store" });
        return res.end(JSON.stringify({ siteKey, dayStartMs, dashboardUrl: dashboardUrl ?? `${originUrl}/dashboard`, dashboardKey: demoDashboardKey }));
      }
      const file = staticFile(url.pathname);
      if (file) {
        res.writeHead(200, { "content-type": TYPES[path.extname(file)] ?? "application/octet-stream", "cache-control": "no-cache" });
        return fs.createReadStream(file).pipe(res);
      }
      // Every other path is a page of the app (/, /category/…, /article/…).
      res.writeHead(200, { "content-type": TYPES[".html"], "cache-control": "no-cache" });
      fs.createReadStream(path.join(here, "public/index.html")).pipe(res);
    } catch (e) {
      res.writeHead(502, { "content-type": "text/plain" }).end(`news-site: ${e.message}`);
    }
  });
  await new Promise((r) => server.listen(port, host, r));
  const url = `http://${host === "127.0.0.1" ? "localhost" : host}:${server.address().port}`;
  return {
    url,
    edge,
    dayStartMs,
    stop: async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
      await edge.dispose();
    },
  };
}

/** Passes a request to the worker, as Cloudflare would (with the client's IP). */
async function toEdge(edge, req, res, onCollect) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  const headers = { ...req.headers, "cf-connecting-ip": req.socket.remoteAddress ?? "" };
  delete headers.host;
  const r = await edge.dispatchFetch(`http://edge.local${req.url}`, {
    method: req.method,
    headers,
    body: ["GET", "HEAD"].includes(req.method) ? undefined : Buffer.concat(chunks),
  });
  if (onCollect && req.method === "POST" && req.url.includes("/v1/collect")) onCollect(Buffer.concat(chunks), r.status);
  const out = {};
  r.headers.forEach((v, k) => k !== "set-cookie" && (out[k] = v));
  const cookies = r.headers.getSetCookie();
  if (cookies.length) out["set-cookie"] = cookies;
  res.writeHead(r.status, out).end(Buffer.from(await r.arrayBuffer()));
}

async function main() {
  const { values: o } = parseArgs({
    options: {
      port: { type: "string", default: process.env.NEWS_SITE_PORT ?? "3000" },
      origin: { type: "string", default: process.env.ATTUNE_ORIGIN_URL ?? "http://127.0.0.1:8080" },
      "api-key": { type: "string", default: process.env.ATTUNE_API_KEY },
      "site-key": { type: "string", default: process.env.ATTUNE_SITE_KEY ?? "demo" },
      "load-catalog": { type: "boolean", default: false },
      // Local demos only: puts the API key into the dashboard link of every page.
      "demo-dashboard-key": { type: "boolean", default: false },
    },
  });
  if (!o["api-key"]) throw new Error("--api-key (or ATTUNE_API_KEY) is needed: the site's secret API key on the origin");
  const dayStartMs = dayStart();
  if (o["load-catalog"]) {
    const n = await loadCatalog({ originUrl: o.origin, apiKey: o["api-key"], dayStartMs });
    console.log(`news-site: loaded ${n} articles into the origin`);
  }
  const site = await startSite({ port: Number(o.port), originUrl: o.origin, apiKey: o["api-key"], siteKey: o["site-key"], demoDashboardKey: o["demo-dashboard-key"] ? o["api-key"] : undefined, dayStartMs });
  console.log(`news-site: ${site.url} (edge in workerd at ${site.url}/attune/)`);
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    await site.stop();
    process.exit(0);
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().catch((e) => {
    console.error(`news-site: ${e.message}`);
    process.exit(1);
  });
}
