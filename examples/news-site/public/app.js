// The news site's front end: a small client-side router over the generated
// catalog, the Attune tracker set up as the npm README says, and the
// "Recommended for you" rail fetched from the edge after every navigation.
import { init } from "attune-tracker";
import { CATEGORIES, articles, body } from "/catalog.mjs";

const config = await (await fetch("/site-config.json")).json();
const all = articles(config.dayStartMs);
const byId = new Map(all.map((a) => [a.id, a]));
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
const when = (ms) => new Date(ms).toLocaleDateString("en-GB", { weekday: "short", day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" });

// The page's item for the tracker (js/README.md): an article's page view,
// scroll depth and reading time count for the article. Set before the
// tracker sees a view: at load, before pushState, first on popstate.
function setPageItem(path) {
  const [, kind, id] = path.split("/");
  let meta = document.querySelector('meta[name="attune:item"]');
  if (kind !== "article") return meta?.remove();
  if (!meta) document.head.append((meta = Object.assign(document.createElement("meta"), { name: "attune:item" })));
  meta.content = id;
}
setPageItem(location.pathname);
addEventListener("popstate", () => setPageItem(location.pathname));

// Batches go to the edge on this site's own domain (/attune/ is the worker's route).
const attune = await init({ endpoint: "/attune/v1/collect", siteKey: config.siteKey, flushInterval: 2000 });
window.attune = attune;

// The dashboard opens on this reader (and, in the local demo, with its development key).
const dashboardLink = (user) => {
  const hash = new URLSearchParams({ ...(config.dashboardKey ? { key: config.dashboardKey } : {}), ...(user ? { user } : {}) });
  $("dashboard-link").href = `${config.dashboardUrl}#${hash}`;
};
dashboardLink();
$("sections").innerHTML = Object.entries(CATEGORIES)
  .map(([id, c]) => `<a href="/category/${id}" data-link data-category="${id}">${c.label}</a>`)
  .join("");

const card = (a) => `<div class="card"><div class="kicker">${CATEGORIES[a.category].label}</div>
  <a href="/article/${a.id}" data-link data-article="${a.id}">${esc(a.title)}</a>
  <div class="meta">${when(a.publishedAtMs)} · ${a.readMinutes} min read</div></div>`;

function page() {
  const [, kind, id] = location.pathname.split("/");
  if (kind === "article" && byId.has(id)) {
    const a = byId.get(id);
    const more = all.filter((b) => b.category === a.category && b.id !== a.id).slice(0, 4);
    return {
      title: a.title,
      section: a.category,
      html: `<article data-attune-item="${a.id}"><div class="kicker">${CATEGORIES[a.category].label}</div>
        <h1>${esc(a.title)}</h1><div class="meta">${when(a.publishedAtMs)} · ${a.readMinutes} min read</div>
        ${body(a).map((p) => `<p>${esc(p)}</p>`).join("")}</article>
        <h2>More in ${CATEGORIES[a.category].label}</h2><div class="grid" id="more">${more.map(card).join("")}</div>`,
    };
  }
  if (kind === "category" && CATEGORIES[id]) {
    return { title: CATEGORIES[id].label, section: id, html: `<h1>${CATEGORIES[id].label}</h1><div class="grid">${all.filter((a) => a.category === id).map(card).join("")}</div>` };
  }
  return { title: "Latest", section: "", html: `<h1>Latest</h1><div class="grid">${all.slice(0, 20).map(card).join("")}</div>` };
}

function render() {
  const p = page();
  document.title = `${p.title} · The Attune Times`;
  $("main").innerHTML = p.html;
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active", a.dataset.category === p.section));
  scrollTo(0, 0);
  refreshRail();
}

// What the rail shows, for people (status line) and for the end-to-end test.
window.rail = { version: 0, items: [], clickToRailMs: null };
let clickedAt = null;
let railSeq = 0;

async function refreshRail() {
  const seq = ++railSeq;
  try {
    // Deliver the click first: the edge reranks with it on the next request.
    await attune.flush();
    // Where the reader came from ranks a newcomer by readers who came the same way.
    const from = document.referrer ? `&referrer=${encodeURIComponent(document.referrer)}` : "";
    const r = await fetch(`/attune/v1/recommendations?k=6${from}`);
    if (seq !== railSeq) return;
    if (!r.ok) {
      $("rail-status").textContent = `recommendations unavailable (${r.status}); retrying`;
      return;
    }
    const reply = await r.json();
    if (seq !== railSeq) return;
    const before = new Set(window.rail.items);
    // The serve id and each item's position attribute its impressions and clicks to this rail.
    $("rail-items").setAttribute("data-attune-serve", reply.serve_id);
    $("rail-items").innerHTML = reply.items
      .map((it, position) => {
        const a = byId.get(it.item);
        const title = it.metadata?.title ?? a?.title ?? it.item;
        const category = it.metadata?.category ?? a?.category ?? it.tags[0];
        return `<li class="${before.size && !before.has(it.item) ? "moved" : ""}"><a href="/article/${esc(it.item)}" data-link data-article="${esc(it.item)}" data-attune-rec="${esc(it.item)}" data-attune-pos="${position}">
          <span class="kicker">${esc(CATEGORIES[category]?.label ?? category)}</span>${esc(title)}</a></li>`;
      })
      .join("");
    if (!reply.user.endsWith(":_cold")) dashboardLink(reply.user);
    const ms = clickedAt === null ? null : Math.round(performance.now() - clickedAt);
    clickedAt = null;
    window.rail = { version: window.rail.version + 1, serveId: reply.serve_id, items: reply.items.map((it) => it.item), categories: reply.items.map((it) => it.tags[0]), clickToRailMs: ms, user: reply.user };
    $("rail-status").textContent =
      (ms === null ? "ranked at the edge" : `reranked at the edge ${ms} ms after your click`) +
      ` · origin candidates ${Math.round(reply.candidates_age_ms / 1000)} s old`;
  } catch (e) {
    $("rail-status").textContent = `recommendations unavailable (${e.message}); retrying`;
  }
}

document.addEventListener("click", (e) => {
  const a = e.target.closest("a[data-link]");
  if (!a || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey) return;
  e.preventDefault();
  const item = a.dataset.article;
  if (item) {
    clickedAt = performance.now();
    // Rail links are tracked by the tracker itself (data-attune-rec); article cards here.
    if (!a.hasAttribute("data-attune-rec")) attune.track("click", { item });
  }
  setPageItem(a.getAttribute("href"));
  history.pushState({}, "", a.getAttribute("href"));
  render();
});
addEventListener("popstate", render);
// Pick up the origin's refreshed candidates while someone reads.
setInterval(() => document.visibilityState === "visible" && refreshRail(), 15000);
render();
