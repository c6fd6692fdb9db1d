import crypto from "node:crypto";
// Test harness: the real attune-origin (on the real Kafka + Redis), a
// recording proxy in front of it that can fail on demand, and the built
// worker in real workerd through Miniflare.
import { spawn } from "node:child_process";
import http from "node:http";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Miniflare } from "miniflare";

const here = path.dirname(fileURLToPath(import.meta.url));
export const crateDir = path.resolve(here, "..");
export const repoDir = path.resolve(crateDir, "..");

function need(name) {
  const v = process.env[name];
  if (!v) {
    throw new Error(`${name} is not set: run these tests through \`cargo xtask test\` (it starts Kafka and Redis)`);
  }
  return v;
}

export async function freePort() {
  const srv = http.createServer();
  await new Promise((r) => srv.listen(0, "127.0.0.1", r));
  const { port } = srv.address();
  await new Promise((r) => srv.close(r));
  return port;
}

async function waitFor(url, deadlineMs) {
  const end = Date.now() + deadlineMs;
  for (;;) {
    try {
      const r = await fetch(url);
      if (r.ok) return;
    } catch {}
    if (Date.now() > end) throw new Error(`${url} did not answer within ${deadlineMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Starts target/debug/attune-origin with a fresh site on the real stack. */
export async function startOrigin() {
  const id = Math.random().toString(36).slice(2, 10);
  const site = { site_key: `edge-${id}`, api_key: `sk-edge-test-${id}-0123456789`, token_secret: `ts-edge-test-${id}-0123456789` };
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "attune-edge-"));
  const config = path.join(dir, "attune.toml");
  fs.writeFileSync(config, `[[sites]]\nsite_key = "${site.site_key}"\napi_key = "${site.api_key}"\ntoken_secret = "${site.token_secret}"\nallowed_origins = ["${ALLOWED_ORIGIN}"]\n`);
  const port = await freePort();
  const bin = process.env.ATTUNE_ORIGIN_BIN ?? path.join(repoDir, "target/debug/attune-origin");
  if (!fs.existsSync(bin)) throw new Error(`${bin} is missing: cargo build -p attune-origin`);
  const proc = spawn(bin, ["serve"], {
    env: { ...process.env, KAFKA_BROKERS: need("KAFKA_BROKERS"), REDIS_URL: need("REDIS_URL"), ATTUNE_LISTEN: `127.0.0.1:${port}`, ATTUNE_CONFIG: config, RUST_LOG: "warn" },
    stdio: ["ignore", "inherit", "inherit"],
  });
  const url = `http://127.0.0.1:${port}`;
  const exited = new Promise((_, reject) => proc.on("exit", (code) => reject(new Error(`attune-origin exited (${code}) during start-up`))));
  exited.catch(() => {}); // the exit at the end of the tests is expected
  await Promise.race([waitFor(`${url}/readyz`, 30000), exited]);
  return { url, site, pid: proc.pid, stop: () => proc.kill("SIGINT") };
}

/** A proxy to `target` that records requests and can fail or go down on demand. */
export async function startProxy(target) {
  const state = { failNext: 0, down: false, events: [], recommendationGets: 0, recommendationRequests: [] };
  const server = http.createServer(async (req, res) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const body = Buffer.concat(chunks);
    const isEvents = req.method === "POST" && req.url.startsWith("/v1/events");
    if (req.method === "GET" && req.url.startsWith("/v1/recommendations")) {
      state.recommendationGets++;
      state.recommendationRequests.push({ url: new URL(req.url, target), userAgent: req.headers["user-agent"] });
    }
    if (state.down) {
      req.socket.destroy();
      return;
    }
    if (isEvents && state.failNext > 0) {
      state.failNext--;
      state.events.push({ body, status: 503 });
      res.writeHead(503, { "retry-after": "0" }).end('{"error":"unavailable"}');
      return;
    }
    const upstream = await fetch(target + req.url, { method: req.method, headers: req.headers, body: req.method === "GET" ? undefined : body });
    const payload = Buffer.from(await upstream.arrayBuffer());
    if (isEvents) state.events.push({ body, status: upstream.status, headers: req.headers });
    res.writeHead(upstream.status, { "content-type": upstream.headers.get("content-type") ?? "application/json" }).end(payload);
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${server.address().port}`, state, stop: () => server.close() };
}

/** The one page origin the test site allows. */
export const ALLOWED_ORIGIN = "https://news.test";

function edgeWorker(bindings) {
  const build = path.join(crateDir, "build");
  if (!fs.existsSync(path.join(build, "index.js"))) throw new Error("edge-worker/build is missing: run `cargo xtask test` (it runs worker-build)");
  return {
    modules: true,
    modulesRoot: build,
    scriptPath: path.join(build, "index.js"),
    modulesRules: [{ type: "CompiledWasm", include: ["**/*.wasm"] }],
    compatibilityDate: "2025-01-01",
    bindings: { DEBUG_ENDPOINTS: "1", EDGE_STATE_SECRET: "edge-state-secret-for-tests", ...bindings },
  };
}

/** The built worker (build/) in workerd; `extra`: more Miniflare options (e.g. `ratelimits`). */
export function startWorker(bindings, extra = {}) {
  return new Miniflare({ ...edgeWorker(bindings), ...extra });
}

/**
 * The worker with `FORWARD = "queue"` and its queues in workerd, beside a
 * small worker that keeps what reaches the dead-letter queue
 * (`GET /dead-letters` on it answers the bodies' `refused` reasons).
 */
export function startQueuedWorker(bindings) {
  return new Miniflare({
    workers: [
      {
        name: "edge",
        ...edgeWorker({ ...bindings, FORWARD: "queue" }),
        queueProducers: { EVENTS_QUEUE: "attune-events", EVENTS_DEAD_LETTERS: "attune-events-dlq" },
        queueConsumers: { "attune-events": { maxBatchTimeout: 0.05, maxRetries: 100, retryDelay: 1, deadLetterQueue: "attune-events-dlq" } },
      },
      {
        name: "dead-letters",
        modules: true,
        compatibilityDate: "2025-01-01",
        script: `const seen = [];
export default {
  async fetch() { return Response.json(seen); },
  async queue(batch) { for (const m of batch.messages) { seen.push(m.body.refused ?? null); m.ack(); } },
};`,
        queueConsumers: { "attune-events-dlq": { maxBatchTimeout: 0.05 } },
      },
    ],
  });
}

export const golden = JSON.parse(fs.readFileSync(path.join(repoDir, "core/testdata/golden.json"), "utf8"));
/** GrowthBook's cross-language assignment vectors (core/testdata/growthbook.json). */
export const growthbook = JSON.parse(fs.readFileSync(path.join(repoDir, "core/testdata/growthbook.json"), "utf8"));
export const hex = (s) => Buffer.from(s, "hex");

import { encode } from "@msgpack/msgpack";

/** A UUIDv7 (time-ordered, as the tracker makes them). */
export function uuidv7() {
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  let ms = BigInt(Date.now());
  for (let i = 5; i >= 0; i--) {
    b[i] = Number(ms & 0xffn);
    ms >>= 8n;
  }
  b[6] = (b[6] & 0x0f) | 0x70;
  b[8] = (b[8] & 0x3f) | 0x80;
  return b;
}

/** A batch in attune-core's MessagePack wire form. */
export function batch(site, anon, events, { token } = {}) {
  const now = Date.now();
  return encode({
    v: 1,
    s: site,
    a: anon,
    ...(token ? { u: token } : {}),
    t: now,
    e: events.map((e) => ({ i: uuidv7(), k: e.kind, t: now, ...(e.item ? { it: e.item } : {}), ...(e.dp !== undefined ? { dp: e.dp } : {}), ...(e.ms !== undefined ? { ms: e.ms } : {}), ...(e.sv !== undefined ? { sv: e.sv, ps: e.ps } : {}) })),
  });
}

/** A user token as a site's back end mints it (origin/src/auth.rs). */
export function mintToken(site, user, secret, expS) {
  const payload = `v1.${site}.${user}.${expS}`;
  return `${payload}.${crypto.createHmac("sha256", secret).update(payload).digest("base64url")}`;
}

export const cookieOf = (res) => (res.headers.get("set-cookie") ?? "").split(";")[0];
