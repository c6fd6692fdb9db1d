// The news site's catalog: 240 articles in 10 categories, generated from a
// fixed seed so every run (and the origin's copy) has the same articles.
// Publish times are spread over the 14 days before the start of the current
// UTC day: deterministic for a day, and recent enough to look like news.

export const CATEGORIES = {
  world: { label: "World", subjects: ["Diplomats", "Coastal towns", "UN envoys", "Border regions", "Island nations", "Aid agencies"], objects: ["a ceasefire plan", "new trade routes", "the refugee summit", "a water-sharing deal", "election monitors", "the flood recovery"] },
  politics: { label: "Politics", subjects: ["Senators", "City councils", "Opposition leaders", "Young voters", "Finance ministers", "Regional governors"], objects: ["the budget vote", "a transparency bill", "campaign funding rules", "the housing reform", "a coalition deal", "the new cabinet"] },
  business: { label: "Business", subjects: ["Start-ups", "Central banks", "Retailers", "Shipping firms", "Small lenders", "Airlines"], objects: ["interest rates", "a record quarter", "supply chains", "the merger talks", "four-day weeks", "holiday sales"] },
  technology: { label: "Technology", subjects: ["Chip makers", "Open-source maintainers", "Browser vendors", "Robotics labs", "Battery engineers", "Security researchers"], objects: ["WebAssembly at the edge", "a new compiler", "quantum error correction", "privacy-first analytics", "solid-state batteries", "a memory-safety push"] },
  science: { label: "Science", subjects: ["Astronomers", "Marine biologists", "Physicists", "Geologists", "Climate scientists", "Neuroscientists"], objects: ["a distant exoplanet", "deep-sea corals", "a new particle signal", "ancient glaciers", "cloud formation", "how memories form"] },
  health: { label: "Health", subjects: ["Doctors", "Nutritionists", "Sleep researchers", "Public-health teams", "Nurses", "Physiotherapists"], objects: ["a flu vaccine update", "the Mediterranean diet", "screen time and sleep", "walking for longevity", "hospital waiting lists", "back pain myths"] },
  sports: { label: "Sports", subjects: ["The champions", "Rookie strikers", "Marathon runners", "National teams", "Tennis veterans", "Cycling squads"], objects: ["a late winner", "the season opener", "a world record", "the cup final", "altitude training", "a comeback win"] },
  culture: { label: "Culture", subjects: ["Film festivals", "Indie publishers", "Street artists", "Orchestras", "Museum curators", "Songwriters"], objects: ["a restored classic", "the prize shortlist", "a new gallery wing", "the summer tour", "forgotten manuscripts", "an opera revival"] },
  travel: { label: "Travel", subjects: ["Night trains", "Mountain villages", "City planners", "Budget travellers", "Ferry routes", "National parks"], objects: ["slow travel", "a hidden coastline", "car-free centres", "off-season trips", "the best day hikes", "overtourism"] },
  food: { label: "Food", subjects: ["Bakers", "Street-food vendors", "Chefs", "Coffee roasters", "Farmers' markets", "Home cooks"], objects: ["sourdough science", "a winter soup", "fermentation", "the perfect espresso", "seasonal vegetables", "one-pan dinners"] },
};

const VERBS = ["rethink", "bet on", "race toward", "push back on", "quietly embrace", "debate", "discover", "return to"];
const PER_CATEGORY = 24;
const DAY_MS = 86_400_000;

/** A small seeded PRNG (mulberry32): same seed, same sequence. */
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const pick = (r, list) => list[Math.floor(r() * list.length)];

/** Every article, newest first. `dayStartMs` defaults to today 00:00 UTC. */
export function articles(dayStartMs = Math.floor(Date.now() / DAY_MS) * DAY_MS) {
  const r = rng(20261127);
  const out = [];
  for (const [category, c] of Object.entries(CATEGORIES)) {
    for (let i = 0; i < PER_CATEGORY; i++) {
      const subject = pick(r, c.subjects);
      const verb = pick(r, VERBS);
      const object = pick(r, c.objects);
      out.push({
        id: `${category}-${String(i + 1).padStart(3, "0")}`,
        category,
        title: `${subject} ${verb} ${object}`,
        publishedAtMs: dayStartMs - Math.floor(r() * 14 * DAY_MS),
        readMinutes: 3 + Math.floor(r() * 6),
        seed: Math.floor(r() * 2 ** 31),
      });
    }
  }
  return out.sort((a, b) => b.publishedAtMs - a.publishedAtMs || a.id.localeCompare(b.id));
}

const FILLER = ["Officials said the change would take time.", "Critics were not convinced.", "The numbers tell a more careful story.", "Several experts urged patience.", "It is the third such report this year.", "Residents described the mood as hopeful.", "Nobody expected it to happen this fast.", "The details will be published next month.", "Early data point in one direction.", "Others see a longer trend at work."];

/** The article's paragraphs (long enough to scroll through). */
export function body(article) {
  const r = rng(article.seed);
  const c = CATEGORIES[article.category];
  const paragraphs = [];
  for (let p = 0; p < 12; p++) {
    const sentences = [`${pick(r, c.subjects)} ${pick(r, VERBS)} ${pick(r, c.objects)}.`];
    for (let s = 0; s < 4; s++) sentences.push(pick(r, FILLER));
    paragraphs.push(sentences.join(" "));
  }
  return paragraphs;
}

/** The catalog as the origin's `POST /v1/items` takes it. */
export function originItems(list = articles()) {
  return list.map((a) => ({
    id: a.id,
    tags: [a.category],
    published_at_ms: a.publishedAtMs,
    // How long it takes to read: a dwell of half that is a read, not a glance.
    length_words: body(a).join(" ").split(/\s+/).length,
    metadata: { title: a.title, url: `/article/${a.id}`, category: a.category },
  }));
}
