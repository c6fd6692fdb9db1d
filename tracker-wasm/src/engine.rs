//! The tracker's engine: everything but the DOM. It turns what the page
//! reports (a view, a click, scroll progress, visibility, activity) into
//! attune-core events, queues them, cuts MessagePack batches, decides retries,
//! and serializes what is unsent for localStorage. Plain Rust, so it is
//! unit-tested natively; `lib.rs` exposes it to JavaScript.

use attune_core::codec::encode_msgpack;
use attune_core::{Batch, Context, Event, Interaction, Slot, Viewport};
use uuid::Uuid;

/// An impression needs this long at ≥ 50 % visibility.
pub const IMPRESSION_MS: f64 = 1000.0;
/// Retry backoff: first delay and cap.
const BACKOFF_FIRST_MS: f64 = 1000.0;
const BACKOFF_MAX_MS: f64 = 60_000.0;

/// Limits of the queue and the batches.
#[derive(Debug, Clone)]
pub struct Config {
    /// Site key.
    pub site_key: String,
    /// Anonymous id of this browser.
    pub anonymous_id: String,
    /// Most events per batch.
    pub max_batch_events: usize,
    /// Largest batch in bytes (a keepalive fetch may carry 64 KB).
    pub max_batch_bytes: usize,
    /// Most events kept unsent (memory and localStorage); the oldest go first.
    pub max_stored_events: usize,
}

/// What the engine follows about the page (key `""`) or one item's element.
/// One struct in one Vec sorted by key: a map type measured ~2 KB more wasm,
/// and a scan per lookup made the first visibility callback over 2,000
/// items take ~20 ms.
#[derive(Debug, Default, Clone)]
struct Element {
    key: String,
    scroll_max: u8,
    scroll_reported: u8,
    /// In view (≥ 50 %), or it is the page.
    in_view: bool,
    /// Since when visible time is being counted (in view and person active).
    since: Option<f64>,
    /// Visible time not yet reported.
    acc_ms: f64,
    /// A recommended item: since when it has been ≥ 50 % visible.
    shown_since: Option<f64>,
    impressed: bool,
    /// A recommended item: the rail slot it was shown in.
    slot: Option<Slot>,
}

/// The engine.
pub struct Engine {
    config: Config,
    user_token: Option<String>,
    /// Oldest first (a Vec, not a VecDeque: ~1.5 KB less wasm; queues are short).
    queue: Vec<Event>,
    in_flight: Vec<Event>,
    /// Events dropped (storage full) not yet reported to the server.
    dropped: u32,
    dropped_in_flight: u32,
    failures: u32,
    rng: u64,
    context: Context,
    active: bool,
    elements: Vec<Element>,
}

impl Engine {
    /// A new engine; `seed` comes from `crypto.getRandomValues`.
    pub fn new(config: Config, seed: u64) -> Self {
        Engine {
            config,
            user_token: None,
            queue: Vec::new(),
            in_flight: Vec::new(),
            dropped: 0,
            dropped_in_flight: 0,
            failures: 0,
            rng: seed | 1,
            context: Context::default(),
            active: true,
            elements: Vec::new(),
        }
    }

    /// The element followed under `key`, added if new (binary search; never
    /// `None` in fact, but an `Option` has no panic path, −72 B of wasm).
    fn element(&mut self, key: &str) -> Option<&mut Element> {
        let at = match self.elements.binary_search_by(|e| e.key.as_str().cmp(key)) {
            Ok(at) => at,
            Err(at) => {
                self.elements.push(Element {
                    key: key.to_owned(),
                    ..Element::default()
                });
                let len = self.elements.len();
                let p = self.elements.as_mut_ptr();
                // SAFETY: at < len (binary_search's Err is ≤ the old length);
                // the new last element moves to `at`, the rest up by one —
                // `insert` without its formatted panic (~1 KB of wasm).
                unsafe {
                    let new = std::ptr::read(p.add(len - 1));
                    std::ptr::copy(p.add(at), p.add(at + 1), len - 1 - at);
                    std::ptr::write(p.add(at), new);
                }
                at
            }
        };
        self.elements.get_mut(at)
    }

    /// xorshift64*: ids need uniqueness, not secrecy; the seed is crypto-random.
    fn next_random(&mut self) -> u64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn new_id(&mut self, now: f64) -> Uuid {
        let (a, b) = (self.next_random(), self.next_random());
        let mut random = [0u8; 10];
        for (i, byte) in random.iter_mut().enumerate() {
            let word = if i < 8 {
                a >> (8 * i)
            } else {
                b >> (8 * (i - 8))
            };
            *byte = word as u8;
        }
        uuid::Builder::from_unix_timestamp_millis(now as u64, &random).into_uuid()
    }

    /// Sets or clears the signed user token sent with every batch.
    pub fn identify(&mut self, token: Option<String>) {
        self.user_token = token;
    }

    /// Queues an event (dropping the oldest when storage is full); `slot`:
    /// the rail slot of a recommended item clicked or shown.
    pub fn push(
        &mut self,
        interaction: Interaction,
        item: Option<String>,
        slot: Option<Slot>,
        now: f64,
    ) {
        let id = self.new_id(now);
        let context = matches!(interaction, Interaction::PageView).then(|| self.context.clone());
        self.queue.push(Event {
            id,
            ts_ms: now as i64,
            interaction,
            item,
            context,
            slot,
        });
        let over = (self.queue.len() + self.in_flight.len())
            .saturating_sub(self.config.max_stored_events)
            .min(self.queue.len());
        if over > 0 {
            self.queue = self.queue.split_off(over);
            self.dropped += over as u32;
        }
    }

    /// A page (or SPA route) is shown: closes the previous page's scroll and
    /// dwell, then records the view. `item`: the item the page shows (empty:
    /// none, and the page's key in the per-element list is `""`); the
    /// view carries it, and the page is followed as that item's element (the
    /// caller reports page scroll under the item's key), so its scroll depth
    /// and visible time are the item's — once, also when the page marks the
    /// item's element too.
    pub fn page_view(
        &mut self,
        path: String,
        referrer: Option<String>,
        viewport: (u16, u16),
        item: &str,
        now: f64,
    ) {
        self.flush_page(now);
        self.elements.clear();
        self.context = Context {
            path: Some(path),
            referrer: referrer.filter(|r| !r.is_empty()),
            viewport: Some(Viewport {
                width: viewport.0,
                height: viewport.1,
            }),
            // Left to the server, which parses the User-Agent.
            device: None,
        };
        let page_item = (!item.is_empty()).then(|| item.to_owned());
        self.push(Interaction::PageView, page_item, None, now);
        self.set_in_view(item, true, now);
    }

    /// Scroll progress of the page (`key` empty) or an item, in percent.
    pub fn scroll(&mut self, key: &str, pct: f64) {
        let pct = pct.clamp(0.0, 100.0) as u8;
        if let Some(e) = self.element(key) {
            e.scroll_max = e.scroll_max.max(pct);
        }
    }

    /// The person became active (tab visible, focused, not idle) or inactive.
    pub fn set_active(&mut self, active: bool, now: f64) {
        if active == self.active {
            return;
        }
        self.active = active;
        for e in self.elements.iter_mut() {
            Self::retime(e, active, now);
        }
    }

    /// An item's element entered or left the view (≥ 50 %).
    pub fn set_in_view(&mut self, key: &str, in_view: bool, now: f64) {
        let active = self.active;
        if let Some(e) = self.element(key) {
            e.in_view = in_view;
            Self::retime(e, active, now);
        }
    }

    fn retime(d: &mut Element, counting: bool, now: f64) {
        let counting = counting && d.in_view;
        match (d.since, counting) {
            (Some(since), false) => {
                d.acc_ms += (now - since).max(0.0);
                d.since = None;
            }
            (None, true) => d.since = Some(now),
            _ => {}
        }
    }

    /// A recommended item is ≥ 50 % visible (`true`) or not any more;
    /// `slot`: the rail slot it is shown in, if the page says.
    pub fn impression(&mut self, item: &str, slot: Option<Slot>, visible: bool, now: f64) {
        if let Some(e) = self.element(item) {
            e.slot = slot;
            e.shown_since = if visible {
                e.shown_since.or(Some(now))
            } else {
                None
            };
        }
    }

    /// Emits impressions that have lasted [`IMPRESSION_MS`]; call every few hundred ms.
    pub fn tick(&mut self, now: f64) {
        if !self.active {
            return;
        }
        let mut due = Vec::new();
        for e in self.elements.iter_mut() {
            if !e.impressed && e.shown_since.is_some_and(|t| now - t >= IMPRESSION_MS) {
                e.impressed = true;
                due.push((e.key.clone(), e.slot.clone()));
            }
        }
        for (item, slot) in due {
            self.push(Interaction::Impression, Some(item), slot, now);
        }
    }

    /// Emits the scroll depth and visible time not yet reported (on page hide
    /// and before the next page view): one event per page/item, not per scroll.
    pub fn flush_page(&mut self, now: f64) {
        let mut out = Vec::new();
        for e in self.elements.iter_mut() {
            let item = (!e.key.is_empty()).then(|| e.key.clone());
            if e.scroll_max > e.scroll_reported {
                e.scroll_reported = e.scroll_max;
                let depth_pct = e.scroll_max;
                out.push((Interaction::Scroll { depth_pct }, item.clone()));
            }
            if let Some(since) = e.since {
                e.acc_ms += (now - since).max(0.0);
                e.since = Some(now);
            }
            if e.acc_ms >= 1.0 {
                let visible_ms = e.acc_ms.min(f64::from(u32::MAX)) as u32;
                e.acc_ms = 0.0;
                out.push((Interaction::Dwell { visible_ms }, item));
            }
        }
        for (interaction, item) in out {
            self.push(interaction, item, None, now);
        }
    }

    /// Events waiting to be sent.
    pub fn pending(&self) -> usize {
        self.queue.len()
    }

    fn batch(&self, events: Vec<Event>, dropped: u32, now: f64) -> Batch {
        Batch {
            site_key: self.config.site_key.clone(),
            anonymous_id: self.config.anonymous_id.clone(),
            user_token: self.user_token.clone(),
            sent_at_ms: now as i64,
            dropped,
            events,
        }
    }

    /// Cuts the next batch (at most `max_bytes`) and marks its events in
    /// flight; `None` when nothing waits or a batch is already in flight.
    ///
    /// `keep`: the queued events (not those in flight) as a batch, left
    /// queued — what a page leaving while a batch is in flight sends with
    /// keepalive. The ids are the queue's, so the server drops whichever copy
    /// arrives second; the dropped count goes only with the batch that takes
    /// the events off the queue, so it is counted once.
    pub fn next_batch(&mut self, now: f64, max_bytes: usize, keep: bool) -> Option<Vec<u8>> {
        if self.queue.is_empty() || !(keep || self.in_flight.is_empty()) {
            return None;
        }
        let dropped = if keep { 0 } else { self.dropped };
        let mut n = self.queue.len().min(self.config.max_batch_events);
        let max_bytes = max_bytes.min(self.config.max_batch_bytes);
        loop {
            let events: Vec<Event> = self.queue.iter().take(n).cloned().collect();
            let bytes = encode_msgpack(&self.batch(events, dropped, now));
            if bytes.len() <= max_bytes || n == 1 {
                if !keep {
                    let mut taken = std::mem::take(&mut self.queue);
                    self.queue = taken.split_off(n.min(taken.len()));
                    self.in_flight = taken;
                    self.dropped_in_flight = std::mem::take(&mut self.dropped);
                }
                return Some(bytes);
            }
            n /= 2;
        }
    }

    /// The answer to the batch in flight; returns the delay before the next
    /// attempt in ms (0: send on as usual). Network errors (status 0), 5xx and
    /// 429 requeue the events with the same ids and back off (honouring
    /// Retry-After); other 4xx drop them, as resending cannot help.
    pub fn batch_result(&mut self, status: u16, retry_after_s: f64) -> f64 {
        if self.in_flight.is_empty() {
            return 0.0;
        }
        let events = std::mem::take(&mut self.in_flight);
        let retryable = status == 0 || status == 429 || status >= 500;
        if (200..300).contains(&status) || !retryable {
            self.failures = 0;
            self.dropped_in_flight = 0;
            return 0.0;
        }
        let later = std::mem::replace(&mut self.queue, events);
        self.queue.extend(later);
        self.dropped += std::mem::take(&mut self.dropped_in_flight);
        self.failures += 1;
        if retry_after_s > 0.0 {
            return (retry_after_s * 1000.0).min(BACKOFF_MAX_MS);
        }
        let exp = BACKOFF_FIRST_MS * 2f64.powi(self.failures.min(16) as i32 - 1);
        let jitter = 0.5 + (self.next_random() >> 11) as f64 / (1u64 << 53) as f64;
        exp.min(BACKOFF_MAX_MS) * jitter
    }

    /// Everything unsent (queued and in flight), for localStorage.
    pub fn snapshot(&self) -> Vec<u8> {
        let events: Vec<&Event> = self.in_flight.iter().chain(&self.queue).collect();
        crate::storage::encode(&events, self.dropped + self.dropped_in_flight)
    }

    /// Requeues what a snapshot held (ids kept, so resends deduplicate).
    pub fn restore(&mut self, bytes: &[u8]) -> bool {
        let Some((events, dropped)) = crate::storage::decode(bytes) else {
            return false;
        };
        self.dropped += dropped;
        self.queue.extend(events);
        let excess = self
            .queue
            .len()
            .saturating_sub(self.config.max_stored_events);
        self.queue.drain(..excess);
        self.dropped += excess as u32;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use attune_core::codec::decode_msgpack;
    use attune_core::{EventKind, Limits};

    fn engine() -> Engine {
        Engine::new(
            Config {
                site_key: "news".into(),
                anonymous_id: "anon-1".into(),
                max_batch_events: 50,
                max_batch_bytes: 60_000,
                max_stored_events: 100,
            },
            42,
        )
    }

    const T0: f64 = 1_800_000_000_000.0;

    fn sent(e: &mut Engine, now: f64) -> Batch {
        let bytes = e.next_batch(now, 65_536, false).expect("a batch");
        decode_msgpack(&bytes, &Limits::default()).expect("valid batch")
    }

    #[test]
    fn dwell_counts_only_visible_active_time() {
        let mut e = engine();
        e.page_view("/a".into(), None, (800, 600), "", T0);
        e.set_active(false, T0 + 1000.0); // hidden after 1 s
        e.set_active(true, T0 + 5000.0); // back 4 s later
        e.flush_page(T0 + 7000.0); // 2 s more
        let b = sent(&mut e, T0 + 7000.0);
        let dwell: Vec<_> = b
            .events
            .iter()
            .filter(|e| e.kind() == EventKind::Dwell)
            .collect();
        assert_eq!(dwell.len(), 1);
        assert_eq!(
            dwell[0].interaction,
            Interaction::Dwell { visible_ms: 3000 }
        );
    }

    #[test]
    fn scroll_is_reported_once_with_its_maximum() {
        let mut e = engine();
        e.page_view("/a".into(), None, (800, 600), "", T0);
        for pct in [10.0, 55.0, 40.0, 80.0, 20.0] {
            e.scroll("", pct);
        }
        e.flush_page(T0 + 100.0);
        e.flush_page(T0 + 200.0);
        let b = sent(&mut e, T0 + 300.0);
        let scrolls: Vec<_> = b
            .events
            .iter()
            .filter(|e| e.kind() == EventKind::Scroll)
            .collect();
        assert_eq!(scrolls.len(), 1);
        assert_eq!(
            scrolls[0].interaction,
            Interaction::Scroll { depth_pct: 80 }
        );
    }

    #[test]
    fn the_pages_item_is_on_its_view_scroll_and_dwell_once() {
        let mut e = engine();
        let article = Some("article-7".to_owned());
        e.page_view("/a/7".into(), None, (800, 600), "article-7", T0);
        e.scroll("article-7", 90.0);
        e.flush_page(T0 + 4000.0);
        let b = sent(&mut e, T0 + 4000.0);
        let kinds: Vec<_> = b
            .events
            .iter()
            .map(|e| (e.kind(), e.item.clone()))
            .collect();
        assert_eq!(
            kinds,
            [
                (EventKind::PageView, article.clone()),
                (EventKind::Scroll, article.clone()),
                (EventKind::Dwell, article.clone()),
            ]
        );
        let _ = e.batch_result(202, 0.0);

        // The page marks the article's element too: its own time counts, once.
        e.page_view("/a/7".into(), None, (800, 600), "article-7", T0 + 5000.0);
        e.set_in_view("article-7", true, T0 + 5000.0);
        e.flush_page(T0 + 8000.0);
        let b = sent(&mut e, T0 + 8000.0);
        // (The first page's last second closes with the second view.)
        let dwell: Vec<_> = b
            .events
            .iter()
            .filter(|e| e.kind() == EventKind::Dwell && e.ts_ms == (T0 + 8000.0) as i64)
            .collect();
        assert_eq!(dwell.len(), 1, "{dwell:?}");
        assert_eq!(dwell[0].item, article);
        assert_eq!(
            dwell[0].interaction,
            Interaction::Dwell { visible_ms: 3000 }
        );
    }

    #[test]
    fn impressions_need_a_full_second_in_view() {
        let mut e = engine();
        let slot = Some(Slot {
            serve_id: "edge.1".into(),
            position: 4,
        });
        e.impression("r1", slot.clone(), true, T0);
        e.impression("r2", None, true, T0);
        e.impression("r2", None, false, T0 + 500.0);
        e.tick(T0 + 1000.0);
        e.tick(T0 + 2000.0);
        let b = sent(&mut e, T0 + 2000.0);
        let items: Vec<_> = b.events.iter().map(|e| e.item.as_deref()).collect();
        assert_eq!(items, [Some("r1")]);
        assert_eq!(b.events[0].slot, slot, "the impression names its rail slot");
    }

    #[test]
    fn failures_requeue_with_the_same_ids_and_4xx_drops() {
        let mut e = engine();
        e.push(Interaction::Click, Some("a".into()), None, T0);
        let first = sent(&mut e, T0);
        let delay = e.batch_result(503, 0.0);
        assert!((500.0..=1500.0).contains(&delay), "{delay}");
        assert_eq!(e.batch_result(0, 0.0), 0.0, "nothing in flight: no-op");
        let again = sent(&mut e, T0 + 2000.0);
        assert_eq!(first.events, again.events);
        assert_eq!(e.batch_result(429, 7.0), 7000.0);
        let _ = sent(&mut e, T0 + 9000.0);
        assert_eq!(e.batch_result(400, 0.0), 0.0);
        assert_eq!(e.pending(), 0);
    }

    #[test]
    fn storage_is_bounded_and_drops_are_reported() {
        let mut e = engine();
        for _ in 0..130 {
            e.push(Interaction::Click, Some("a".into()), None, T0);
        }
        assert_eq!(e.pending(), 100);
        let b = sent(&mut e, T0);
        assert_eq!(b.dropped, 30);
        assert_eq!(b.events.len(), 50);
    }

    #[test]
    fn snapshots_restore_the_same_events() {
        let mut e = engine();
        e.push(Interaction::Click, Some("a".into()), None, T0);
        e.push(Interaction::PageView, None, None, T0);
        let _ = e.next_batch(T0, 65_536, false);
        let snap = e.snapshot();
        let mut f = engine();
        assert!(f.restore(&snap));
        let b = sent(&mut f, T0 + 1.0);
        let ids: Vec<_> = b.events.iter().map(|e| e.id).collect();
        let _ = e.batch_result(0, 0.0);
        let orig = sent(&mut e, T0 + 1.0);
        assert_eq!(ids, orig.events.iter().map(|e| e.id).collect::<Vec<_>>());
        assert!(!f.restore(b"garbage"));
    }

    #[test]
    fn batches_stay_under_the_byte_limit() {
        let mut e = engine();
        for i in 0..50 {
            e.push(
                Interaction::Click,
                Some(format!("item-{i:0>100}")),
                None,
                T0,
            );
        }
        let bytes = e.next_batch(T0, 2000, false).unwrap();
        assert!(bytes.len() <= 2000);
        assert!(e.pending() > 0);
    }

    #[test]
    fn an_unload_copy_leaves_the_queue_as_it_was_and_carries_its_ids() {
        let mut e = engine();
        e.push(Interaction::Click, Some("a".into()), None, T0);
        let first = sent(&mut e, T0);
        e.push(Interaction::Click, Some("b".into()), None, T0 + 1.0);
        let copy = e.next_batch(T0 + 2.0, 65_536, true).expect("b is queued");
        let copy = decode_msgpack(&copy, &Limits::default()).expect("valid batch");
        assert_eq!(e.pending(), 1, "still queued");
        assert_eq!(copy.events.len(), 1);
        assert_ne!(
            copy.events[0].id, first.events[0].id,
            "not the batch in flight"
        );
        e.batch_result(202, 0.0);
        let later = sent(&mut e, T0 + 3.0);
        assert_eq!(later.events[0].id, copy.events[0].id, "the same id again");
    }

    #[test]
    fn each_of_many_elements_keeps_its_own_time() {
        let mut e = engine();
        // Fewer than the 100 stored events, in no order.
        let keys: Vec<String> = (0..90)
            .map(|i| format!("item-{}", (i * 7919) % 1000))
            .collect();
        for (n, k) in keys.iter().enumerate() {
            e.set_in_view(k, true, T0 + n as f64);
        }
        for k in &keys {
            e.set_in_view(k, false, T0 + 1_000.0);
        }
        e.flush_page(T0 + 1_000.0);
        let batch = sent(&mut e, T0 + 1_000.0);
        assert_eq!(batch.events.len(), 50, "a full batch");
        for ev in &batch.events {
            let item = ev.item.as_deref().expect("an item");
            let n = keys.iter().position(|k| k == item).expect("a followed key");
            assert_eq!(
                ev.interaction,
                Interaction::Dwell {
                    visible_ms: 1_000 - n as u32
                }
            );
        }
        assert_eq!(e.pending(), 40, "one dwell per element");
    }
}
