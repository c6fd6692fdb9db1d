//! `cargo xtask bench freshness`: the consistency window. Under a steady
//! ingest load, how long after an event's 202 its effect shows in
//! `GET /v1/profile` (the consumer → Redis path). Runs on its own topics with
//! its own consumer process. Writes target/bench/freshness.json.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{now_ms, percentile, Bench, SteadyLoad, API_KEY};

const LOAD_BATCHES_PER_S: u64 = 100;
const EVENTS_PER_BATCH: usize = 10;
const PROBES: usize = 200;

/// True once `user`'s recommendations come from the model and leave out the
/// item their probe clicked (`article-0`).
async fn recs_reflect_click(http: &reqwest::Client, base: &str, user: &str) -> bool {
    let Ok(r) = http
        .get(format!("{base}/v1/recommendations?user=anon:{user}&k=50"))
        .bearer_auth(API_KEY)
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let bench = Arc::new(Bench::start("freshness").await?);
    let (http, base, site_key) = (&bench.http, &bench.base, &bench.site_key);
    let consumer = bench.consumer()?;

    let catalog: Vec<serde_json::Value> = (0..50)
        .map(|i| serde_json::json!({"id": format!("article-{i}"), "tags": [format!("section-{}", i % 5)]}))
        .collect();
    let r = http
        .post(format!("{base}/v1/items"))
        .bearer_auth(API_KEY)
        .json(&serde_json::json!({ "items": catalog }))
        .send()
        .await?;
    anyhow::ensure!(r.status() == 200, "catalog load answered {}", r.status());
    // Warm up: the consumer has its partitions once a first probe shows up.
    let warm = bench.post(common::batch(site_key, "warmup", 1)).await?;
    anyhow::ensure!(warm.status() == 202, "ingest answered {}", warm.status());
    let t0 = Instant::now();
    while bench.clicks("anon:warmup").await.unwrap_or(0) < 1 {
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(60),
            "the consumer never caught up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Steady background load from 200 users.
    let load = SteadyLoad::start(bench.clone(), LOAD_BATCHES_PER_S, EVENTS_PER_BATCH);

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
        let r = bench.post(common::batch(site_key, &user, 1)).await?;
        anyhow::ensure!(r.status() == 202, "ingest answered {}", r.status());
        let accepted = Instant::now();
        let (mut profile_ms, mut recs_ms) = (None, None);
        while profile_ms.is_none() || recs_ms.is_none() {
            if profile_ms.is_none() && bench.clicks(&format!("anon:{user}")).await.unwrap_or(0) >= 1
            {
                profile_ms = Some(accepted.elapsed().as_secs_f64() * 1000.0);
            }
            // The click reached the recommendations once the model serves this
            // user and leaves out the clicked item.
            if recs_ms.is_none() && recs_reflect_click(http, base, &user).await {
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
    let rate = load.stop().await? as f64 / load_started.elapsed().as_secs_f64();
    let audit = audit_run(&bench, started_ms).await?;
    drop(consumer);
    bench.delete_topics().await?;

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
    common::write_report("freshness", &json)?;
    Ok(())
}

/// The audit of the run's minutes once every tier has caught up (the last
/// load requests and the consumers' last rounds land within a few seconds):
/// the first clean report, or the last one after 60 s.
async fn audit_run(bench: &Bench, started_ms: i64) -> anyhow::Result<attune_origin::audit::Report> {
    use attune_origin::audit::{audit, Topics};
    use attune_origin::ledger::minute_of;
    let store = attune_origin::store::redis::RedisStore::connect(&bench.redis_url).await?;
    let topics = Topics {
        brokers: &bench.brokers,
        prefix: &bench.prefix,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let minutes = minute_of(started_ms - 60_000)..minute_of(now_ms()) + 1;
        let report = audit(
            &store,
            &topics,
            std::slice::from_ref(&bench.site_key),
            minutes,
        )
        .await?;
        if report.gaps.is_empty() || Instant::now() > deadline {
            return Ok(report);
        }
    }
}
