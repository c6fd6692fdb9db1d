//! # attune-tracker
//!
//! The browser tracker's engine, compiled to WebAssembly and wrapped by the
//! npm package in `js/`. The engine ([`engine`]) owns every decision — what a
//! page view, click, scroll, visible dwell and impression are, batching,
//! retries, persistence — and encodes with attune-core. The JavaScript wrapper
//! only attaches DOM listeners and performs I/O (fetch with keepalive,
//! localStorage): binding those through web-sys measured larger, since every
//! imported browser API adds generated glue (see js/README.md for the sizes).

#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOCATOR: lol_alloc::AssumeSingleThreaded<lol_alloc::FreeListAllocator> =
    // SAFETY: wasm32-unknown-unknown without atomics runs one thread.
    unsafe { lol_alloc::AssumeSingleThreaded::new(lol_alloc::FreeListAllocator::new()) };

pub mod engine;
pub mod storage;

use attune_core::{EventKind, Interaction, Slot};
use wasm_bindgen::prelude::wasm_bindgen;

use engine::{Config, Engine};

/// The tracker, as JavaScript sees it. Times are `Date.now()` milliseconds.
#[wasm_bindgen]
pub struct Tracker(Engine);

#[wasm_bindgen]
impl Tracker {
    /// `seed_hi`/`seed_lo`: 64 random bits from `crypto.getRandomValues`.
    #[wasm_bindgen(constructor)]
    pub fn new(
        site_key: String,
        anonymous_id: String,
        max_batch_events: usize,
        max_stored_events: usize,
        seed_hi: u32,
        seed_lo: u32,
    ) -> Tracker {
        let config = Config {
            site_key,
            anonymous_id,
            max_batch_events,
            max_batch_bytes: 64 * 1024,
            max_stored_events,
        };
        Tracker(Engine::new(
            config,
            (u64::from(seed_hi) << 32) | u64::from(seed_lo),
        ))
    }

    /// Sets (or clears, with `undefined`) the signed user token.
    pub fn identify(&mut self, token: Option<String>) {
        self.0.identify(token);
    }

    /// `item`: the item the page shows, or empty. The device class is left
    /// to the server, which parses the User-Agent (and the parser here
    /// measured ~100 B gzipped).
    #[wasm_bindgen(js_name = pageView)]
    pub fn page_view(
        &mut self,
        path: String,
        referrer: String,
        width: u16,
        height: u16,
        item: &str,
        now: f64,
    ) {
        self.0
            .page_view(path, Some(referrer), (width, height), item, now);
    }

    /// `attune.track(kind, {item, depth, ms, serveId, position})`; false for
    /// an unknown kind or a missing item where the kind needs one. `value`:
    /// the depth, the ms, or (with `serve`) the rail position.
    pub fn track(
        &mut self,
        kind: &str,
        item: Option<String>,
        value: f64,
        serve: Option<String>,
        now: f64,
    ) -> bool {
        let interaction = match EventKind::parse(kind) {
            Some(EventKind::PageView) => Interaction::PageView,
            Some(EventKind::Click) => Interaction::Click,
            Some(EventKind::Impression) => Interaction::Impression,
            Some(EventKind::Scroll) => Interaction::Scroll {
                depth_pct: value.clamp(0.0, 100.0) as u8,
            },
            Some(EventKind::Dwell) => Interaction::Dwell {
                visible_ms: value.clamp(0.0, 86_400_000.0) as u32,
            },
            None => return false,
        };
        let needs_item = matches!(interaction, Interaction::Click | Interaction::Impression);
        if needs_item && item.is_none() {
            return false;
        }
        let slot = serve.filter(|_| needs_item).map(|s| slot(s, value));
        self.0.push(interaction, item, slot, now);
        true
    }

    pub fn scroll(&mut self, key: &str, pct: f64) {
        self.0.scroll(key, pct);
    }

    #[wasm_bindgen(js_name = setActive)]
    pub fn set_active(&mut self, active: bool, now: f64) {
        self.0.set_active(active, now);
    }

    #[wasm_bindgen(js_name = setInView)]
    pub fn set_in_view(&mut self, key: &str, in_view: bool, now: f64) {
        self.0.set_in_view(key, in_view, now);
    }

    /// A recommended item is ≥ 50 % visible or not; `serve`/`position`: its
    /// rail slot (`data-attune-serve` of the rail, `data-attune-pos`).
    pub fn impression(
        &mut self,
        item: &str,
        serve: Option<String>,
        position: f64,
        visible: bool,
        now: f64,
    ) {
        let slot = serve.map(|s| slot(s, position));
        self.0.impression(item, slot, visible, now);
    }

    pub fn tick(&mut self, now: f64) {
        self.0.tick(now);
    }

    #[wasm_bindgen(js_name = flushPage)]
    pub fn flush_page(&mut self, now: f64) {
        self.0.flush_page(now);
    }

    pub fn pending(&self) -> usize {
        self.0.pending()
    }

    /// The next MessagePack batch (≤ `max_bytes`), or `undefined`; `keep`:
    /// a copy of what is queued, left queued (a page leaving mid-send).
    #[wasm_bindgen(js_name = nextBatch)]
    pub fn next_batch(&mut self, now: f64, max_bytes: usize, keep: bool) -> Option<Vec<u8>> {
        self.0.next_batch(now, max_bytes, keep)
    }

    /// The answer to the batch in flight (status 0: network error); returns the
    /// delay in ms before sending again.
    #[wasm_bindgen(js_name = batchResult)]
    pub fn batch_result(&mut self, status: u16, retry_after_s: f64) -> f64 {
        self.0.batch_result(status, retry_after_s)
    }

    /// Unsent events (the wrapper stores them in localStorage).
    pub fn snapshot(&self) -> Vec<u8> {
        self.0.snapshot()
    }

    /// Requeues a snapshot; false if it is unreadable (then it is ignored).
    pub fn restore(&mut self, snapshot: &[u8]) -> bool {
        self.0.restore(snapshot)
    }
}

fn slot(serve_id: String, position: f64) -> Slot {
    Slot {
        serve_id,
        position: position.clamp(0.0, 255.0) as u8,
    }
}

/// attune-core's encoding of a JSON batch (the golden-vector tests' hook).
#[cfg(feature = "golden")]
#[wasm_bindgen(js_name = encodeBatchJson)]
pub fn encode_batch_json(json: &str) -> Result<Vec<u8>, String> {
    attune_core::codec::decode_json(json.as_bytes(), &attune_core::Limits::default())
        .map(|b| attune_core::codec::encode_msgpack(&b))
        .map_err(|e| e.to_string())
}

/// attune-core's experiment hash (the golden-vector tests' hook).
#[cfg(feature = "golden")]
#[wasm_bindgen(js_name = experimentHash)]
pub fn experiment_hash(seed: &str, value: &str, version: u32) -> Option<f64> {
    attune_core::experiments::hash(seed, value, version)
}

/// attune-core's bucket ranges, flattened `[start, end, start, end, …]`.
#[cfg(feature = "golden")]
#[wasm_bindgen(js_name = experimentBucketRanges)]
pub fn experiment_bucket_ranges(arms: i32, coverage: f64, weights: Option<Vec<f64>>) -> Vec<f64> {
    attune_core::experiments::bucket_ranges(i64::from(arms), coverage, weights.as_deref())
        .into_iter()
        .flat_map(|(start, end)| [start, end])
        .collect()
}

/// attune-core's arm choice over flattened ranges; -1 for none.
#[cfg(feature = "golden")]
#[wasm_bindgen(js_name = experimentChooseArm)]
pub fn experiment_choose_arm(position: f64, ranges: Vec<f64>) -> i32 {
    let ranges: Vec<(f64, f64)> = ranges.chunks(2).map(|r| (r[0], r[1])).collect();
    attune_core::experiments::choose_arm(position, &ranges).map_or(-1, |i| i as i32)
}

/// attune-core's namespace test.
#[cfg(feature = "golden")]
#[wasm_bindgen(js_name = experimentInNamespace)]
pub fn experiment_in_namespace(unit: &str, id: &str, start: f64, end: f64) -> bool {
    let namespace = attune_core::experiments::Namespace {
        id: id.into(),
        start,
        end,
    };
    attune_core::experiments::in_namespace(unit, &namespace)
}
