//! `cargo xtask bench cluster`: what replication costs and what more
//! consumers buy, on this machine.
//!
//! 1. Ingest: the same load (batches of 20, 32 in flight) to two origins in
//!    this process, one on the single-node stack (`KAFKA_BROKERS`, RF 1;
//!    `REDIS_URL`) and one on the cluster stack (`ATTUNE_CLUSTER_BROKERS`,
//!    RF 3, two in sync per write; `ATTUNE_CLUSTER_REDIS`, a Redis Cluster
//!    of three primaries and three replicas), in alternating rounds:
//!    events/s and p50/p99 latency each, and their ratios.
//! 2. Consumers on the cluster stack: a backlog of events applied by 1, 2
//!    and 3 consumer processes of one group (fresh topics each): applied
//!    events/s.
//!
//! Writes target/bench/cluster.json.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{batch, percentile, write_report, Bench};
use serde_json::json;

const ROUNDS: usize = 6;
const BATCHES_PER_ROUND: usize = 500;
const EVENTS_PER_BATCH: usize = 20;
const CONCURRENCY: usize = 32;
/// The backlog each consumer count applies.
const BACKLOG_BATCHES: usize = 5_000;

/// One round of load: events/s and every request's latency (ms).
async fn round(bench: &Arc<Bench>, round: usize) -> anyhow::Result<(f64, Vec<f64>)> {
    let bodies: Vec<Vec<u8>> = (0..BATCHES_PER_ROUND)
        .map(|i| batch(&bench.site_key, &format!("r{round}-{i}"), EVENTS_PER_BATCH))
        .collect();
    let queue = Arc::new(std::sync::Mutex::new(bodies));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let (bench, queue) = (bench.clone(), queue.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let Some(body) = queue.lock().unwrap().pop() else {
                    return Ok::<_, anyhow::Error>(latencies);
                };
                let t = Instant::now();
                let r = bench.post(body).await?;
                anyhow::ensure!(r.status().is_success(), "{}", r.text().await?);
                latencies.push(t.elapsed().as_secs_f64() * 1e3);
            }
        }));
    }
    let mut latencies = Vec::new();
    for w in workers {
        latencies.extend(w.await??);
    }
    let rate = (BATCHES_PER_ROUND * EVENTS_PER_BATCH) as f64 / started.elapsed().as_secs_f64();
    Ok((rate, latencies))
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A backlog on fresh cluster topics, then `consumers` processes applying
/// it: events/s from their start until the group's lag is zero.
async fn consumers(brokers: &str, redis: &str, consumers: usize) -> anyhow::Result<f64> {
    let bench = Arc::new(Bench::start_on("cluster", brokers, redis).await?);
    let mut posts = Vec::new();
    for i in 0..BACKLOG_BATCHES {
        posts.push(bench.post(batch(&bench.site_key, &format!("c{i}"), EVENTS_PER_BATCH)));
        if posts.len() == CONCURRENCY || i + 1 == BACKLOG_BATCHES {
            for r in futures::future::join_all(posts.drain(..)).await {
                anyhow::ensure!(r?.status().is_success(), "backlog refused");
            }
        }
    }
    let started = Instant::now();
    let procs: Vec<_> = (0..consumers)
        .map(|_| bench.consumer())
        .collect::<anyhow::Result<_>>()?;
    let deadline = started + Duration::from_secs(600);
    loop {
        let lag = bench.get_json("/v1/dashboard").await.and_then(|d| {
            let lag = &d["consumer_lag"];
            // Measured once the group has committed on every partition.
            (lag["total"].as_u64() == Some(0)
                && lag["by_partition"]
                    .as_object()
                    .is_some_and(|p| !p.is_empty()))
            .then_some(())
        });
        if lag.is_some() {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{consumers} consumers did not catch up in 10 min"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let rate = (BACKLOG_BATCHES * EVENTS_PER_BATCH) as f64 / started.elapsed().as_secs_f64();
    // The consumers go before their topics do.
    drop(procs);
    bench.delete_topics().await?;
    Ok(rate)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let var =
        |v: &str| std::env::var(v).map_err(|_| anyhow::anyhow!("run `cargo xtask bench cluster`"));
    let (cluster_brokers, cluster_redis) =
        (var("ATTUNE_CLUSTER_BROKERS")?, var("ATTUNE_CLUSTER_REDIS")?);
    let single = Arc::new(Bench::start("cluster").await?);
    let cluster = Arc::new(Bench::start_on("cluster", &cluster_brokers, &cluster_redis).await?);
    let (mut rates, mut latencies) = ([Vec::new(), Vec::new()], [Vec::new(), Vec::new()]);
    for r in 0..ROUNDS {
        // Alternate which goes first, so neither always meets a warmer machine.
        let order = if r % 2 == 0 { [0, 1] } else { [1, 0] };
        for side in order {
            let bench = if side == 0 { &single } else { &cluster };
            let (rate, l) = round(bench, r).await?;
            rates[side].push(rate);
            latencies[side].extend(l);
        }
        println!(
            "round {r}: single node {:.0} events/s, 3-node cluster {:.0} events/s",
            rates[0][r], rates[1][r]
        );
    }
    for l in &mut latencies {
        l.sort_by(f64::total_cmp);
    }
    let (p50, p99) = (
        [
            percentile(&latencies[0], 0.5),
            percentile(&latencies[1], 0.5),
        ],
        [
            percentile(&latencies[0], 0.99),
            percentile(&latencies[1], 0.99),
        ],
    );
    let mut applied = Vec::new();
    for n in 1..=3 {
        let rate = consumers(&cluster_brokers, &cluster_redis, n).await?;
        println!("{n} consumer(s) on the cluster: {rate:.0} events/s applied");
        applied.push(json!({"consumers": n, "applied_events_per_s": rate}));
    }
    let report = json!({
        "ingest": {
            "events_per_round_each": BATCHES_PER_ROUND * EVENTS_PER_BATCH,
            "concurrency": CONCURRENCY,
            "single_node_events_per_s": rates[0],
            "cluster_events_per_s": rates[1],
            "median_single_node": median(&rates[0]),
            "median_cluster": median(&rates[1]),
            "cluster_to_single_ratio": median(&rates[1]) / median(&rates[0]),
            "p50_ms": {"single_node": p50[0], "cluster": p50[1]},
            "p99_ms": {"single_node": p99[0], "cluster": p99[1]},
        },
        "consumers_on_cluster": applied,
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    write_report("cluster", &report)?;
    single.delete_topics().await?;
    cluster.delete_topics().await?;
    Ok(())
}
