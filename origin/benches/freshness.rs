//! `cargo xtask bench freshness`: the consistency window. Under a steady
//! ingest load, how long after an event's 202 its effect shows in
//! `GET /v1/profile` (the consumer → Redis path). Runs on its own topics with
//! its own consumer process. Writes target/bench/freshness.json.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use attune_core::codec::encode_msgpack;
use attune_core::routing::{topics, CONSUMER_OUTPUTS, PARTITIONS_PER_TOPIC};
use attune_core::{Batch, Event, Interaction};
use attune_origin::config::{ServeArgs, SiteConfig};
use attune_origin::AppState;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;

const LOAD_BATCHES_PER_S: u64 = 100;
const EVENTS_PER_BATCH: usize = 10;
const PROBES: usize = 200;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn batch(site: &str, anon: &str, n: usize) -> Vec<u8> {
    let t = now_ms();
    let events = (0..n)
        .map(|i| Event {
            id: uuid::Uuid::now_v7(),
            ts_ms: t,
            interaction: if i % 2 == 0 {
                Interaction::Click
            } else {
                Interaction::PageView
            },
            item: Some(format!("article-{}", i % 50)),
            context: None,
        })
        .collect();
    encode_msgpack(&Batch {
        site_key: site.into(),
        anonymous_id: anon.into(),
        user_token: None,
        sent_at_ms: t,
        dropped: 0,
        events,
    })
}

/// True once `user`'s recommendations come from the model and leave out the
/// item their probe clicked (`article-0`).
async fn recs_reflect_click(http: &reqwest::Client, base: &str, user: &str) -> bool {
    let Ok(r) = http
        .get(format!("{base}/v1/recommendations?user=anon:{user}&k=50"))
        .bearer_auth("fresh-secret-api-key")
        .send()
        .await
    else {
        return false;
    };
    let Ok(v) = r.json::<serde_json::Value>().await else {
        return false;
    };
    v["model"] == "covisit+mf+popularity"
        && v["items"]
            .as_array()
            .is_some_and(|items| !items.iter().any(|i| i["item"] == "article-0"))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let brokers = std::env::var("KAFKA_BROKERS")
        .map_err(|_| anyhow::anyhow!("run `cargo xtask bench freshness`"))?;
    let redis_url = std::env::var("REDIS_URL")
        .map_err(|_| anyhow::anyhow!("run `cargo xtask bench freshness`"))?;
    let run_id = uuid::Uuid::now_v7().simple().to_string()[20..].to_owned();
    let prefix = format!("fresh{run_id}.");
    // Its own site too, so the audit at the end counts this run's ledger only.
    let site_key = format!("fresh{run_id}");
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()?;
    let new: Vec<String> = topics()
        .chain(CONSUMER_OUTPUTS)
        .map(|t| format!("{prefix}{t}"))
        .collect();
    let new: Vec<NewTopic> = new
        .iter()
        .map(|t| NewTopic::new(t, PARTITIONS_PER_TOPIC, TopicReplication::Fixed(1)))
        .collect();
    for r in admin.create_topics(&new, &AdminOptions::new()).await? {
        r.map_err(|(t, e)| anyhow::anyhow!("create {t}: {e}"))?;
    }

    let site = SiteConfig {
        site_key: site_key.clone(),
        api_key: "fresh-secret-api-key".into(),
        token_secret: "fresh-token-secret".into(),
        allowed_origins: vec!["*".into()],
    };
    let args = ServeArgs {
        listen: "127.0.0.1:0".parse()?,
        config: None,
        kafka_brokers: Some(brokers.clone()),
        redis_url: Some(redis_url.clone()),
        data_dir: "./data".into(),
        max_body_bytes: 256 * 1024,
        rate_per_key: 1_000_000,
        rate_per_ip: 1_000_000,
        header_timeout_ms: 10_000,
        body_timeout_ms: 30_000,
        audit_every_ms: 30_000,
        audit_settle_s: 180,
        max_connections: 10_000,
        store_timeout_ms: 100,
        produce_timeout_ms: 10_000,
        kafka_linger_ms: 1,
        popularity_half_life_h: 24.0,
        topic_prefix: prefix.clone(),
        affinity_half_life_h: 24.0,
        consumer_group: "attune-profiles".into(),
    };
    let state = AppState::with_sites(&args, std::slice::from_ref(&site)).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(attune_origin::serve(
        listener,
        state,
        std::future::pending(),
    ));

    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut consumer = std::process::Command::new(env!("CARGO_BIN_EXE_attune-origin"))
        .arg("consume")
        .env("ATTUNE_TOPIC_PREFIX", &prefix)
        .env("ATTUNE_CONSUMER_GROUP", format!("g-{prefix}"))
        .env(
            "ATTUNE_CONSUMER_LISTEN",
            format!("127.0.0.1:{metrics_port}"),
        )
        .env("RUST_LOG", "warn")
        .spawn()?;

    let http = reqwest::Client::new();
    let post = |body: Vec<u8>| {
        http.post(format!("{base}/v1/events"))
            .header("content-type", "application/msgpack")
            .body(body)
            .send()
    };
    let clicks = |http: reqwest::Client, base: String, user: String| async move {
        let v: serde_json::Value = http
            .get(format!("{base}/v1/profile?user={user}"))
            .bearer_auth("fresh-secret-api-key")
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        v["counts"]["click"].as_u64()
    };

    let catalog: Vec<serde_json::Value> = (0..50)
        .map(|i| serde_json::json!({"id": format!("article-{i}"), "tags": [format!("section-{}", i % 5)]}))
        .collect();
    let r = http
        .post(format!("{base}/v1/items"))
        .bearer_auth("fresh-secret-api-key")
        .json(&serde_json::json!({ "items": catalog }))
        .send()
        .await?;
    anyhow::ensure!(r.status() == 200, "catalog load answered {}", r.status());
    // Warm up: the consumer has its partitions once a first probe shows up.
    let warm = post(batch(&site_key, "warmup", 1)).await?;
    anyhow::ensure!(warm.status() == 202, "ingest answered {}", warm.status());
    let t0 = Instant::now();
    while clicks(http.clone(), base.clone(), "anon:warmup".into())
        .await
        .unwrap_or(0)
        < 1
    {
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(60),
            "the consumer never caught up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Steady background load from 200 users.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let load = {
        let (stop, sent, http, base) = (stop.clone(), sent.clone(), http.clone(), base.clone());
        let site_key = site_key.clone();
        tokio::spawn(async move {
            let mut tick =
                tokio::time::interval(Duration::from_micros(1_000_000 / LOAD_BATCHES_PER_S));
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let body = batch(&site_key, &format!("load-{}", i % 200), EVENTS_PER_BATCH);
                let (http, base, sent) = (http.clone(), base.clone(), sent.clone());
                tokio::spawn(async move {
                    let r = http
                        .post(format!("{base}/v1/events"))
                        .header("content-type", "application/msgpack")
                        .body(body)
                        .send()
                        .await;
                    if r.is_ok_and(|r| r.status() == 202) {
                        sent.fetch_add(EVENTS_PER_BATCH as u64, Ordering::Relaxed);
                    }
                });
                i += 1;
            }
        })
    };

    println!(
        "freshness benchmark: {} events/s of background load, {PROBES} probes",
        LOAD_BATCHES_PER_S * EVENTS_PER_BATCH as u64
    );
    let mut latencies = Vec::with_capacity(PROBES);
    let mut rec_latencies = Vec::with_capacity(PROBES);
    let load_started = Instant::now();
    let started_ms = now_ms();
    for p in 0..PROBES {
        let user = format!("probe-{p}");
        let r = post(batch(&site_key, &user, 1)).await?;
        anyhow::ensure!(r.status() == 202, "ingest answered {}", r.status());
        let accepted = Instant::now();
        let (mut profile_ms, mut recs_ms) = (None, None);
        while profile_ms.is_none() || recs_ms.is_none() {
            if profile_ms.is_none()
                && clicks(http.clone(), base.clone(), format!("anon:{user}"))
                    .await
                    .unwrap_or(0)
                    >= 1
            {
                profile_ms = Some(accepted.elapsed().as_secs_f64() * 1000.0);
            }
            // The click reached the recommendations once the model serves this
            // user and leaves out the clicked item.
            if recs_ms.is_none() && recs_reflect_click(&http, &base, &user).await {
                recs_ms = Some(accepted.elapsed().as_secs_f64() * 1000.0);
            }
            anyhow::ensure!(
                accepted.elapsed() < Duration::from_secs(30),
                "probe {p} never became visible"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        latencies.extend(profile_ms);
        rec_latencies.extend(recs_ms);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    load.await?;
    let rate = sent.load(Ordering::Relaxed) as f64 / load_started.elapsed().as_secs_f64();
    let audit = audit_run(&brokers, &redis_url, &prefix, &site_key, started_ms).await?;
    let _ = consumer.kill();
    let _ = consumer.wait();

    latencies.sort_by(f64::total_cmp);
    rec_latencies.sort_by(f64::total_cmp);
    let (p50, p99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));
    let (r50, r99) = (
        percentile(&rec_latencies, 0.5),
        percentile(&rec_latencies, 0.99),
    );
    println!("  202 → reflected in GET /v1/recommendations: p50 {r50:.0} ms, p99 {r99:.0} ms (target p99 < 1000 ms)");
    println!("  202 → visible in GET /v1/profile: p50 {p50:.0} ms, p99 {p99:.0} ms (target p99 < 1000 ms)");
    println!("  background load achieved: {rate:.0} events/s");
    use attune_origin::ledger::Measure;
    println!(
        "  audit of the run: {} events acknowledged, {} on the topics, {} applied + {} duplicate; {} gaps over {} minute × kind cells",
        audit.total(Measure::Accepted),
        audit.total(Measure::InKafka),
        audit.total(Measure::Applied),
        audit.total(Measure::Duplicate),
        audit.gaps.len(),
        audit.cells.len(),
    );
    for gap in &audit.gaps {
        println!("    {}: {}", gap.boundary.as_str(), gap.describe());
    }
    let json = serde_json::json!({
        "background_events_per_second": rate,
        "probes": PROBES,
        "profile_visible_ms": {"p50": p50, "p99": p99, "max": latencies.last()},
        "recommendations_visible_ms": {"p50": r50, "p99": r99, "max": rec_latencies.last()},
        "audit": {
            "cells": audit.cells.len(),
            "gaps": audit.gaps.len(),
            "acknowledged": audit.total(Measure::Accepted),
            "on_topics": audit.total(Measure::InKafka),
            "applied": audit.total(Measure::Applied),
        },
    });
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(
        out.join("freshness.json"),
        serde_json::to_string_pretty(&json)?,
    )?;
    println!("  wrote target/bench/freshness.json");
    Ok(())
}

/// The audit of the run's minutes once every tier has caught up (the last
/// load requests and the consumers' last rounds land within a few seconds):
/// the first clean report, or the last one after 60 s.
async fn audit_run(
    brokers: &str,
    redis_url: &str,
    prefix: &str,
    site_key: &str,
    started_ms: i64,
) -> anyhow::Result<attune_origin::audit::Report> {
    use attune_origin::audit::{audit, Topics};
    use attune_origin::ledger::minute_of;
    let store = attune_origin::store::redis::RedisStore::connect(redis_url).await?;
    let topics = Topics { brokers, prefix };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let minutes = minute_of(started_ms - 60_000)..minute_of(now_ms()) + 1;
        let report = audit(&store, &topics, &[site_key.to_owned()], minutes).await?;
        if report.gaps.is_empty() || Instant::now() > deadline {
            return Ok(report);
        }
    }
}
