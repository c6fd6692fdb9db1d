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
//! 3. CPU per event per tier, from `/proc/<pid>/stat` of the processes that
//!    did the work (the brokers' and Redis nodes' pids come from xtask in
//!    `ATTUNE_CLUSTER_KAFKA_PIDS` and `ATTUNE_CLUSTER_REDIS_PIDS`), and the
//!    cores each tier would need for 10k, 100k and 1M events/s at that cost.
//!    The origin runs in this process beside the load generator, so its
//!    figure includes the generator's: an upper bound.
//!
//! Writes target/bench/cluster.json.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{batch, cpu_seconds_of, percentile, write_report, Bench};
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

/// The stack's server processes, by tier.
struct Servers {
    kafka: Vec<u32>,
    redis: Vec<u32>,
}

/// CPU seconds used, by tier.
#[derive(Default, Clone, Copy)]
struct Cpu {
    /// The origins and the load generator (this process).
    origin: f64,
    kafka: f64,
    redis: f64,
    consumers: f64,
}

impl Servers {
    fn from_env() -> anyhow::Result<Servers> {
        let pids = |v: &str| -> anyhow::Result<Vec<u32>> {
            std::env::var(v)
                .map_err(|_| anyhow::anyhow!("run `cargo xtask bench cluster`"))?
                .split(',')
                .map(|p| Ok(p.trim().parse()?))
                .collect()
        };
        Ok(Servers {
            kafka: pids("ATTUNE_CLUSTER_KAFKA_PIDS")?,
            redis: pids("ATTUNE_CLUSTER_REDIS_PIDS")?,
        })
    }

    /// CPU seconds so far (consumers: of `consumers`).
    fn cpu(&self, consumers: &[u32]) -> Cpu {
        Cpu {
            origin: cpu_seconds_of(&[std::process::id()]),
            kafka: cpu_seconds_of(&self.kafka),
            redis: cpu_seconds_of(&self.redis),
            consumers: cpu_seconds_of(consumers),
        }
    }
}

impl std::ops::Sub for Cpu {
    type Output = Cpu;
    fn sub(self, o: Cpu) -> Cpu {
        Cpu {
            origin: self.origin - o.origin,
            kafka: self.kafka - o.kafka,
            redis: self.redis - o.redis,
            consumers: self.consumers - o.consumers,
        }
    }
}

impl std::ops::AddAssign for Cpu {
    fn add_assign(&mut self, o: Cpu) {
        self.origin += o.origin;
        self.kafka += o.kafka;
        self.redis += o.redis;
        self.consumers += o.consumers;
    }
}

/// CPU milliseconds per event, and the cores `ms` per event needs at each
/// rate.
fn per_event(cpu_s: f64, events: usize) -> serde_json::Value {
    let ms = cpu_s * 1e3 / events as f64;
    json!({
        "cpu_ms_per_event": ms,
        "cores_for_10k_events_per_s": ms * 10.0,
        "cores_for_100k_events_per_s": ms * 100.0,
        "cores_for_1m_events_per_s": ms * 1000.0,
    })
}

/// A backlog on fresh cluster topics, then `consumers` processes applying
/// it: events/s from their start until the group's lag is zero, and the CPU
/// the consumers, Kafka and Redis used meanwhile.
async fn consumers(
    brokers: &str,
    redis: &str,
    servers: &Servers,
    consumers: usize,
) -> anyhow::Result<(f64, Cpu)> {
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
    let pids: Vec<u32> = procs.iter().map(|p| p.pid()).collect();
    let before = servers.cpu(&[]);
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
    let used = servers.cpu(&pids) - before;
    // The consumers go before their topics do.
    drop(procs);
    bench.delete_topics().await?;
    Ok((rate, used))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let var =
        |v: &str| std::env::var(v).map_err(|_| anyhow::anyhow!("run `cargo xtask bench cluster`"));
    let (cluster_brokers, cluster_redis) =
        (var("ATTUNE_CLUSTER_BROKERS")?, var("ATTUNE_CLUSTER_REDIS")?);
    let servers = Servers::from_env()?;
    let single = Arc::new(Bench::start("cluster").await?);
    let cluster = Arc::new(Bench::start_on("cluster", &cluster_brokers, &cluster_redis).await?);
    let (mut rates, mut latencies) = ([Vec::new(), Vec::new()], [Vec::new(), Vec::new()]);
    // What the cluster side's rounds cost, tier by tier.
    let mut ingest_cpu = Cpu::default();
    for r in 0..ROUNDS {
        // Alternate which goes first, so neither always meets a warmer machine.
        let order = if r % 2 == 0 { [0, 1] } else { [1, 0] };
        for side in order {
            let bench = if side == 0 { &single } else { &cluster };
            let before = servers.cpu(&[]);
            let (rate, l) = round(bench, r).await?;
            if side == 1 {
                ingest_cpu += servers.cpu(&[]) - before;
            }
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
    let mut consume_cpu = Vec::new();
    for n in 1..=3 {
        let (rate, cpu) = consumers(&cluster_brokers, &cluster_redis, &servers, n).await?;
        println!("{n} consumer(s) on the cluster: {rate:.0} events/s applied");
        applied.push(json!({"consumers": n, "applied_events_per_s": rate}));
        consume_cpu.push(cpu);
    }
    // Per event, on the cluster stack: ingest from the cluster side's rounds,
    // applying from the one-consumer run (no core shared by two consumers).
    let (ingested, backlog) = (
        ROUNDS * BATCHES_PER_ROUND * EVENTS_PER_BATCH,
        BACKLOG_BATCHES * EVENTS_PER_BATCH,
    );
    let cpu = json!({
        "origin_and_load_generator": per_event(ingest_cpu.origin, ingested),
        "kafka_ingest": per_event(ingest_cpu.kafka, ingested),
        "redis_ingest": per_event(ingest_cpu.redis, ingested),
        "consumer": per_event(consume_cpu[0].consumers, backlog),
        "kafka_consume": per_event(consume_cpu[0].kafka, backlog),
        "redis_consume": per_event(consume_cpu[0].redis, backlog),
    });
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
        "cpu_per_event_on_cluster": cpu,
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    write_report("cluster", &report)?;
    single.delete_topics().await?;
    cluster.delete_topics().await?;
    Ok(())
}
