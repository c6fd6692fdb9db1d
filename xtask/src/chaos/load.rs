//! The load: batches of MessagePack events (attune-core's encoder, as the
//! tracker sends them) for many readers, from several threads, recording
//! what the origin answered for every event id. A tenth of the batches are
//! sent a second time, verbatim, right after their first answer; a batch
//! not acknowledged is resent, as a client does, until it is (or until the
//! load gives up on it, leaving its events unacknowledged).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use attune_core::codec::encode_msgpack;
use attune_core::{Batch, Event, Interaction};

use super::BATCH;

/// The site the harness's origin serves.
pub const SITE_KEY: &str = "chaos";
/// Its API key (profiles are read with it).
pub const API_KEY: &str = "chaos-harness-api-key";

/// Sending threads.
const THREADS: usize = 8;
/// How long one batch is resent before the load gives up on it.
const GIVE_UP: Duration = Duration::from_secs(180);

/// How far the load is, for the fault schedule.
#[derive(Default)]
pub struct Progress {
    sent: AtomicUsize,
    acked: AtomicUsize,
}

impl Progress {
    /// Events sent (first sends).
    pub fn sent(&self) -> usize {
        self.sent.load(Ordering::Relaxed)
    }

    /// Batches acknowledged so far.
    pub fn acked(&self) -> usize {
        self.acked.load(Ordering::Relaxed)
    }
}

/// One reader's events by kind: those acknowledged, and those sent but
/// never acknowledged.
#[derive(Default)]
pub struct Reader {
    pub acked: BTreeMap<&'static str, BTreeSet<uuid::Uuid>>,
    pub unacked: BTreeMap<&'static str, BTreeSet<uuid::Uuid>>,
}

/// What was sent and answered.
#[derive(Default)]
pub struct Ledger {
    pub batches_sent: usize,
    pub acked_batches: usize,
    pub resends: usize,
    /// Answers by status (`"202"`, `"503"`, `"error"` for no answer).
    pub answers: BTreeMap<String, usize>,
    /// By reader (the origin's user id).
    pub readers: BTreeMap<String, Reader>,
}

impl Ledger {
    fn merge(&mut self, other: Ledger) {
        self.batches_sent += other.batches_sent;
        self.acked_batches += other.acked_batches;
        self.resends += other.resends;
        for (k, n) in other.answers {
            *self.answers.entry(k).or_default() += n;
        }
        for (user, r) in other.readers {
            let mine = self.readers.entry(user).or_default();
            for (kind, ids) in r.acked {
                mine.acked.entry(kind).or_default().extend(ids);
            }
            for (kind, ids) in r.unacked {
                mine.unacked.entry(kind).or_default().extend(ids);
            }
            // Acknowledged on any thread is acknowledged.
            for (kind, acked) in &mine.acked {
                if let Some(u) = mine.unacked.get_mut(kind) {
                    u.retain(|id| !acked.contains(id));
                }
            }
        }
    }

    fn record(&mut self, user: &str, batch: &Batch, acked: bool) {
        let reader = self.readers.entry(user.to_owned()).or_default();
        for e in &batch.events {
            let kind = e.kind().as_str();
            if acked {
                reader.acked.entry(kind).or_default().insert(e.id);
                if let Some(u) = reader.unacked.get_mut(kind) {
                    u.remove(&e.id);
                }
            } else if !reader.acked.get(kind).is_some_and(|a| a.contains(&e.id)) {
                reader.unacked.entry(kind).or_default().insert(e.id);
            }
        }
    }
}

/// A small xorshift generator: the load's choices need no quality.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64
}

fn batch_for(reader: usize, rng: &mut Rng) -> Batch {
    let now = now_ms();
    let events = (0..BATCH)
        .map(|i| Event {
            id: uuid::Uuid::now_v7(),
            ts_ms: now + i as i64,
            interaction: match rng.below(3) {
                0 => Interaction::PageView,
                1 => Interaction::Click,
                _ => Interaction::Impression,
            },
            item: Some(format!("i{}", rng.below(200))),
            context: None,
            slot: None,
        })
        .collect();
    Batch {
        site_key: SITE_KEY.into(),
        anonymous_id: format!("c{reader}"),
        user_token: None,
        sent_at_ms: now,
        dropped: 0,
        events,
    }
}

/// One POST; the status, or `"error"` when no answer came.
fn post(agent: &ureq::Agent, url: &str, body: &[u8]) -> String {
    match agent
        .post(url)
        .set("content-type", "application/msgpack")
        .send_bytes(body)
    {
        Ok(r) => r.status().to_string(),
        Err(ureq::Error::Status(code, _)) => code.to_string(),
        Err(ureq::Error::Transport(_)) => "error".into(),
    }
}

/// Sends `events` for `users` readers from [`THREADS`] threads.
pub fn run(origin: &str, events: usize, users: usize, progress: &Progress) -> Result<Ledger> {
    let batches = events.div_ceil(BATCH);
    let url = format!("{origin}/v1/events");
    let ledgers: Vec<Ledger> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let url = url.as_str();
                scope.spawn(move || {
                    let agent = ureq::AgentBuilder::new()
                        .timeout(Duration::from_secs(10))
                        .build();
                    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (t as u64 + 1));
                    let mut ledger = Ledger::default();
                    for b in (t..batches).step_by(THREADS) {
                        let reader = b % users;
                        let user = format!("anon:c{reader}");
                        let batch = batch_for(reader, &mut rng);
                        let body = encode_msgpack(&batch);
                        send_until_acked(&agent, url, &user, &batch, &body, &mut ledger, progress);
                        progress
                            .sent
                            .fetch_add(batch.events.len(), Ordering::Relaxed);
                        if rng.below(10) == 0 {
                            // A client's retry of what it already sent.
                            let status = post(&agent, url, &body);
                            ledger.record(&user, &batch, status == "202");
                            *ledger.answers.entry(status).or_default() += 1;
                            ledger.resends += 1;
                        }
                    }
                    ledger
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a load thread panicked"))
            .collect()
    });
    let mut all = Ledger::default();
    for l in ledgers {
        all.merge(l);
    }
    Ok(all)
}

fn send_until_acked(
    agent: &ureq::Agent,
    url: &str,
    user: &str,
    batch: &Batch,
    body: &[u8],
    ledger: &mut Ledger,
    progress: &Progress,
) {
    let start = Instant::now();
    let mut backoff = Duration::from_millis(50);
    ledger.batches_sent += 1;
    loop {
        let status = post(agent, url, body);
        let acked = status == "202";
        ledger.record(user, batch, acked);
        *ledger.answers.entry(status).or_default() += 1;
        if acked {
            ledger.acked_batches += 1;
            progress.acked.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if start.elapsed() > GIVE_UP {
            return;
        }
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}
