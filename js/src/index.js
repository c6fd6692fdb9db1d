// attune-tracker: the browser wrapper around the Rust→wasm engine.
// The engine decides (events, batching, retries, persistence format); this
// file only listens to the DOM and does I/O. Nothing here throws into the
// host page: every callback is guarded.
import initWasm, { Tracker } from "../dist/wasm/attune_tracker.js";

// Each tab stores its unsent events under its own key, attune_q.<tab id>
// (a bare attune_q is the format before tabs had keys); see adopt().
const KEY_QUEUE = "attune_q";
const KEY_ID = "attune_aid";
const KEY_OPTOUT = "attune_optout";
const KEY_CONSENT = "attune_consent";
const UNLOAD_MAX_BYTES = 60000; // keepalive fetch bodies must stay under 64 KB

const defaults = {
  flushInterval: 5000,
  flushAt: 20,
  maxQueue: 1000,
  idleTimeout: 30000,
  itemSelector: "[data-attune-item]",
  recSelector: "[data-attune-rec]",
  respectDoNotTrack: false,
  requireConsent: false,
  trackHistory: true,
  // What makes a view: a change of path or query (not of #fragment).
  pageKey: (l) => l.pathname + l.search,
  wasmUrl: undefined,
};

const store = {
  get(k) {
    try {
      return localStorage.getItem(k);
    } catch {
      return null;
    }
  },
  // True when written (false: storage full or refused).
  set(k, v) {
    try {
      v == null ? localStorage.removeItem(k) : localStorage.setItem(k, v);
      return true;
    } catch {}
  },
  queues() {
    try {
      return Object.keys(localStorage).filter((k) => k.startsWith(KEY_QUEUE));
    } catch {
      return [];
    }
  },
};

// localStorage holds strings: bytes as one char each (latin1).
const toText = (bytes) => {
  let s = "";
  for (let i = 0; i < bytes.length; i += 4096) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 4096));
  return s;
};
const fromText = (s) => Uint8Array.from(s, (c) => c.charCodeAt(0));

const guard = (f) =>
  function (...a) {
    try {
      return f.apply(this, a);
    } catch {}
  };

/**
 * Starts the tracker. `options`: { endpoint, siteKey, flushInterval, flushAt,
 * maxQueue, idleTimeout, itemSelector, recSelector, respectDoNotTrack,
 * requireConsent, trackHistory, pageKey, wasmUrl }.
 */
export async function init(options) {
  const o = { ...defaults, ...options };
  if (!o.endpoint || !o.siteKey) throw new Error("attune: init needs { endpoint, siteKey }");
  await initWasm(o.wasmUrl ? { module_or_path: o.wasmUrl } : undefined);
  return new Attune(o);
}

class Attune {
  constructor(o) {
    this.o = o;
    this.consented = !o.requireConsent || store.get(KEY_CONSENT) === "1";
    let id = this.consented && store.get(KEY_ID);
    if (!id) {
      id = crypto.randomUUID();
      if (this.consented) store.set(KEY_ID, id);
    }
    this.id = id;
    this.fresh();
    // This tab's queue key, locked for the tab's life: a key whose lock is
    // free belongs to a tab that is gone.
    this.q = KEY_QUEUE + "." + Math.random();
    navigator.locks?.request(this.q, () => new Promise(() => {}));
    this.busy = 0;
    this.waitUntil = 0;
    this.lastActive = Date.now();
    this.idle = false;
    this.listen();
    this.page();
    this.adopt(true);
    this.send();
  }

  /**
   * Takes over the queues of tabs that are gone (closed, crashed, reloaded):
   * their events join this tab's queue, with their ids, and are stored
   * under this tab's key before the other key is removed — a crash in
   * between sends them twice (the server keeps one), never loses them.
   * With Web Locks a key is taken only once its tab's lock is free, checked
   * every tick; without them, only at start-up (a live tab rewrites its
   * key at its next change, so taking it costs duplicates, not events).
   */
  adopt(starting) {
    for (const k of store.queues())
      if (k != this.q) {
        const take = guard(() => {
          if (this.blocked()) return;
          const s = store.get(k);
          if (s) this.t.restore(fromText(s));
          if (this.persist()) store.set(k, null);
        });
        navigator.locks ? navigator.locks.request(k, { ifAvailable: true }, (lock) => lock && take()) : starting && take();
      }
  }

  blocked() {
    const dnt = this.o.respectDoNotTrack && (navigator.doNotTrack === "1" || navigator.globalPrivacyControl === true);
    return dnt || !this.consented || store.get(KEY_OPTOUT) === "1";
  }

  // True when this tab's unsent events are stored.
  persist() {
    return !this.blocked() && store.set(this.q, toText(this.t.snapshot()));
  }

  /**
   * Records a page view (also automatic on load and SPA navigation). The
   * page's item: `page({ item })`, else `<meta name="attune:item" content>`.
   */
  page(props = {}) {
    if (this.blocked()) return;
    // The page is followed as its item's element (its scroll goes there too).
    this.k = String(props.item ?? document.querySelector('meta[name="attune:item"]')?.content ?? "");
    this.view = this.o.pageKey(location);
    // The device class is left to the server, which parses the User-Agent.
    this.t.pageView(location.pathname, document.referrer, innerWidth, innerHeight, this.k, Date.now());
    this.changed();
  }

  /**
   * `track(kind, { item, depth, ms, serveId, position })`: page_view, click,
   * scroll, dwell, impression; a click or impression of a recommended item
   * names its rail slot (the reply's `serve_id`, the position shown, 0 first).
   */
  track(kind, props = {}) {
    if (this.blocked()) return false;
    const ok = this.t.track(kind, props.item == null ? undefined : String(props.item), Number(props.depth ?? props.ms ?? props.position ?? 0), props.serveId == null ? undefined : String(props.serveId), Date.now());
    this.changed();
    return ok;
  }

  /** Sets the signed user token (from the site's back end), or clears it. */
  identify(token) {
    this.t.identify((this.token = token || undefined));
  }

  // A new engine: nothing queued, nothing followed (the old one's answer,
  // if a batch is in flight, finds nothing in flight).
  fresh() {
    const seed = crypto.getRandomValues(new Uint32Array(2));
    this.t?.free();
    this.t = new Tracker(this.o.siteKey, this.id, this.o.flushAt, this.o.maxQueue, seed[0], seed[1]);
    this.t.identify(this.token);
  }

  // localStorage writes are synchronous: coalesce them to one per second
  // (and write at once when the page is hidden or unloads).
  changed() {
    this.saveSoon ||= setTimeout(guard(() => {
      this.saveSoon = 0;
      this.persist();
    }), 1000);
    if (this.t.pending() >= this.o.flushAt) this.send();
  }

  /** Sends everything queued; resolves when the queue is empty or sending failed. */
  async flush() {
    while (!this.blocked() && this.t.pending() > 0 && Date.now() >= this.waitUntil) {
      // A batch in flight: wait for its answer, then send the rest.
      if (this.busy) await this.busy;
      else if (!(await this.send())) break;
    }
  }

  /** One batch; true when the server took it. */
  async send(unload = false) {
    if (this.busy || this.blocked() || Date.now() < this.waitUntil) return false;
    const bytes = this.t.nextBatch(Date.now(), unload ? UNLOAD_MAX_BYTES : 512 * 1024, false);
    if (!bytes) return false;
    this.persist(); // in-flight events stay stored until answered
    // A failed fetch answers {} (status 0): the engine backs off.
    const r = await (this.busy = this.post(bytes, bytes.length < UNLOAD_MAX_BYTES).catch(() => ({})));
    const status = r.status || 0;
    const retryAfter = Number(r.headers?.get("retry-after")) || 0;
    this.busy = 0;
    const delay = this.t.batchResult(status, retryAfter);
    this.persist();
    if (delay > 0) {
      this.waitUntil = Date.now() + delay;
      setTimeout(() => this.send(), delay);
      return false;
    }
    if (this.t.pending() > 0 && !unload) setTimeout(() => this.send(), 0);
    return status >= 200 && status < 300;
  }

  hidden() {
    const now = Date.now();
    this.t.setActive(false, now);
    if (this.blocked()) return;
    this.t.flushPage(now);
    this.persist();
    // A batch in flight: what is queued leaves now too (the page may never
    // come back); same ids, so a second copy is dropped by the server.
    const bytes = this.busy && this.t.nextBatch(now, UNLOAD_MAX_BYTES, true);
    if (bytes) this.post(bytes, true).catch(() => {});
    else this.send(true);
  }

  post(body, keepalive) {
    return fetch(this.o.endpoint, { method: "POST", headers: { "content-type": "application/msgpack" }, body, keepalive, credentials: "include" });
  }

  // While blocked the engine is never told anything, so nothing accumulates.
  active(on) {
    this.t.setActive(on && !this.blocked() && !this.idle && this.focused && document.visibilityState === "visible", Date.now());
  }

  listen() {
    const o = this.o;
    const on = (target, type, f, opts) => target.addEventListener(type, guard(f), opts);
    const idOf = (el) => el.getAttribute("data-attune-item") || el.getAttribute("data-attune-rec");
    // A recommended item's rail slot: the rail's data-attune-serve, its data-attune-pos.
    const serveOf = (el) => el.closest("[data-attune-serve]")?.getAttribute("data-attune-serve") ?? undefined;
    const posOf = (el) => Number(el.getAttribute("data-attune-pos")) || 0;
    on(document, "click", (e) => {
      const el = e.target.closest && e.target.closest(`${o.itemSelector},${o.recSelector}`);
      if (el && idOf(el)) this.track("click", { item: idOf(el), serveId: serveOf(el), position: posOf(el) });
    }, true);
    let scheduled = false;
    on(window, "scroll", () => {
      this.wake();
      if (scheduled || this.blocked()) return;
      scheduled = true;
      requestAnimationFrame(guard(() => {
        scheduled = false;
        const h = document.documentElement.scrollHeight;
        this.t.scroll(this.k, h > 0 ? ((scrollY + innerHeight) / h) * 100 : 100);
      }));
    }, { passive: true });
    for (const type of ["pointerdown", "keydown", "touchstart"]) on(document, type, () => this.wake(), { passive: true });
    on(document, "visibilitychange", () => (document.visibilityState === "hidden" ? this.hidden() : this.active(true)));
    on(window, "pagehide", () => this.hidden());
    // Consent and opt-out given in another tab apply here at once, as they
    // stand now (an event can arrive after a newer change).
    on(window, "storage", (e) => {
      if (e.key == KEY_CONSENT) this.consent(store.get(KEY_CONSENT) == "1");
      if (e.key == KEY_OPTOUT) store.get(KEY_OPTOUT) ? this.forget() : this.resume();
    });
    // Back online: retry now rather than at the end of the backoff.
    on(window, "online", () => {
      this.waitUntil = 0;
      this.send();
    });
    this.focused = true;
    for (const type of ["blur", "focus"]) on(window, type, () => this.active((this.focused = type == "focus")));
    this.timer = setInterval(guard(() => {
      const now = Date.now();
      if (!this.idle && now - this.lastActive > o.idleTimeout) {
        this.idle = true;
        this.active(false);
      }
      if (this.blocked()) return;
      this.adopt();
      this.t.tick(now);
      if (this.t.pending() > 0) this.send();
    }), Math.min(o.flushInterval, 500));

    const io = (this.io = new IntersectionObserver(guard((entries) => {
      const now = Date.now();
      if (this.blocked()) return;
      for (const e of entries) {
        // Half of the element, or half of the view for elements taller than it (articles).
        const visible = e.intersectionRatio >= 0.5 || e.intersectionRect.height * 2 >= e.rootBounds.height;
        const item = e.target.getAttribute("data-attune-item");
        const rec = e.target.getAttribute("data-attune-rec");
        if (item) this.t.setInView(item, visible, now);
        if (rec) this.t.impression(rec, serveOf(e.target), posOf(e.target), visible, now);
      }
    }), { threshold: [0, 0.1, 0.2, 0.3, 0.4, 0.5] }));
    const watch = (this.watch = (root) => {
      if (root.matches && root.matches(`${o.itemSelector},${o.recSelector}`)) io.observe(root);
      if (root.querySelectorAll) root.querySelectorAll(`${o.itemSelector},${o.recSelector}`).forEach((el) => io.observe(el));
    });
    watch(document);
    new MutationObserver(guard((ms) => ms.forEach((m) => m.addedNodes.forEach(watch)))).observe(document.documentElement, { childList: true, subtree: true });

    if (o.trackHistory) {
      const self = this;
      for (const name of ["pushState", "replaceState"]) {
        const orig = history[name];
        history[name] = function (...a) {
          const r = orig.apply(this, a);
          guard(() => self.navigated())();
          return r;
        };
      }
      on(window, "popstate", () => this.navigated());
    }
  }

  // A history change is a view only when the page's identity changed.
  navigated() {
    if (this.o.pageKey(location) !== this.view) this.page();
  }

  // Tracking starts afresh on the page as it is: a view, and what is in view now.
  resume() {
    this.page();
    this.active(true);
    this.io.disconnect();
    this.watch(document);
  }

  // Nothing recorded so far is kept, in memory or storage (any tab's).
  forget() {
    this.fresh();
    for (const k of store.queues()) store.set(k, null);
  }

  wake() {
    this.lastActive = Date.now();
    if (this.idle) {
      this.idle = false;
      this.active(true);
    }
  }

  /** Stops tracking and sending, and forgets what was queued. Persisted. */
  optOut() {
    store.set(KEY_OPTOUT, "1");
    this.forget();
    this.active(false);
  }

  /** Resumes after optOut(), from the page as it is now. */
  optIn() {
    if (store.get(KEY_OPTOUT) !== "1") return;
    store.set(KEY_OPTOUT, null);
    this.resume();
  }

  /** With requireConsent: nothing is stored or sent before consent(true). */
  consent(granted) {
    const was = this.consented;
    this.consented = !!granted;
    if (granted && !was) {
      // One anonymous id per browser: the one a tab consented with first.
      this.id = store.get(KEY_ID) || this.id;
      this.fresh();
    }
    // The id is stored before the consent other tabs are told about.
    if (granted) store.set(KEY_ID, this.id);
    store.set(KEY_CONSENT, granted ? "1" : null);
    if (granted) {
      if (!was) this.resume();
      this.send();
    } else {
      this.forget();
      this.active(false);
      store.set(KEY_ID, null);
    }
  }
}
