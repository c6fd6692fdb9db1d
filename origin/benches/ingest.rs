//! `cargo xtask bench ingest`: events/s the origin accepts (batches of 20
//! over loopback HTTP, Kafka acks and all), side by side in one run with
//!  (a) a bare rdkafka producer sending the same records straight to the broker,
//!  (b) an axum handler that decodes the batch and answers 202 without Kafka,
//! then p50/p99 latency of the origin at 50 % of its measured maximum.
//! Writes `target/bench/ingest.json`.
//!
//! Everything runs in this one process on the same cores, so the ratios
//! compare like with like on a shared, noisy machine.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use attune_core::codec::{decode_msgpack, encode_msgpack};
use attune_core::{Batch, Event, Interaction, Limits};
use attune_origin::config::{ServeArgs, SiteConfig};
use attune_origin::ingest::enrich::{self, Sender};
use attune_origin::record::Device;
use attune_origin::AppState;
use axum::body::Bytes;
use axum::http::StatusCode;
use futures::future::join_all;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

const EVENTS_PER_BATCH: usize = 20;

/// (topic, key, payload) of one message the bare producer sends.
type Record = (&'static str, String, Vec<u8>);
const CONCURRENCY: usize = 32;
const RUN: Duration = Duration::from_secs(6);
/// Measured rounds per side (after one warm-up of each).
const ROUNDS: usize = 3;
const WARMUP: Duration = Duration::from_secs(1);

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
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

/// Runs `op` from CONCURRENCY workers for RUN (after WARMUP); events/s.
async fn closed_loop<F, Fut>(name: &str, n_payloads: usize, op: F) -> f64
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let op = Arc::new(op);
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let measure_from = start + WARMUP;
    let end = measure_from + RUN;
    let workers = (0..CONCURRENCY).map(|w| {
        let (op, done, failed) = (op.clone(), done.clone(), failed.clone());
        tokio::spawn(async move {
            let mut i = w;
            while Instant::now() < end {
                let ok = op(i % n_payloads).await;
                if Instant::now() >= measure_from {
                    if ok {
                        done.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                i += CONCURRENCY;
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

/// Open loop at `rate` batches/s for RUN; latencies in ms.
async fn open_loop<F, Fut>(rate: f64, n_payloads: usize, op: F) -> (Vec<f64>, u64)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
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
        let n = i % n_payloads;
        tasks.push(tokio::spawn(async move {
            let t0 = Instant::now();
            let ok = op(n).await;
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

fn median(runs: &mut [f64]) -> f64 {
    runs.sort_by(f64::total_cmp);
    runs[runs.len() / 2]
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

fn post(
    http: reqwest::Client,
    url: String,
    bodies: Arc<Vec<Vec<u8>>>,
) -> impl Fn(usize) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>
       + Send
       + Sync
       + Clone {
    move |i| {
        let req = http
            .post(&url)
            .header("content-type", "application/msgpack")
            .body(bodies[i].clone());
        Box::pin(async move { req.send().await.is_ok_and(|r| r.status() == 202) })
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let brokers = std::env::var("KAFKA_BROKERS")
        .map_err(|_| anyhow::anyhow!("KAFKA_BROKERS is not set: run `cargo xtask bench ingest`"))?;
    let redis_url = std::env::var("REDIS_URL")
        .map_err(|_| anyhow::anyhow!("REDIS_URL is not set: run `cargo xtask bench ingest`"))?;
    let site = SiteConfig {
        site_key: "bench".into(),
        api_key: "bench-secret-api-key".into(),
        token_secret: "bench-token-secret".into(),
        allowed_origins: vec!["*".into()],
    };
    let args = ServeArgs {
        listen: "127.0.0.1:0".parse()?,
        config: None,
        kafka_brokers: Some(brokers.clone()),
        redis_url: Some(redis_url),
        data_dir: "./data".into(),
        max_body_bytes: 256 * 1024,
        rate_per_key: 1_000_000,
        rate_per_ip: 1_000_000,
        produce_timeout_ms: 10_000,
        popularity_half_life_h: 24.0,
        topic_prefix: String::new(),
        affinity_half_life_h: 24.0,
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
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(batches.iter().map(encode_msgpack).collect());
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .build()?;

    // (a): the same records (one per event, same topic and key) straight to Kafka.
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "1")
        .set("compression.type", "lz4")
        .create()?;
    // The exact records the origin writes for these batches (enriched events).
    let records: Arc<Vec<Vec<Record>>> = Arc::new(
        batches
            .iter()
            .map(|b| {
                let user = format!("anon:{}", b.anonymous_id);
                let sender = Sender {
                    user_id: &user,
                    device: &Device::default(),
                    attributes: &Default::default(),
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

    println!("ingest benchmark: batches of {EVENTS_PER_BATCH} events, {CONCURRENCY} concurrent senders, {}s per run", RUN.as_secs());
    // The broker (a JVM) warms up on the first load it sees; whichever path
    // ran first would pay for it. Both paths warm up first, unmeasured.
    println!("  warm-up (not counted):");
    let origin_op = post(http.clone(), format!("{origin}/v1/events"), bodies.clone());
    closed_loop("origin /v1/events (Kafka)", bodies.len(), origin_op.clone()).await;
    closed_loop(
        "(a) bare rdkafka producer",
        records.len(),
        send_bare.clone(),
    )
    .await;
    // Then rounds in alternating order; the median of each side counts, so one
    // noisy run on this shared machine does not decide the ratio.
    let (mut ingest_runs, mut bare_runs) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        println!("  round {}:", round + 1);
        for origin_first in [round % 2 == 0, round % 2 != 0] {
            if origin_first {
                ingest_runs.push(
                    closed_loop("origin /v1/events (Kafka)", bodies.len(), origin_op.clone()).await,
                );
            } else {
                bare_runs.push(
                    closed_loop(
                        "(a) bare rdkafka producer",
                        records.len(),
                        send_bare.clone(),
                    )
                    .await,
                );
            }
        }
    }
    // Each round's two runs share the machine's state of the moment: their
    // ratio is the paired view of the same comparison.
    let mut paired: Vec<f64> = ingest_runs
        .iter()
        .zip(&bare_runs)
        .map(|(i, b)| i / b)
        .collect();
    let paired_median = median(&mut paired);
    let (ingest, bare) = (median(&mut ingest_runs), median(&mut bare_runs));
    println!("  medians: origin {ingest:.0}, bare producer {bare:.0} events/s; per-round origin ÷ bare: {paired:.2?} (median {paired_median:.2})");
    let decode = closed_loop(
        "(b) axum decode-only, no Kafka",
        bodies.len(),
        post(
            http.clone(),
            format!("{decode_only}/v1/events"),
            bodies.clone(),
        ),
    )
    .await;
    let floor = bare.min(decode);
    let ratio = ingest / floor;
    println!("  ingest ÷ min(a, b) = {ratio:.2} (target ≥ 0.7)");

    let rate = 0.5 * ingest / EVENTS_PER_BATCH as f64;
    let (lat, failed) = open_loop(
        rate,
        bodies.len(),
        post(http, format!("{origin}/v1/events"), bodies),
    )
    .await;
    let (p50, p99) = (percentile(&lat, 0.5), percentile(&lat, 0.99));
    println!(
        "  origin latency at 50% of its max ({:.0} batches/s, {} requests, {failed} failed): p50 {p50:.2} ms, p99 {p99:.2} ms (target p99 < 20 ms)",
        rate,
        lat.len()
    );
    // The same load straight to Kafka: the latency floor of an acks=all round trip here.
    let (floor_lat, _) = open_loop(rate, records.len(), send_bare).await;
    let (floor_p50, floor_p99) = (percentile(&floor_lat, 0.5), percentile(&floor_lat, 0.99));
    println!("  (a) bare producer at the same load:               p50 {floor_p50:.2} ms, p99 {floor_p99:.2} ms");

    let json = serde_json::json!({
        "events_per_batch": EVENTS_PER_BATCH,
        "concurrency": CONCURRENCY,
        "run_seconds": RUN.as_secs(),
        "events_per_second": {"origin_ingest": ingest, "bare_rdkafka_producer": bare, "axum_decode_only": decode},
        "runs": {"origin_ingest": ingest_runs, "bare_rdkafka_producer": bare_runs, "paired_ratios": paired, "paired_ratio_median": paired_median},
        "ingest_over_floor": ratio,
        "latency_at_half_max": {"batches_per_second": rate, "requests": lat.len(), "failed": failed, "p50_ms": p50, "p99_ms": p99,
            "bare_producer_p50_ms": floor_p50, "bare_producer_p99_ms": floor_p99},
    });
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(
        out.join("ingest.json"),
        serde_json::to_string_pretty(&json)?,
    )?;
    println!("  wrote target/bench/ingest.json");
    Ok(())
}
