//! `cargo xtask bench ingest`: events/s the origin accepts (batches of 20
//! over loopback HTTP, Kafka acks and all), side by side in one run with
//!  (a) a bare rdkafka producer sending the same records straight to the broker,
//!  (b) an axum handler that decodes the batch and answers 202 without Kafka,
//! at two loads: 32 concurrent senders, and 256 (where the two cores are
//! saturated rather than the senders waiting on acks); then p50/p99 latency of
//! the origin at 50 % of its measured maximum, beside the bare producer's alone
//! and with the same HTTP load beside it. Writes `target/bench/ingest.json`.
//! Batches carry browsers' User-Agents, so the origin does all its enrichment.
//!
//! `ATTUNE_KAFKA_LINGER_MS` sets linger.ms for both Kafka sides, as for the
//! origin. For profiling: `ATTUNE_INGEST_ONLY=<origin|bare|decode>[:senders]`
//! runs one side alone (`ATTUNE_INGEST_RUNS` times), and
//! `ATTUNE_INGEST_LATENCY_AT=<batches/s>` only the latency runs.
//!
//! Everything runs in this one process on the same cores, so the ratios
//! compare like with like on a shared, noisy machine. The load generator
//! shares those cores too, which sets a ceiling no origin can pass: one HTTP
//! round trip (as (b) costs it) plus one produce (as (a) costs it) per batch.
//! That ceiling is reported beside the ratio.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use attune_core::codec::{decode_msgpack, encode_msgpack};
use attune_core::{Batch, Event, Interaction, Limits};
use attune_origin::config::ServeArgs;
use attune_origin::event_log::kafka::producer_config;
use attune_origin::ingest::enrich::{self, Sender};
use attune_origin::AppState;
use axum::body::Bytes;
use axum::http::StatusCode;
use futures::future::join_all;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rdkafka::producer::{FutureProducer, FutureRecord};

/// The origin binary's allocator, so the origin measured here is the one shipped.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EVENTS_PER_BATCH: usize = 20;

/// The three sides, as the output names them.
const ORIGIN: &str = "origin /v1/events (Kafka)";
const BARE: &str = "(a) bare rdkafka producer";
const DECODE_ONLY: &str = "(b) axum decode-only, no Kafka";

/// (topic, key, payload) of one message the bare producer sends.
type Record = (&'static str, String, Vec<u8>);
/// Concurrent senders (HTTP connections, or producer tasks for the bare side)
/// of the first comparison, as many browsers' batches overlap at a busy site.
const CONCURRENCY: usize = 32;
/// Concurrent senders that saturate the two cores. At 32, both Kafka sides are
/// partly bound by the ack round trip, so linger.ms moves their ratio.
const SATURATING_CONCURRENCY: usize = 256;
/// Rounds of the saturated comparison.
const SATURATED_ROUNDS: usize = 3;
const RUN: Duration = Duration::from_secs(6);
/// Measured rounds (after one warm-up of the Kafka paths).
const ROUNDS: usize = 5;
const WARMUP: Duration = Duration::from_secs(1);

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The browsers of the load, batch `i` from `USER_AGENTS[i % len]`: the origin
/// parses each into the device class, browser and OS of its records.
const USER_AGENTS: [&str; 6] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (iPad; CPU OS 17_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1",
];

fn user_agent(batch: usize) -> &'static str {
    USER_AGENTS[batch % USER_AGENTS.len()]
}

/// Distinct batches of 20 mixed events from 500 users.
fn batches(site: &str, n: usize) -> Vec<Batch> {
    (0..n)
        .map(|b| {
            let ts = now_ms();
            let events = (0..EVENTS_PER_BATCH)
                .map(|i| Event {
                    id: uuid::Uuid::now_v7(),
                    ts_ms: ts,
                    interaction: match i % 4 {
                        0 => Interaction::PageView,
                        1 => Interaction::Click,
                        2 => Interaction::Scroll { depth_pct: 60 },
                        _ => Interaction::Dwell { visible_ms: 12_000 },
                    },
                    item: Some(format!("article-{}", (b * 7 + i) % 200)),
                    context: None,
                    slot: None,
                })
                .collect();
            Batch {
                site_key: site.into(),
                anonymous_id: format!("user-{}", b % 500),
                user_token: None,
                sent_at_ms: ts,
                dropped: 0,
                events,
            }
        })
        .collect()
}

/// Runs `op(worker, payload)` from `concurrency` workers for RUN (after
/// WARMUP); events/s.
async fn closed_loop<F, Fut>(name: &str, concurrency: usize, n_payloads: usize, op: F) -> f64
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let op = Arc::new(op);
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let measure_from = start + WARMUP;
    let end = measure_from + RUN;
    let workers = (0..concurrency).map(|w| {
        let (op, done, failed) = (op.clone(), done.clone(), failed.clone());
        tokio::spawn(async move {
            let mut i = w;
            while Instant::now() < end {
                let ok = op(w, i % n_payloads).await;
                if Instant::now() >= measure_from {
                    if ok {
                        done.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                i += concurrency;
            }
        })
    });
    join_all(workers).await;
    let batches = done.load(Ordering::Relaxed) as f64;
    let events_per_s = batches * EVENTS_PER_BATCH as f64 / RUN.as_secs_f64();
    let failed = failed.load(Ordering::Relaxed);
    println!("  {name:<28} {events_per_s:>10.0} events/s  ({failed} failed requests)");
    events_per_s
}

/// One comparison at a given concurrency: rounds of the three sides back to
/// back in a rotating order. The machine is shared and its speed drifts
/// between rounds, so the ratio is taken within each round (its three runs saw
/// the same machine) and the median round's ratio counts.
struct Comparison {
    concurrency: usize,
    ingest_runs: Vec<f64>,
    bare_runs: Vec<f64>,
    decode_runs: Vec<f64>,
    /// Per round, sorted: ingest ÷ min(a, b).
    ratios: Vec<f64>,
    /// Per round, sorted: the ceiling 1 / (1 / a + 1 / b), HTTP plus produce.
    ceilings: Vec<f64>,
}

impl Comparison {
    async fn run<O, B, OF, BF>(
        concurrency: usize,
        rounds: usize,
        (origin, bare, decode): (O, B, O),
        (n_bodies, n_records): (usize, usize),
    ) -> Comparison
    where
        O: Fn(usize, usize) -> OF + Clone + Send + Sync + 'static,
        OF: std::future::Future<Output = bool> + Send,
        B: Fn(usize, usize) -> BF + Clone + Send + Sync + 'static,
        BF: std::future::Future<Output = bool> + Send,
    {
        println!("  {concurrency} concurrent senders:");
        let (mut ingest_runs, mut bare_runs, mut decode_runs) =
            (Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds {
            println!("   round {}:", round + 1);
            for side in (0..3).map(|k| (k + round) % 3) {
                match side {
                    0 => ingest_runs
                        .push(closed_loop(ORIGIN, concurrency, n_bodies, origin.clone()).await),
                    1 => bare_runs
                        .push(closed_loop(BARE, concurrency, n_records, bare.clone()).await),
                    _ => decode_runs.push(
                        closed_loop(DECODE_ONLY, concurrency, n_bodies, decode.clone()).await,
                    ),
                }
            }
        }
        let mut ratios: Vec<f64> = (0..rounds)
            .map(|r| ingest_runs[r] / bare_runs[r].min(decode_runs[r]))
            .collect();
        let mut ceilings: Vec<f64> = (0..rounds)
            .map(|r| {
                let (a, b) = (bare_runs[r], decode_runs[r]);
                1.0 / (1.0 / a + 1.0 / b) / a.min(b)
            })
            .collect();
        ratios.sort_by(f64::total_cmp);
        ceilings.sort_by(f64::total_cmp);
        let c = Comparison {
            concurrency,
            ingest_runs,
            bare_runs,
            decode_runs,
            ratios,
            ceilings,
        };
        println!(
            "   medians: origin {:.0}, (a) bare producer {:.0}, (b) decode-only {:.0} events/s",
            c.ingest(),
            median(&c.bare_runs),
            median(&c.decode_runs)
        );
        println!("   ingest ÷ min(a, b) per round: {:.2?}", c.ratios);
        println!(
            "   ingest ÷ min(a, b) = {:.2}, the median round (target ≥ 0.7; the ceiling of HTTP + produce here is {:.2})",
            c.ratio(), c.ceiling()
        );
        c
    }

    fn ingest(&self) -> f64 {
        median(&self.ingest_runs)
    }

    fn ratio(&self) -> f64 {
        median(&self.ratios)
    }

    fn ceiling(&self) -> f64 {
        median(&self.ceilings)
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "concurrency": self.concurrency,
            "events_per_second": {"origin_ingest": self.ingest(), "bare_rdkafka_producer": median(&self.bare_runs), "axum_decode_only": median(&self.decode_runs)},
            "runs": {"origin_ingest": self.ingest_runs, "bare_rdkafka_producer": self.bare_runs, "axum_decode_only": self.decode_runs},
            "ingest_over_floor_per_round": self.ratios,
            "ingest_over_floor": self.ratio(),
            "http_plus_produce_ceiling": self.ceiling(),
        })
    }
}

/// Connections of the open-loop latency runs: request `i` goes on connection
/// `i % OPEN_LOOP_CONNECTIONS`, so requests rarely wait for one another.
const OPEN_LOOP_CONNECTIONS: usize = 256;

/// Open loop at `rate` batches/s for RUN: `op(connection, payload)`; latencies in ms.
async fn open_loop<F, Fut>(rate: f64, n_payloads: usize, op: F) -> (Vec<f64>, u64)
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send + 'static,
{
    let op = Arc::new(op);
    let interval = Duration::from_secs_f64(1.0 / rate);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let end = Instant::now() + RUN;
    let mut tasks = Vec::new();
    let mut i = 0;
    while Instant::now() < end {
        tick.tick().await;
        let op = op.clone();
        let (conn, n) = (i % OPEN_LOOP_CONNECTIONS, i % n_payloads);
        tasks.push(tokio::spawn(async move {
            let t0 = Instant::now();
            let ok = op(conn, n).await;
            (t0.elapsed().as_secs_f64() * 1000.0, ok)
        }));
        i += 1;
    }
    let mut latencies = Vec::new();
    let mut failed = 0;
    for t in tasks {
        let (ms, ok) = t.await.unwrap();
        if ok {
            latencies.push(ms);
        } else {
            failed += 1;
        }
    }
    latencies.sort_by(f64::total_cmp);
    (latencies, failed)
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(runs: &[f64]) -> f64 {
    let mut sorted = runs.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .unwrap()
    });
    format!("http://{addr}")
}

/// The throughput load generator: one keep-alive HTTP/1.1 connection per
/// worker, straight on hyper. It is much lighter than reqwest's pool, and it
/// shares the 2 cores with the server under test, so it takes less from it.
struct Connections {
    conns: Vec<tokio::sync::Mutex<SendRequest<Full<Bytes>>>>,
    uri: hyper::Uri,
}

async fn connect(base: &str, path: &str, n: usize) -> anyhow::Result<Arc<Connections>> {
    let uri: hyper::Uri = format!("{base}{path}").parse()?;
    let addr = uri.authority().expect("an address").as_str().to_owned();
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        let stream = tokio::net::TcpStream::connect(&addr).await?;
        stream.set_nodelay(true)?;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        conns.push(tokio::sync::Mutex::new(send));
    }
    Ok(Arc::new(Connections { conns, uri }))
}

/// POSTs body `i` on connection `worker`; true on 202.
fn post_on(
    conns: Arc<Connections>,
    bodies: Arc<Vec<Bytes>>,
) -> impl Fn(usize, usize) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>
       + Send
       + Sync
       + Clone {
    move |worker, i| {
        let (conns, bodies) = (conns.clone(), bodies.clone());
        Box::pin(async move {
            let req = hyper::Request::post(&conns.uri)
                .header("host", "127.0.0.1")
                .header("content-type", "application/msgpack")
                .header("user-agent", user_agent(i))
                .body(Full::new(bodies[i].clone()))
                .expect("a valid request");
            let mut send = conns.conns[worker].lock().await;
            match send.send_request(req).await {
                Ok(resp) => {
                    let ok = resp.status() == StatusCode::ACCEPTED;
                    // Read the reply to its end so the connection is reused.
                    resp.into_body().collect().await.is_ok() && ok
                }
                Err(_) => false,
            }
        })
    }
}

/// Latency under an open loop at one rate: the origin's; the bare producer's
/// alone (an acks=all round trip on this broker); and the bare producer's
/// with the decode-only server taking the same HTTP load alongside. The last
/// is the floor for the origin on these shared cores: the HTTP work delays
/// every thread hop of a Kafka acknowledgement (broker, librdkafka, tokio),
/// which alone moves the bare producer's p99 from ~15 to ~20–35 ms here.
struct Latency {
    rate: f64,
    origin: Vec<f64>,
    failed: u64,
    bare: Vec<f64>,
    bare_beside_http: Vec<f64>,
}

impl Latency {
    async fn measure<B, BF, D, DF>(
        rate: f64,
        origin: &str,
        bodies: Arc<Vec<Bytes>>,
        bare_op: B,
        decode_op: D,
    ) -> anyhow::Result<Latency>
    where
        B: Fn(usize, usize) -> BF + Clone + Send + Sync + 'static,
        BF: std::future::Future<Output = bool> + Send + 'static,
        D: Fn(usize, usize) -> DF + Send + Sync + 'static,
        DF: std::future::Future<Output = bool> + Send + 'static,
    {
        let n = bodies.len();
        let conns = connect(origin, "/v1/events", OPEN_LOOP_CONNECTIONS).await?;
        let (origin, failed) = open_loop(rate, n, post_on(conns, bodies)).await;
        let (bare, _) = open_loop(rate, n, bare_op.clone()).await;
        let ((bare_beside_http, _), _) =
            tokio::join!(open_loop(rate, n, bare_op), open_loop(rate, n, decode_op));
        let l = Latency {
            rate,
            origin,
            failed,
            bare,
            bare_beside_http,
        };
        let p = |v: &[f64]| (percentile(v, 0.5), percentile(v, 0.99));
        let ((o50, o99), (b50, b99), (h50, h99)) =
            (p(&l.origin), p(&l.bare), p(&l.bare_beside_http));
        println!(
            "  origin latency at {rate:.0} batches/s ({} requests, {failed} failed): p50 {o50:.2} ms, p99 {o99:.2} ms (target p99 < 20 ms)",
            l.origin.len(),
        );
        println!(
            "  (a) bare producer at the same load:              p50 {b50:.2} ms, p99 {b99:.2} ms"
        );
        println!("  (a) with (b) taking the same HTTP load alongside: p50 {h50:.2} ms, p99 {h99:.2} ms (the floor on these shared cores)");
        Ok(l)
    }

    fn json(&self) -> serde_json::Value {
        let p = |v: &[f64], q| percentile(v, q);
        serde_json::json!({"batches_per_second": self.rate, "requests": self.origin.len(), "failed": self.failed,
            "p50_ms": p(&self.origin, 0.5), "p99_ms": p(&self.origin, 0.99),
            "bare_producer_p50_ms": p(&self.bare, 0.5), "bare_producer_p99_ms": p(&self.bare, 0.99),
            "bare_producer_beside_http_p50_ms": p(&self.bare_beside_http, 0.5),
            "bare_producer_beside_http_p99_ms": p(&self.bare_beside_http, 0.99)})
    }
}

/// `ATTUNE_INGEST_ONLY=<origin|bare|decode>[:senders]`: one side alone, for
/// profiling it (perf, per-process CPU) without the others in the samples.
async fn profile_one_side<O, B, OF, BF>(
    only: &str,
    origin: O,
    bare: B,
    decode: O,
    (n_bodies, n_records): (usize, usize),
) -> anyhow::Result<()>
where
    O: Fn(usize, usize) -> OF + Clone + Send + Sync + 'static,
    OF: std::future::Future<Output = bool> + Send,
    B: Fn(usize, usize) -> BF + Clone + Send + Sync + 'static,
    BF: std::future::Future<Output = bool> + Send,
{
    let (side, senders) = only.split_once(':').unwrap_or((only, "256"));
    let senders: usize = senders.parse()?;
    for _ in 0..env_or("ATTUNE_INGEST_RUNS", 3) {
        match side {
            "origin" => closed_loop(ORIGIN, senders, n_bodies, origin.clone()).await,
            "bare" => closed_loop(BARE, senders, n_records, bare.clone()).await,
            "decode" => closed_loop(DECODE_ONLY, senders, n_bodies, decode.clone()).await,
            other => anyhow::bail!("ATTUNE_INGEST_ONLY: `{other}` is not origin, bare or decode"),
        };
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let brokers = std::env::var("KAFKA_BROKERS")
        .map_err(|_| anyhow::anyhow!("KAFKA_BROKERS is not set: run `cargo xtask bench ingest`"))?;
    let redis_url = std::env::var("REDIS_URL")
        .map_err(|_| anyhow::anyhow!("REDIS_URL is not set: run `cargo xtask bench ingest`"))?;
    let site = common::site("bench");
    // The default topics and group; the linger as the origin reads it.
    let args = ServeArgs {
        kafka_linger_ms: env_or("ATTUNE_KAFKA_LINGER_MS", 1),
        consumer_group: "attune-profiles".into(),
        validation_sample: 0.25,
        retrain_every_s: 0,
        ..common::serve_args(&brokers, &redis_url, "")?
    };
    let state = AppState::with_sites(&args, std::slice::from_ref(&site)).await?;
    let origin = serve(attune_origin::router(state)).await;

    // (b): decode with attune-core, answer 202, no Kafka.
    let decode_only = axum::Router::new().route(
        "/v1/events",
        axum::routing::post(|body: Bytes| async move {
            match decode_msgpack(&body, &Limits::default()) {
                Ok(_) => StatusCode::ACCEPTED,
                Err(_) => StatusCode::BAD_REQUEST,
            }
        }),
    );
    let decode_only = serve(decode_only).await;

    let batches = batches(&site.site_key, 4000);
    let bodies: Arc<Vec<Bytes>> = Arc::new(
        batches
            .iter()
            .map(|b| Bytes::from(encode_msgpack(b)))
            .collect(),
    );

    // (a): the same records (one per event, same topic and key) straight to Kafka.
    // The origin's own producer settings, so the two differ only by the origin.
    let producer: FutureProducer =
        producer_config(&brokers, Duration::from_millis(args.kafka_linger_ms)).create()?;
    // The exact records the origin writes for these batches (enriched events).
    let records: Arc<Vec<Vec<Record>>> = Arc::new(
        batches
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let user = format!("anon:{}", b.anonymous_id);
                let sender = Sender {
                    user_id: &user,
                    device: &enrich::parse_user_agent(user_agent(i)),
                    attributes: &Default::default(),
                    attributes_unknown: false,
                };
                enrich::records(b, &sender, b.sent_at_ms)
                    .into_iter()
                    .map(|log| (log.topic, log.key.to_string(), log.payload.to_vec()))
                    .collect()
            })
            .collect(),
    );

    let send_bare = {
        let (producer, records) = (producer.clone(), records.clone());
        move |i: usize| {
            let (producer, records) = (producer.clone(), records.clone());
            async move {
                let sends = records[i].iter().map(|(t, k, p)| {
                    producer.send(
                        FutureRecord::to(t).key(k).payload(p),
                        Duration::from_secs(10),
                    )
                });
                join_all(sends).await.iter().all(Result::is_ok)
            }
        }
    };

    println!(
        "ingest benchmark: batches of {EVENTS_PER_BATCH} events, {}s per run",
        RUN.as_secs()
    );
    let max_conns = CONCURRENCY.max(SATURATING_CONCURRENCY);
    let origin_op = post_on(
        connect(&origin, "/v1/events", max_conns).await?,
        bodies.clone(),
    );
    let decode_op = post_on(
        connect(&decode_only, "/v1/events", max_conns).await?,
        bodies.clone(),
    );
    let bare_op = {
        let send_bare = send_bare.clone();
        move |_worker: usize, i: usize| send_bare(i)
    };
    // `ATTUNE_INGEST_LATENCY_AT=<batches/s>`: only the latency runs, at that rate.
    if let Ok(rate) = std::env::var("ATTUNE_INGEST_LATENCY_AT") {
        Latency::measure(rate.parse()?, &origin, bodies, bare_op, decode_op).await?;
        return Ok(());
    }
    if let Ok(only) = std::env::var("ATTUNE_INGEST_ONLY") {
        return profile_one_side(
            &only,
            origin_op,
            bare_op,
            decode_op,
            (bodies.len(), records.len()),
        )
        .await;
    }
    // The broker (a JVM) warms up on the first load it sees; whichever path
    // ran first would pay for it. Both paths warm up first, unmeasured.
    println!("  warm-up (not counted):");
    closed_loop(ORIGIN, CONCURRENCY, bodies.len(), origin_op.clone()).await;
    closed_loop(BARE, CONCURRENCY, records.len(), bare_op.clone()).await;
    let ops = (origin_op.clone(), bare_op.clone(), decode_op.clone());
    let sizes = (bodies.len(), records.len());
    let moderate = Comparison::run(CONCURRENCY, ROUNDS, ops.clone(), sizes).await;
    let saturated = Comparison::run(SATURATING_CONCURRENCY, SATURATED_ROUNDS, ops, sizes).await;
    let ingest = moderate.ingest().max(saturated.ingest());

    let rate = 0.5 * ingest / EVENTS_PER_BATCH as f64;
    let latency = Latency::measure(rate, &origin, bodies, bare_op, decode_op).await?;
    let json = serde_json::json!({
        "events_per_batch": EVENTS_PER_BATCH,
        "kafka_linger_ms": args.kafka_linger_ms,
        "run_seconds": RUN.as_secs(),
        "at_32_senders": moderate.json(),
        "saturated": saturated.json(),
        "origin_max_events_per_second": ingest,
        "latency_at_half_max": latency.json(),
    });
    common::write_report("ingest", &json)?;
    Ok(())
}
