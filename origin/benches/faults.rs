//! `cargo xtask bench faults`: how long each fault stops the stream, under a
//! steady load, on the bench's own topics.
//!
//! - **Consumer failover**: two consumers share the group; ten times, one is
//!   killed with SIGKILL and at once a probe click is sent for each of 32
//!   users (spread over every partition); the failover time is until every
//!   probe is in its profile — the dead member's partitions have moved to
//!   the other consumer, past any transaction the dead one left open. The
//!   killed consumer is started again and the group settles before the next.
//! - **Restart**: the killed consumer is started again at once, five times
//!   as a new member and five times under its stable instance name
//!   (`ATTUNE_CONSUMER_INSTANCE`, a fenced restart); until every probe is in.
//! - **Broker**: three times the broker is killed with SIGKILL and brought
//!   back (`cargo xtask stack up`); from when it answers metadata again, the
//!   time to ingest's first 202 and until every probe is applied.
//!
//! Writes target/bench/faults.json (p50 and max per fault kind).

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{now_ms, percentile, Bench, SteadyLoad};
use indicatif::{ProgressBar, ProgressStyle};

const KILLS: usize = 10;
const RESTARTS: usize = 5;
const BROKER_KILLS: usize = 3;
/// The instance name the killed consumer runs under.
const VICTIM: &str = "victim";
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
    let survivor = bench.consumer_named(Some("survivor"))?;
    let mut victim = bench.consumer()?;
    let warm = bench
        .post(common::batch(&bench.site_key, "warmup", 1))
        .await?;
    anyhow::ensure!(warm.status() == 202, "ingest answered {}", warm.status());
    let load = SteadyLoad::start(bench.clone(), LOAD_BATCHES_PER_S, EVENTS_PER_BATCH);
    settle(&bench).await?;

    let rounds = KILLS + 2 * RESTARTS + BROKER_KILLS;
    println!(
        "faults benchmark: {rounds} faults under {} events/s",
        LOAD_BATCHES_PER_S * EVENTS_PER_BATCH as u64
    );
    let bar = ProgressBar::new(rounds as u64).with_style(
        ProgressStyle::with_template("  {bar:30} {pos}/{len} faults · {msg}")
            .expect("a valid template"),
    );
    let started_ms = now_ms();
    let mut round = 0;
    let mut failover = Vec::new();
    for _ in 0..KILLS {
        let killed_at = Instant::now();
        victim.kill()?;
        failover.push(probe(&bench, round, killed_at).await?);
        bar.set_message(format!(
            "consumer failover {:.1} s",
            failover[failover.len() - 1]
        ));
        victim = bench.consumer()?;
        settle(&bench).await?;
        round += 1;
        bar.inc(1);
    }
    let mut restarts = [Vec::new(), Vec::new()];
    for (fenced, times) in restarts.iter_mut().enumerate() {
        let name = (fenced == 1).then_some(VICTIM);
        if fenced == 1 {
            // The first fenced restart must follow a run under the name.
            victim.kill()?;
            victim = bench.consumer_named(name)?;
            settle(&bench).await?;
        }
        for _ in 0..RESTARTS {
            let killed_at = Instant::now();
            victim.kill()?;
            victim = bench.consumer_named(name)?;
            times.push(probe(&bench, round, killed_at).await?);
            bar.set_message(format!("restart {:.1} s", times[times.len() - 1]));
            settle(&bench).await?;
            round += 1;
            bar.inc(1);
        }
    }
    let (mut broker_ingest, mut broker_applying) = (Vec::new(), Vec::new());
    for _ in 0..BROKER_KILLS {
        kill_broker(&bench.brokers)?;
        let back_at = restart_broker()?;
        broker_ingest.push(first_acknowledged(&bench, round, back_at).await?);
        broker_applying.push(probe(&bench, round, back_at).await?);
        bar.set_message(format!(
            "ingest back {:.1} s after the broker",
            broker_ingest[broker_ingest.len() - 1]
        ));
        settle(&bench).await?;
        round += 1;
        bar.inc(1);
    }
    bar.finish();
    load.stop().await?;
    drop((survivor, victim));
    bench.delete_topics().await?;

    let kinds = [
        (
            "consumer_kill_failover_s",
            "consumer kill -9 → every partition applying again (other member)",
            failover,
        ),
        (
            "consumer_restart_new_member_s",
            "consumer kill -9 and restart as a new member → every partition applying",
            std::mem::take(&mut restarts[0]),
        ),
        (
            "consumer_restart_fenced_s",
            "consumer kill -9 and restart under its instance name → every partition applying",
            std::mem::take(&mut restarts[1]),
        ),
        (
            "broker_back_to_ingest_202_s",
            "broker answering again → ingest's first 202",
            broker_ingest,
        ),
        (
            "broker_back_to_applying_s",
            "broker answering again → every partition applying",
            broker_applying,
        ),
    ];
    let mut json = serde_json::json!({
        "started_at_ms": started_ms,
        "load_events_per_second": LOAD_BATCHES_PER_S * EVENTS_PER_BATCH as u64,
    });
    for (key, words, each) in kinds {
        let mut sorted = each.clone();
        sorted.sort_by(f64::total_cmp);
        let (p50, max) = (percentile(&sorted, 0.5), percentile(&sorted, 1.0));
        println!(
            "  {words}: p50 {p50:.1} s, max {max:.1} s ({} times)",
            each.len()
        );
        json[key] = serde_json::json!({"p50": p50, "max": max, "each": each});
    }
    common::write_report("faults", &json)?;
    Ok(())
}

/// SIGKILL to the stack's broker; returns once it is gone.
fn kill_broker(brokers: &str) -> anyhow::Result<()> {
    let pid_file = std::env::var("ATTUNE_KAFKA_PID_FILE")
        .map_err(|_| anyhow::anyhow!("run `cargo xtask bench faults`"))?;
    let pid = std::fs::read_to_string(&pid_file)?.trim().to_owned();
    let killed = Command::new("kill").args(["-9", &pid]).status()?;
    anyhow::ensure!(killed.success(), "kill -9 {pid}");
    // Gone, or a zombie: the broker may be a child of `cargo xtask`, which
    // reaps it only later.
    let alive = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            stat.rsplit(") ")
                .next()
                .is_some_and(|s| !s.starts_with('Z'))
        })
    };
    let t0 = Instant::now();
    while alive() {
        anyhow::ensure!(t0.elapsed() < GIVE_UP, "the broker outlived kill -9");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Its port is free again once the kernel has closed its sockets.
    let port: u16 = brokers.rsplit(':').next().unwrap_or_default().parse()?;
    while std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
        anyhow::ensure!(
            t0.elapsed() < GIVE_UP,
            "port {port} stayed taken after kill -9"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Brings the broker back with `cargo xtask stack up`, which returns once it
/// answers metadata; that instant.
fn restart_broker() -> anyhow::Result<Instant> {
    let xtask = std::env::var("ATTUNE_STACK_UP")
        .map_err(|_| anyhow::anyhow!("run `cargo xtask bench faults`"))?;
    let up = Command::new(xtask)
        .args(["stack", "up"])
        .stdout(std::process::Stdio::null())
        .status()?;
    anyhow::ensure!(up.success(), "`cargo xtask stack up` failed");
    Ok(Instant::now())
}

/// Posts a batch until it is acknowledged; the seconds from `since`.
async fn first_acknowledged(bench: &Bench, round: usize, since: Instant) -> anyhow::Result<f64> {
    let body = common::batch(&bench.site_key, &format!("broker-{round}"), 1);
    loop {
        if bench.post(body.clone()).await?.status() == 202 {
            return Ok(since.elapsed().as_secs_f64());
        }
        anyhow::ensure!(since.elapsed() < GIVE_UP, "no 202 within {GIVE_UP:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
