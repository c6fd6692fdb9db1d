// A local test server: serves js/dist and a test page, and records every
// batch posted to /collect. `plan` holds the statuses to answer next;
// `down`, while set, answers every batch.
import http from "node:http";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { decode } from "@msgpack/msgpack";

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = path.resolve(here, "../dist");
const types = { ".js": "text/javascript", ".wasm": "application/wasm", ".html": "text/html" };

export const PAGE = `<!doctype html><html><head><meta charset="utf-8"><title>t</title>
<script>window.__errors=[];addEventListener("error",e=>__errors.push(String(e.message)));addEventListener("unhandledrejection",e=>__errors.push(String(e.reason)));</script>
</head><body style="margin:0">
<article data-attune-item="a1" style="height:300px">Article one</article>
<article data-attune-item="a2" style="height:300px">Article two</article>
<div style="height:3000px">long</div>
<aside data-attune-serve="edge.0123456789abcdef0123456789abcdef"><a data-attune-rec="r1" data-attune-pos="3" href="#r1">Rec one</a></aside>
<script type="module">
import { init } from "/dist/index.js";
const q = new URLSearchParams(location.search);
const opts = { endpoint: "/collect", siteKey: "test-site" };
for (const [k, v] of q) opts[k] = /^\\d+$/.test(v) ? Number(v) : v === "true" ? true : v;
// The site says a #fragment makes another view.
if (opts.hashViews) opts.pageKey = (l) => l.pathname + l.search + l.hash;
window.attune = await init(opts);
window.ready = true;
</script></body></html>`;

export async function start() {
  const s = { batches: [], plan: [] };
  const server = http.createServer(async (req, res) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const body = Buffer.concat(chunks);
    const url = new URL(req.url, "http://x");
    if (url.pathname === "/collect") {
      // `down`: the answer to every batch while set (an outage).
      const next = s.down ?? s.plan.shift() ?? 202;
      let batch = null;
      try {
        batch = decode(body);
      } catch {}
      s.batches.push({ status: typeof next === "number" ? next : next.status, bytes: body, batch });
      if (next === "reset") return req.socket.destroy();
      const status = typeof next === "number" ? next : next.status;
      const headers = typeof next === "object" && next.retryAfter ? { "retry-after": next.retryAfter } : {};
      // A slow answer: the batch stays in flight meanwhile.
      if (typeof next === "object" && next.delayMs) await new Promise((r) => setTimeout(r, next.delayMs));
      res.writeHead(status, headers).end(status === 500 ? "<html>oops" : '{"accepted":1}');
      return;
    }
    if (url.pathname === "/page.html" || url.pathname === "/other.html") {
      res.writeHead(200, { "content-type": "text/html" }).end(PAGE);
      return;
    }
    // A page that shows one item and says so.
    if (url.pathname === "/item.html") {
      res.writeHead(200, { "content-type": "text/html" }).end(PAGE.replace("<title>", '<meta name="attune:item" content="a9"><title>'));
      return;
    }
    if (url.pathname.startsWith("/dist/")) {
      const file = path.join(dist, url.pathname.slice(6));
      if (file.startsWith(dist) && fs.existsSync(file)) {
        res.writeHead(200, { "content-type": types[path.extname(file)] ?? "application/octet-stream" }).end(fs.readFileSync(file));
        return;
      }
    }
    res.writeHead(404).end();
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  s.url = `http://127.0.0.1:${server.address().port}`;
  s.stop = () => new Promise((r) => server.close(r));
  /** Every event received in a batch answered with `status` (default: accepted). */
  s.events = (pred = (b) => b.status === 202) => s.batches.filter(pred).flatMap((b) => (b.batch ? b.batch.e : []));
  return s;
}

export const idOf = (e) => Buffer.from(e.i).toString("hex");
