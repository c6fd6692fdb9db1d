// attune-edge in real workerd (Miniflare), against the real origin on the
// real Kafka + Redis, through a recording proxy that can fail on demand.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { decode } from "@msgpack/msgpack";
import { startOrigin, startProxy, startWorker, startQueuedWorker, golden, growthbook, batch, cookieOf, mintToken, ALLOWED_ORIGIN } from "./harness.mjs";

let origin, proxy, edge, staleEdge;
const BASE = "http://edge.test";

async function post(mf, body, { cookie, contentType = "application/msgpack", clientIp, pageOrigin } = {}) {
  const headers = { "content-type": contentType };
  if (cookie) headers.cookie = cookie;
  if (clientIp) headers["cf-connecting-ip"] = clientIp;
  if (pageOrigin) headers.origin = pageOrigin;
  return mf.dispatchFetch(`${BASE}/v1/collect`, { method: "POST", headers, body });
}

async function recs(mf, cookie, k = 5) {
  return mf.dispatchFetch(`${BASE}/v1/recommendations?k=${k}`, { headers: cookie ? { cookie } : {} });
}

async function until(check, ms = 15000) {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
  return true;
}

before(async () => {
  origin = await startOrigin();
  proxy = await startProxy(origin.url);
  const now = Date.now();
  // Sports is newest, so it leads the origin's (freshness) ranking for a newcomer.
  const items = [
    ...["s1", "s2", "s3", "s4"].map((id, i) => ({ id, tags: ["sports"], published_at_ms: now - i * 1000 })),
    ...["t1", "t2", "t3", "t4"].map((id, i) => ({ id, tags: ["tech"], published_at_ms: now - 600_000 - i * 1000 })),
    ...["w1", "w2", "w3", "w4"].map((id, i) => ({ id, tags: ["world"], published_at_ms: now - 1_200_000 - i * 1000 })),
  ];
  const r = await fetch(`${origin.url}/v1/items`, {
    method: "POST",
    headers: { authorization: `Bearer ${origin.site.api_key}`, "content-type": "application/json" },
    body: JSON.stringify({ items }),
  });
  assert.equal(r.status, 200);
  const bindings = { ORIGIN_URL: proxy.url, SITE_KEY: origin.site.site_key, ORIGIN_API_KEY: origin.site.api_key };
  edge = startWorker(bindings);
  staleEdge = startWorker({ ...bindings, CANDIDATES_TTL_S: "0", CANDIDATES_SWR_S: "0" });
  await edge.ready;
  await staleEdge.ready;
});

after(async () => {
  await edge?.dispose();
  await staleEdge?.dispose();
  proxy?.stop();
  origin?.stop();
});

test("a click changes the very next recommendations, with no origin round trip", async () => {
  const site = origin.site.site_key;
  const anon = `anon-click-${Date.now()}`;
  let r = await post(edge, batch(site, anon, [{ kind: "page_view" }]));
  assert.equal(r.status, 202);
  let cookie = cookieOf(r);
  assert.match(cookie, /^attune_state=/);

  r = await recs(edge, cookie);
  assert.equal(r.status, 200);
  const first = await r.json();
  assert.equal(first.user, `anon:${anon}`);
  assert.deepEqual(first.items[0].tags, ["sports"], JSON.stringify(first));
  const originCalls = proxy.state.recommendationGets;

  r = await post(edge, batch(site, anon, [{ kind: "click", item: "t2" }]), { cookie });
  assert.equal(r.status, 202);
  cookie = cookieOf(r);
  r = await recs(edge, cookie);
  const after = await r.json();
  assert.equal(proxy.state.recommendationGets, originCalls, "served from the edge cache");
  assert.deepEqual(after.items[0].tags, ["tech"], JSON.stringify(after));
  assert.ok(!after.items.some((i) => i.item === "t2"), "the clicked item is not recommended again");
  assert.ok(after.items[0].score > first.items[0].score);
});

test("the edge's rail has a serve id, and a click on what it served is worth more than any click", async () => {
  const site = origin.site.site_key;
  // Ranked by interest alone, so the origin's scores (which these clicks
  // move) do not enter the comparison.
  const byInterest = startWorker({ ORIGIN_URL: proxy.url, SITE_KEY: site, ORIGIN_API_KEY: origin.site.api_key, AFFINITY_BLEND: "1" });
  const s1Score = async (served) => {
    const anon = `anon-served-${served}-${Date.now()}`;
    let r = await post(byInterest, batch(site, anon, [{ kind: "page_view" }]));
    const cookie = cookieOf(r);
    const rail = await (await recs(byInterest, cookie, 12)).json();
    assert.equal(rail.ranker, "edge");
    assert.match(rail.serve_id, /^edge\.[0-9a-f]{32}$/);
    const position = rail.items.findIndex((i) => i.item === "t2");
    const slot = served ? { sv: rail.serve_id, ps: position } : {};
    // A sports click and a tech click at one instant: equal interest, unless
    // the tech click was on the rail.
    r = await post(byInterest, batch(site, anon, [{ kind: "click", item: "s2" }, { kind: "click", item: "t2", ...slot }]), { cookie });
    assert.equal(r.status, 202);
    const after = await (await recs(byInterest, cookieOf(r), 12)).json();
    assert.notEqual(after.serve_id, rail.serve_id, "one id per serve");
    return after.items.find((i) => i.item === "s1").score;
  };
  try {
    const plain = await s1Score(false);
    const served = await s1Score(true);
    assert.equal(plain, 1, "equal interest in sports and tech");
    // attune-core's defaults: a click 3, a click on a served item 4.
    assert.ok(Math.abs(served - 3 / 4) < 1e-9, `sports is 3/4 of a served tech click: ${served} vs ${plain}`);
  } finally {
    await byInterest.dispose();
  }
});

test("FEEDBACK_WEIGHTS decides what a click is worth: weight 0 leaves the ranking as it was", async () => {
  const site = origin.site.site_key;
  const unweighted = startWorker({ ORIGIN_URL: proxy.url, SITE_KEY: site, ORIGIN_API_KEY: origin.site.api_key, FEEDBACK_WEIGHTS: '{"click": 0}' });
  try {
    const anon = `anon-weights-${Date.now()}`;
    let r = await post(unweighted, batch(site, anon, [{ kind: "page_view" }]));
    const cookie = cookieOf(r);
    // The reader's list is cached first: the click's tags come from it.
    const first = await (await recs(unweighted, cookie)).json();
    assert.deepEqual(first.items[0].tags, ["sports"], JSON.stringify(first));
    r = await post(unweighted, batch(site, anon, [{ kind: "click", item: "t2" }]), { cookie });
    assert.equal(r.status, 202);
    const after = await (await recs(unweighted, cookieOf(r))).json();
    assert.deepEqual(after.items[0].tags, ["sports"], JSON.stringify(after));
  } finally {
    await unweighted.dispose();
  }
});

test("with ORIGIN_EDGE_SECRET the edge proves itself and names the reader's address to the origin", async () => {
  const site = origin.site.site_key;
  const trusted = startWorker({ ORIGIN_URL: proxy.url, SITE_KEY: site, ORIGIN_API_KEY: origin.site.api_key, ORIGIN_EDGE_SECRET: "edge-to-origin-secret-0123" });
  try {
    let r = await post(trusted, batch(site, `anon-ip-${Date.now()}`, [{ kind: "page_view" }]), { clientIp: "203.0.113.9" });
    assert.equal(r.status, 202);
    let sent = proxy.state.events.at(-1).headers;
    assert.equal(sent["x-attune-edge"], "edge-to-origin-secret-0123");
    assert.equal(sent["x-forwarded-for"], "203.0.113.9");
    // Without the binding the edge claims nothing.
    r = await post(edge, batch(site, `anon-ip-${Date.now()}`, [{ kind: "page_view" }]), { clientIp: "203.0.113.9" });
    assert.equal(r.status, 202);
    sent = proxy.state.events.at(-1).headers;
    assert.equal(sent["x-attune-edge"], undefined);
  } finally {
    await trusted.dispose();
  }
});

test("a page the site does not allow gets the origin's 403 through the edge, and no cookie", async () => {
  const site = origin.site.site_key;
  const forwardedBefore = proxy.state.events.length;
  let r = await post(edge, batch(site, `anon-foreign-${Date.now()}`, [{ kind: "page_view" }]), { pageOrigin: "https://evil.example" });
  assert.equal(r.status, 403);
  const body = await r.json();
  assert.equal(body.error, "forbidden");
  assert.match(body.message, /https:\/\/evil\.example may not send events/);
  assert.equal(r.headers.get("set-cookie"), null, "the edge state moves on only with a 202");
  assert.equal(proxy.state.events.length - forwardedBefore, 1, "forwarded once: a refusal is final");
  r = await post(edge, batch(site, `anon-allowed-${Date.now()}`, [{ kind: "page_view" }]), { pageOrigin: ALLOWED_ORIGIN });
  assert.equal(r.status, 202);
});

test("with CLIENT_LIMIT the edge limits each reader's address, answers 429 as the origin does and forwards nothing over the limit", async () => {
  const site = origin.site.site_key;
  const limited = startWorker(
    { ORIGIN_URL: proxy.url, SITE_KEY: site, ORIGIN_API_KEY: origin.site.api_key },
    { ratelimits: { CLIENT_LIMIT: { simple: { limit: 5, period: 10 } } } },
  );
  try {
    const forwardedBefore = proxy.state.events.length;
    const statuses = [];
    let refused;
    for (let i = 0; i < 8; i++) {
      const r = await post(limited, batch(site, `anon-flood-${Date.now()}-${i}`, [{ kind: "page_view" }]), { clientIp: "198.51.100.7" });
      statuses.push(r.status);
      if (r.status === 429) refused = { body: await r.json(), retryAfter: r.headers.get("retry-after") };
      else await r.arrayBuffer();
    }
    assert.deepEqual(statuses, [202, 202, 202, 202, 202, 429, 429, 429]);
    assert.equal(refused.body.error, "rate_limited");
    assert.match(refused.body.message, /retry after/);
    assert.ok(Number(refused.retryAfter) > 0, "Retry-After");
    assert.equal(proxy.state.events.length - forwardedBefore, 5, "nothing over the limit reached the origin");
    // Another reader is not held back by the first one's flood.
    const other = await post(limited, batch(site, `anon-other-${Date.now()}`, [{ kind: "page_view" }]), { clientIp: "198.51.100.8" });
    assert.equal(other.status, 202);
    const recsOver = await limited.dispatchFetch(`${BASE}/v1/recommendations?k=3`, { headers: { "cf-connecting-ip": "198.51.100.7" } });
    assert.equal(recsOver.status, 429, "the limit covers every /v1/ route");
    await recsOver.arrayBuffer();
  } finally {
    await limited.dispose();
  }
});

test("experiment assignment in workerd reproduces GrowthBook's cross-language vectors", async () => {
  const r = await edge.dispatchFetch(`${BASE}/__attune/golden/experiments`, { method: "POST", body: JSON.stringify(growthbook) });
  assert.equal(r.status, 200);
  const got = await r.json();
  assert.deepEqual(got.hash, growthbook.hash.map((c) => c[3]));
  growthbook.getBucketRange.forEach(([name, , want], i) => {
    assert.equal(got.getBucketRange[i].length, want.length, name);
    want.flat().forEach((w, j) => assert.ok(Math.abs(got.getBucketRange[i].flat()[j] - w) < 1e-9, `${name}: ${JSON.stringify(got.getBucketRange[i])}`));
  });
  assert.deepEqual(got.chooseVariation, growthbook.chooseVariation.map((c) => c[3]));
  assert.deepEqual(got.inNamespace, growthbook.inNamespace.map((c) => c[3]));
});

test("golden vectors: the worker's decay and rerank equal attune-core's, bit for bit", async () => {
  for (const c of golden.rerank) {
    const r = await edge.dispatchFetch(`${BASE}/__attune/golden/rerank`, { method: "POST", body: JSON.stringify(c) });
    assert.equal(r.status, 200, c.name);
    assert.deepEqual(await r.json(), c.expected, c.name);
  }
  for (const c of golden.decay) {
    const r = await edge.dispatchFetch(`${BASE}/__attune/golden/decay`, { method: "POST", body: JSON.stringify(c) });
    const got = await r.json();
    assert.deepEqual(got.state, c.state, c.name);
    assert.equal(got.value, c.value, c.name);
  }
});

test("golden batches pass the edge's decoder; golden bad batches get their error and field", async () => {
  // The golden batches name the site `news-demo`; an edge for that site
  // decodes them and asks an origin that is not there: 503, not a 4xx.
  const demo = startWorker({ ORIGIN_URL: "http://127.0.0.1:9", SITE_KEY: "news-demo", ORIGIN_API_KEY: "unused-0123456789" });
  try {
    for (const c of golden.codec) {
      const r = await post(demo, Buffer.from(c.msgpack_hex, "hex"));
      assert.equal(r.status, 503, c.name);
      assert.equal((await r.json()).error, "origin_unavailable", c.name);
    }
    for (const c of golden.invalid) {
      const r = await post(demo, Buffer.from(c.msgpack_hex, "hex"));
      const body = await r.json();
      assert.ok(r.status === 400 || r.status === 422, `${c.name}: ${r.status}`);
      assert.equal(body.error, c.error_code, c.name);
      assert.equal(body.field ?? null, c.error_field, c.name);
    }
  } finally {
    await demo.dispose();
  }
});

test("the edge answers with the origin's answer: one quick retry inside the request, the exact bytes each time", async () => {
  const site = origin.site.site_key;
  const body = batch(site, `anon-fwd-${Date.now()}`, [{ kind: "click", item: "s1" }, { kind: "scroll", item: "s1", dp: 80 }]);
  const sent = Buffer.from(body);
  proxy.state.failNext = 1;
  const r = await post(edge, body);
  assert.equal(r.status, 202);
  assert.deepEqual(await r.json(), { accepted: 2, ignored: 0 }, "the origin's own count");
  assert.ok(cookieOf(r), "the state moves on with the 202");
  const same = proxy.state.events.filter((e) => e.body.equals(sent));
  assert.deepEqual(same.map((e) => e.status), [503, 202], "a failure, then the same bytes again, before the answer");
});

test("origin down: 503 with Retry-After and no new state; the resent batch is stored and counted once", async () => {
  const site = origin.site.site_key;
  const anon = `anon-outage-${Date.now()}`;
  let r = await post(edge, batch(site, anon, [{ kind: "click", item: "t1" }]));
  const cookie = cookieOf(r);
  const body = batch(site, anon, [{ kind: "click", item: "t2" }]);
  const sent = Buffer.from(body);
  proxy.state.down = true;
  try {
    r = await post(edge, body, { cookie });
    assert.equal(r.status, 503);
    assert.equal((await r.json()).error, "origin_unavailable");
    assert.ok(Number(r.headers.get("retry-after")) > 0, "the tracker is told when to resend");
    assert.equal(r.headers.get("set-cookie"), null, "nothing stored, so the state does not move");
  } finally {
    proxy.state.down = false;
  }
  r = await post(edge, body, { cookie });
  assert.equal(r.status, 202);
  assert.deepEqual(
    proxy.state.events.filter((e) => e.body.equals(sent)).map((e) => e.status),
    [202],
    "the origin got the batch once it was back",
  );
  // The resent click reached the state (a signed MessagePack array: site, id,
  // affinities, clicks); the failed attempt gave the browser no state to keep.
  const [, , , clicks] = decode(Buffer.from(cookieOf(r).split("=")[1].split(".")[0], "base64url"));
  assert.deepEqual(clicks.map(([item]) => item), ["t1", "t2"]);
});

test("FORWARD=queue: 202 once the queue holds the batch, origin down or not; it reaches the origin once back", async () => {
  const site = origin.site.site_key;
  const queued = startQueuedWorker({ ORIGIN_URL: proxy.url, SITE_KEY: site, ORIGIN_API_KEY: origin.site.api_key });
  try {
    const body = batch(site, `anon-queue-${Date.now()}`, [{ kind: "click", item: "w1" }]);
    const sent = Buffer.from(body);
    const same = () => proxy.state.events.filter((e) => e.body.equals(sent));
    proxy.state.down = true;
    let r;
    try {
      r = await post(queued, body);
      assert.equal(r.status, 202);
      assert.deepEqual(await r.json(), { accepted: 1, queued: true });
      assert.ok(cookieOf(r), "the state moves on at once");
      await new Promise((done) => setTimeout(done, 1500));
      assert.equal(same().length, 0, "nothing reached the origin while it was down");
    } finally {
      proxy.state.down = false;
    }
    assert.ok(await until(() => same().some((e) => e.status === 202), 20000), "the queue delivered it once the origin was back");
    assert.deepEqual(same().map((e) => e.status), [202], "the exact bytes, stored once");
  } finally {
    await queued.dispose();
  }
});

test("FORWARD=queue with the site's token secret and pages: the edge refuses what the origin would, before its 202", async () => {
  const site = origin.site.site_key;
  const queued = startQueuedWorker({
    ORIGIN_URL: proxy.url,
    SITE_KEY: site,
    ORIGIN_API_KEY: origin.site.api_key,
    TOKEN_SECRET: origin.site.token_secret,
    ALLOWED_ORIGINS: ALLOWED_ORIGIN,
  });
  try {
    const forwardedBefore = proxy.state.events.length;
    const exp = Math.floor(Date.now() / 1000) + 600;
    const forged = mintToken(site, "user-1", "not-the-sites-secret-0123", exp);
    let r = await post(queued, batch(site, "anon-forged", [{ kind: "page_view" }], { token: forged }));
    assert.equal(r.status, 401);
    const body = await r.json();
    assert.deepEqual([body.error, body.field], ["unauthorized", "user_token"]);
    assert.match(body.message, /signature does not match/);
    const expired = mintToken(site, "user-1", origin.site.token_secret, Math.floor(Date.now() / 1000) - 5);
    r = await post(queued, batch(site, "anon-expired", [{ kind: "page_view" }], { token: expired }));
    assert.equal(r.status, 401);
    await r.arrayBuffer();
    r = await post(queued, batch(site, "anon-foreign", [{ kind: "page_view" }]), { pageOrigin: "https://evil.example" });
    assert.equal(r.status, 403);
    assert.equal((await r.json()).error, "forbidden");
    const valid = mintToken(site, "user-1", origin.site.token_secret, exp);
    const good = batch(site, "anon-valid", [{ kind: "page_view" }], { token: valid });
    r = await post(queued, good, { pageOrigin: ALLOWED_ORIGIN });
    assert.equal(r.status, 202);
    await r.arrayBuffer();
    const sent = Buffer.from(good);
    assert.ok(await until(() => proxy.state.events.some((e) => e.body.equals(sent) && e.status === 202), 20000), "the valid batch was delivered");
    assert.equal(proxy.state.events.length - forwardedBefore, 1, "only the valid batch reached the origin");
  } finally {
    await queued.dispose();
  }
});

test("FORWARD=queue: a batch the origin refuses for good goes to the dead-letter queue with the reason", async () => {
  const queued = startQueuedWorker({ ORIGIN_URL: proxy.url, SITE_KEY: "unknown-to-the-origin", ORIGIN_API_KEY: "unused-0123456789" });
  try {
    const r = await post(queued, batch("unknown-to-the-origin", "a", [{ kind: "page_view" }]));
    assert.equal(r.status, 202);
    const dlq = await queued.getWorker("dead-letters");
    let seen = [];
    for (const end = Date.now() + 15000; seen.length === 0 && Date.now() < end; ) {
      await new Promise((done) => setTimeout(done, 100));
      seen = await (await dlq.fetch("http://dlq/")).json();
    }
    assert.equal(seen.length, 1, "one dead letter");
    assert.match(seen[0], /^4\d\d /, "the origin's status and error are kept with it");
  } finally {
    await queued.dispose();
  }
});

test("a batch the origin refuses gets the origin's status and error, and no new state", async () => {
  // The edge serves this site, the origin does not know it.
  const other = startWorker({ ORIGIN_URL: proxy.url, SITE_KEY: "unknown-to-the-origin", ORIGIN_API_KEY: "unused-0123456789" });
  try {
    const r = await post(other, batch("unknown-to-the-origin", "a", [{ kind: "page_view" }]));
    const direct = await fetch(`${origin.url}/v1/events`, {
      method: "POST",
      headers: { "content-type": "application/msgpack" },
      body: batch("unknown-to-the-origin", "a", [{ kind: "page_view" }]),
    });
    assert.equal(r.status, direct.status);
    assert.ok(r.status >= 400 && r.status < 500, `${r.status}`);
    assert.equal((await r.json()).error, (await direct.json()).error);
    assert.equal(r.headers.get("set-cookie"), null);
  } finally {
    await other.dispose();
  }
});

test("bad input gets a clear error", async () => {
  const site = origin.site.site_key;
  let r = await post(edge, Buffer.from("not msgpack"));
  assert.equal(r.status, 400);
  assert.equal((await r.json()).error, "malformed");
  r = await post(edge, batch(site, "a", [{ kind: "page_view" }]), { contentType: "text/plain" });
  assert.equal(r.status, 415);
  r = await post(edge, batch(site, "a", [{ kind: "hover" }]));
  assert.equal(r.status, 422);
  assert.equal((await r.json()).field, "events[0].kind");
  r = await post(edge, batch("another-site", "a", [{ kind: "page_view" }]));
  assert.equal(r.status, 401, "another site's key is unknown here, as at the origin");
  r = await edge.dispatchFetch(`${BASE}/v1/recommendations?k=0`);
  assert.equal(r.status, 400);
});

test("an oversized batch gets 413", async () => {
  const r = await post(edge, Buffer.alloc(300 * 1024, 0x90));
  assert.equal(r.status, 413);
  assert.equal((await r.json()).error, "too_large");
});

test("origin down: cached candidates are served (stale if need be); nothing cached gives 503", async () => {
  const site = origin.site.site_key;
  const anon = `anon-down-${Date.now()}`;
  let r = await post(staleEdge, batch(site, anon, [{ kind: "page_view" }]));
  const cookie = cookieOf(r);
  r = await recs(staleEdge, cookie);
  assert.equal(r.status, 200, "origin up: list fetched and cached");
  proxy.state.down = true;
  try {
    r = await recs(staleEdge, cookie);
    assert.equal(r.status, 200);
    const body = await r.json();
    assert.equal(body.stale, true, "past TTL and SWR: the old list beats none");
    assert.ok(body.items.length > 0);

    r = await post(staleEdge, batch(site, `anon-new-${Date.now()}`, [{ kind: "page_view" }]));
    r = await recs(staleEdge, cookieOf(r));
    assert.equal(r.status, 503);
    assert.ok(r.headers.get("retry-after"));
    assert.equal((await r.json()).error, "unavailable");
  } finally {
    proxy.state.down = false;
  }
});

const IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1";
const LINUX_CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";

test("a newcomer gets the list of their segments: device and referrer reach the origin, one cached list per segment", async () => {
  // A worker of its own, so no other test has cached a cold list in it.
  const mf = startWorker({ ORIGIN_URL: proxy.url, SITE_KEY: origin.site.site_key, ORIGIN_API_KEY: origin.site.api_key });
  try {
    const seen = proxy.state.recommendationRequests;
    const newcomer = async (userAgent, referrer) => {
      const before = seen.length;
      const query = referrer === undefined ? "" : `&referrer=${encodeURIComponent(referrer)}`;
      const r = await mf.dispatchFetch(`${BASE}/v1/recommendations?k=3${query}`, { headers: { "user-agent": userAgent } });
      assert.equal(r.status, 200);
      assert.equal((await r.json()).user, "anon:_cold");
      return seen.slice(before);
    };
    let asked = await newcomer(IPHONE, "https://www.google.com/search?q=x");
    assert.equal(asked.length, 1, "the first phone reader from search: fetched");
    assert.equal(asked[0].userAgent, IPHONE, "the origin classes the reader's device");
    assert.equal(asked[0].url.searchParams.get("referrer"), "https://www.google.com/search?q=x");
    assert.equal(asked[0].url.searchParams.get("user"), "anon:_cold");
    assert.equal((await newcomer(IPHONE, "https://www.bing.com/")).length, 0, "another phone reader from search: the same list, cached");
    assert.equal((await newcomer(LINUX_CHROME, "https://www.google.com/")).length, 1, "a desktop reader: a list of their own");
    assert.equal((await newcomer(IPHONE, "https://t.co/abc")).length, 1, "a phone reader from social: a list of their own");
    asked = await newcomer(IPHONE);
    assert.equal(asked.length, 1, "a phone reader who came direct: a list of their own");
    assert.equal(asked[0].url.searchParams.get("referrer"), null);

    // A referrer no page has: the same refusal from both tiers.
    const long = `https://example.com/${"x".repeat(5000)}`;
    const fromEdge = await mf.dispatchFetch(`${BASE}/v1/recommendations?referrer=${long}`);
    const fromOrigin = await fetch(`${origin.url}/v1/recommendations?user=anon:x&referrer=${long}`, { headers: { authorization: `Bearer ${origin.site.api_key}` } });
    assert.equal(fromEdge.status, 400);
    assert.equal(fromOrigin.status, 400);
    const [e, o] = [await fromEdge.json(), await fromOrigin.json()];
    assert.deepEqual([e.error, e.field], ["too_long", "referrer"]);
    assert.deepEqual([o.error, o.field], [e.error, e.field]);

    // A reader with state: their own list, asked with their context too.
    let r = await post(mf, batch(origin.site.site_key, `anon-seg-${Date.now()}`, [{ kind: "page_view" }]));
    const before = seen.length;
    r = await mf.dispatchFetch(`${BASE}/v1/recommendations?referrer=${encodeURIComponent("https://t.co/x")}`, { headers: { cookie: cookieOf(r), "user-agent": IPHONE } });
    assert.equal(r.status, 200);
    assert.equal(seen.length, before + 1);
    assert.equal(seen.at(-1).userAgent, IPHONE);
    assert.equal(seen.at(-1).url.searchParams.get("referrer"), "https://t.co/x");
  } finally {
    await mf.dispose();
  }
});

test("tampered or foreign state is rejected, never trusted", async () => {
  const site = origin.site.site_key;
  const anon = `anon-tamper-${Date.now()}`;
  let r = await post(edge, batch(site, anon, [{ kind: "page_view" }]));
  const cookie = cookieOf(r);
  const [name, value] = cookie.split("=");
  const [payload, sig] = value.split(".");
  const flipped = payload.slice(0, 10) + (payload[10] === "A" ? "B" : "A") + payload.slice(11);
  r = await recs(edge, `${name}=${flipped}.${sig}`);
  assert.equal((await r.json()).user, "anon:_cold", "a forged cookie is a stranger");
  // A valid cookie of another browser does not carry over to this anonymous id.
  r = await post(edge, batch(site, "someone-else", [{ kind: "page_view" }]), { cookie });
  const theirs = cookieOf(r);
  r = await recs(edge, theirs);
  assert.equal((await r.json()).user, "anon:someone-else");
});

test("a truncated upload gets the origin's 400 JSON error, not a 500", async () => {
  const url = new URL(await edge.ready);
  const net = await import("node:net");
  const socket = net.connect(Number(url.port), url.hostname);
  await new Promise((resolve) => socket.once("connect", resolve));
  const reply = new Promise((resolve) => {
    let text = "";
    socket.on("data", (d) => (text += d));
    socket.on("close", () => resolve(text));
    socket.on("error", () => resolve(text));
  });
  socket.write("POST /v1/collect HTTP/1.1\r\nHost: edge.test\r\nContent-Type: application/msgpack\r\nContent-Length: 1000\r\n\r\n");
  socket.end(Buffer.alloc(10, 0x90));
  const text = await reply;
  assert.match(text, /^HTTP\/1\.1 400/, text);
  assert.match(text, /"error":"unreadable_body"/, text);
});

test("Content-Encoding: one rule at both tiers, the same status and error for every label", async () => {
  const zlib = await import("node:zlib");
  const site = origin.site.site_key;
  const cases = [
    // [label, body kind, status, error]
    ["gzip", "gzip", 202],
    ["GZIP", "gzip", 202],
    ["x-gzip", "gzip", 202],
    ["identity", "plain", 202],
    ["br", "plain", 415, "unsupported_encoding"],
    ["deflate", "plain", 415, "unsupported_encoding"],
    ["gzip, gzip", "gzip", 415, "unsupported_encoding"],
    ["gzip", "plain", 400, "unreadable_body"],
    ["gzip", "bomb", 413, "too_large"],
  ];
  for (const [label, kind, status, code] of cases) {
    for (const tier of ["edge", "origin"]) {
      const plain = batch(site, `enc-${tier}-${label.replace(/\W/g, "")}-${kind}`, [{ kind: "click", item: "s1" }]);
      const body = kind === "plain" ? plain : zlib.gzipSync(kind === "bomb" ? Buffer.alloc(4 << 20) : plain);
      const headers = { "content-type": "application/msgpack", "content-encoding": label };
      const before = proxy.state.events.length;
      const r = tier === "edge"
        ? await edge.dispatchFetch(`${BASE}/v1/collect`, { method: "POST", headers, body })
        : await fetch(`${origin.url}/v1/events`, { method: "POST", headers, body });
      const text = await r.text();
      assert.equal(r.status, status, `${tier} ${label} ${kind}: ${text}`);
      if (code) {
        assert.equal(JSON.parse(text).error, code, `${tier} ${label} ${kind}: ${text}`);
        if (tier === "edge") assert.equal(proxy.state.events.length, before, "nothing refused is forwarded");
      } else if (tier === "edge") {
        // The origin receives the batch's own bytes, inflated.
        assert.deepEqual(Buffer.from(proxy.state.events.at(-1).body), Buffer.from(plain));
      }
    }
  }
});

test("an experiment reaches the edge: a reader gets the origin's interleaved rail unchanged, a newcomer the shared list", async () => {
  const site = origin.site.site_key;
  const define = (body) =>
    fetch(`${origin.url}/v1/experiments/edge-il`, {
      method: "PUT",
      headers: { authorization: `Bearer ${origin.site.api_key}`, "content-type": "application/json" },
      body: JSON.stringify({ mode: "interleave", variants: [{ name: "production", ranker: "production", weight: 0.5 }, { name: "popular", ranker: "popularity", weight: 0.5 }], ...body }),
    });
  let r = await define({});
  assert.equal(r.status, 200, await r.text());
  const fresh = startWorker({ ORIGIN_URL: proxy.url, SITE_KEY: site, ORIGIN_API_KEY: origin.site.api_key });
  try {
    await fresh.ready;
    const cold = await (await recs(fresh, null)).json();
    assert.equal(cold.ranker, "edge", "a newcomer's shared list belongs to no experiment");
    const anon = `anon-il-${Date.now()}`;
    r = await post(fresh, batch(site, anon, [{ kind: "page_view" }]));
    const cookie = cookieOf(r);
    const rail = await (await recs(fresh, cookie, 6)).json();
    assert.equal(rail.ranker, "interleaved", JSON.stringify(rail));
    assert.match(rail.serve_id, /^interleaved\.[0-9a-f]{32}$/);
    // Served as the origin merged it: the same order under the same id
    // (a rerank would reorder the slots the serve id names).
    const again = await (await recs(fresh, cookie, 6)).json();
    assert.equal(again.serve_id, rail.serve_id);
    assert.deepEqual(again.items.map((i) => i.item), rail.items.map((i) => i.item));
  } finally {
    await define({ status: "stopped" });
    await fresh.dispose();
  }
});
