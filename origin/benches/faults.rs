//! `cargo xtask bench faults`: consumer failover. Two consumer processes
//! share the bench's group on its own topics under a steady load. Ten times,
//! one is killed with SIGKILL and at once a probe click is sent for each of
//! 32 users (spread over every partition); the failover time is until every
//! probe is in its profile — the dead member's partitions have moved to the
//! other consumer, past any transaction the dead one left open. The killed
//! consumer is started again and the group settles before the next kill.
//! Writes target/bench/faults.json (p50 and max).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{now_ms, percentile, Bench, SteadyLoad};
use indicatif::{ProgressBar, ProgressStyle};

const KILLS: usize = 10;
const PROBE_USERS: usize = 32;
const LOAD_BATCHES_PER_S: u64 = 50;
const EVENTS_PER_BATCH: usize = 10;
/// A probe not applied by then is a failed failover.
const GIVE_UP: Duration = Duration::from_secs(60);

/// The group's lag as the origin measures it.
async fn group_lag(bench: &Bench) -> Option<i64> {
    bench.get_json("/v1/dashboard").await?["consumer_lag"]["total"].as_i64()
}

/// Until the group has stayed within a second of the load for 5 s (the
/// rebalance after a start settles meanwhile).
async fn settle(bench: &Bench) -> anyhow::Result<()> {
    let one_second = (LOAD_BATCHES_PER_S * EVENTS_PER_BATCH as u64) as i64;
    let t0 = Instant::now();
    let mut current_since: Option<Instant> = None;
    loop {
        let current = group_lag(bench).await.is_some_and(|l| l <= one_second);
        match (current, current_since) {
            (true, Some(since)) if since.elapsed() >= Duration::from_secs(5) => return Ok(()),
            (true, None) => current_since = Some(Instant::now()),
            (false, _) => current_since = None,
            _ => {}
        }
        anyhow::ensure!(t0.elapsed() < 2 * GIVE_UP, "the group never caught up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One probe click per user; the seconds until every one is applied.
async fn probe(bench: &Bench, round: usize, killed_at: Instant) -> anyhow::Result<f64> {
    let users: Vec<String> = (0..PROBE_USERS)
        .map(|u| format!("probe-{round}-{u}"))
        .collect();
    for u in &users {
        let body = common::batch(&bench.site_key, u, 1);
        let r = bench.post(body).await?;
        anyhow::ensure!(r.status() == 202, "ingest answered {}", r.status());
    }
    let mut waiting: Vec<&String> = users.iter().collect();
    while !waiting.is_empty() {
        anyhow::ensure!(
            killed_at.elapsed() < GIVE_UP,
            "{} probes not applied within {GIVE_UP:?}",
            waiting.len()
        );
        let mut still = Vec::new();
        for u in waiting {
            if bench.clicks(&format!("anon:{u}")).await.unwrap_or(0) < 1 {
                still.push(u);
            }
        }
        waiting = still;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(killed_at.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let bench = Arc::new(Bench::start("faults").await?);
    let mut survivor = bench.consumer()?;
    let mut victim = bench.consumer()?;
    let warm = bench
        .post(common::batch(&bench.site_key, "warmup", 1))
        .await?;
    anyhow::ensure!(warm.status() == 202, "ingest answered {}", warm.status());
    let load = SteadyLoad::start(bench.clone(), LOAD_BATCHES_PER_S, EVENTS_PER_BATCH);
    settle(&bench).await?;

    println!(
        "faults benchmark: {KILLS} × kill -9 of one of two consumers under {} events/s",
        LOAD_BATCHES_PER_S * EVENTS_PER_BATCH as u64
    );
    let bar = ProgressBar::new(KILLS as u64).with_style(
        ProgressStyle::with_template("  {bar:30} {pos}/{len} kills · {msg}")
            .expect("a valid template"),
    );
    let mut failovers = Vec::with_capacity(KILLS);
    let started_ms = now_ms();
    for round in 0..KILLS {
        victim.kill()?;
        let killed_at = Instant::now();
        let _ = victim.wait();
        let secs = probe(&bench, round, killed_at).await?;
        failovers.push(secs);
        bar.set_message(format!("last failover {secs:.1} s"));
        victim = bench.consumer()?;
        settle(&bench).await?;
        bar.inc(1);
    }
    bar.finish();
    load.stop().await?;
    let _ = survivor.kill();
    let _ = victim.kill();
    let _ = (survivor.wait(), victim.wait());
    bench.delete_topics().await?;

    let order = failovers.clone();
    failovers.sort_by(f64::total_cmp);
    let (p50, max) = (percentile(&failovers, 0.5), percentile(&failovers, 1.0));
    println!("  consumer kill -9 → every partition applying again: p50 {p50:.1} s, max {max:.1} s");
    println!(
        "  each kill: {}",
        order
            .iter()
            .map(|s| format!("{s:.1}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let json = serde_json::json!({
        "started_at_ms": started_ms,
        "kills": KILLS,
        "load_events_per_second": LOAD_BATCHES_PER_S * EVENTS_PER_BATCH as u64,
        "consumer_kill_failover_s": {"p50": p50, "max": max, "each": order},
    });
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(
        out.join("faults.json"),
        serde_json::to_string_pretty(&json)?,
    )?;
    println!("  wrote target/bench/faults.json");
    Ok(())
}
