//! `cargo xtask bench retrain`: MovieLens-100k replayed through Kafka (each
//! rating a click, in time order, squeezed into the last day so the
//! recency weights keep it), learned online by a consumer with every
//! prediction validated, then `attune-origin retrain` on the same log. Beside
//! each other in one run: the consumer's online pass, the retrain's read of
//! the log alone (its floor) and its whole run with its peak memory; and the
//! online recipe against the retrained challenger on the same time-ordered
//! holdout. Writes target/bench/retrain.json.

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use attune_core::routing::{partition_key, topic};
use attune_core::{EventKind, Interaction};
use attune_origin::record::{Device, EventRecord};
use common::{now_ms, write_report, Bench};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde_json::json;

/// (user, item, Unix ms) in time order.
fn ratings(dir: &str) -> anyhow::Result<Vec<(String, String, i64)>> {
    let inter = std::fs::read_to_string(format!("{dir}/ml-100k.inter"))?;
    let mut out: Vec<(String, String, i64)> = inter
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            Some((
                format!("u{}", f.first()?),
                format!("m{}", f.get(1)?),
                (f.get(3)?.parse::<f64>().ok()? * 1000.0) as i64,
            ))
        })
        .collect();
    out.sort_by_key(|r| r.2);
    Ok(out)
}

/// The next offsets every partition of the bench's topics has applied, as
/// the consumers record them.
fn positions(
    redis: &mut attune_origin::store::redis::conn::SyncConn,
    prefix: &str,
) -> HashMap<String, i64> {
    redis::cmd("HGETALL")
        .arg(attune_origin::store::redis::model_position_key(prefix, 1))
        .query(redis)
        .unwrap_or_default()
}

/// `topic:partition` → log end, for every partition of `topic`.
fn log_ends(brokers: &str, topic: &str) -> anyhow::Result<HashMap<String, i64>> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let timeout = Duration::from_secs(10);
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let metadata = client.fetch_metadata(Some(topic), timeout)?;
    let mut out = HashMap::new();
    for t in metadata.topics() {
        for p in t.partitions() {
            let (_, high) = client.fetch_watermarks(t.name(), p.id(), timeout)?;
            out.insert(format!("{}:{}", t.name(), p.id()), high);
        }
    }
    Ok(out)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = std::env::var("ATTUNE_EVAL_DATA")
        .map_err(|_| anyhow::anyhow!("run `cargo xtask bench retrain`"))?;
    let bench = Bench::start("retrain").await?;
    let stream = ratings(&dir)?;
    let (first, last) = (stream[0].2, stream[stream.len() - 1].2);
    let now = now_ms();
    // The months of ratings into the last day, order kept.
    let squeeze = (last - first) as f64 / 86_400_000.0;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bench.brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "20")
        .create()?;
    let clicks = format!("{}{}", bench.prefix, topic(EventKind::Click));
    println!("==> producing {} ratings as clicks", stream.len());
    let mut sends = Vec::with_capacity(stream.len());
    for (user, item, t) in &stream {
        let ts = now - ((last - t) as f64 / squeeze) as i64;
        let record = EventRecord {
            site_key: bench.site_key.clone(),
            user_id: user.clone(),
            anonymous_id: user.clone(),
            event: attune_core::Event {
                id: uuid::Uuid::now_v7(),
                ts_ms: ts,
                interaction: Interaction::Click,
                item: Some(item.clone()),
                context: None,
                slot: None,
            },
            received_at_ms: ts,
            clock_skew_ms: 0,
            corrected_ts_ms: ts,
            device: Device::default(),
            attributes: Default::default(),
            segments: Vec::new(),
            attributes_unknown: false,
        };
        let key = partition_key(&bench.site_key, user);
        let payload = record.encode();
        let producer = producer.clone();
        let clicks = clicks.clone();
        sends.push(tokio::spawn(async move {
            producer
                .send(
                    FutureRecord::to(&clicks).key(&key).payload(&payload),
                    Duration::from_secs(30),
                )
                .await
                .map(|_| ())
                .map_err(|(e, _)| e)
        }));
    }
    for s in sends {
        s.await??;
    }
    let ends = log_ends(&bench.brokers, &clicks)?;

    println!("==> the online model: one consumer, every prediction validated");
    let started = Instant::now();
    let mut consumer = Command::new(env!("CARGO_BIN_EXE_attune-origin"))
        .arg("consume")
        .env("KAFKA_BROKERS", &bench.brokers)
        .env("REDIS_URL", &bench.redis_url)
        .env("ATTUNE_TOPIC_PREFIX", &bench.prefix)
        .env("ATTUNE_CONSUMER_GROUP", format!("g-{}", bench.prefix))
        .env("ATTUNE_CONSUMER_LISTEN", "127.0.0.1:0")
        .env("ATTUNE_VALIDATION_SAMPLE", "1")
        .env("RUST_LOG", "warn")
        .spawn()?;
    let mut redis = attune_origin::store::redis::conn::SyncConn::open(&bench.redis_url)?;
    loop {
        let at = positions(&mut redis, &bench.prefix);
        if ends
            .iter()
            .all(|(tp, end)| at.get(tp).copied().unwrap_or(0) >= *end)
        {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(1800),
            "the consumer did not finish within 30 minutes"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let online_s = started.elapsed().as_secs_f64();
    // Its last published stats carry the validation.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stats: HashMap<String, String> = redis::cmd("HGETALL")
        .arg(attune_origin::store::redis::CONSUMERS_KEY)
        .query(&mut redis)?;
    let pid = consumer.id().to_string();
    let validation = stats
        .iter()
        .find(|(member, _)| member.ends_with(&format!("-{pid}")))
        .and_then(|(_, json)| serde_json::from_str::<serde_json::Value>(json).ok())
        .map(|s| s["validation"].clone())
        .unwrap_or_default();
    consumer.kill()?;
    consumer.wait()?;

    println!("==> attune-origin retrain on the same log");
    let out = Command::new("/usr/bin/time")
        .args(["-f", "peak_kb=%M"])
        .arg(env!("CARGO_BIN_EXE_attune-origin"))
        .args(["retrain", "--json", "--no-promote"])
        .env("KAFKA_BROKERS", &bench.brokers)
        .env("REDIS_URL", &bench.redis_url)
        .env("ATTUNE_TOPIC_PREFIX", &bench.prefix)
        .env("RUST_LOG", "warn")
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    anyhow::ensure!(out.status.success(), "retrain failed: {stderr}");
    let outcome: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let peak_mb = stderr
        .lines()
        .find_map(|l| l.strip_prefix("peak_kb="))
        .and_then(|kb| kb.trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0);
    let (read_s, retrain_s) = (
        outcome["read_seconds"].as_f64().unwrap_or(f64::NAN),
        outcome["seconds"].as_f64().unwrap_or(f64::NAN),
    );
    let c = &outcome["comparison"];
    let live_hr10 = validation["hits"].as_f64().unwrap_or(f64::NAN)
        / validation["evaluated"].as_f64().unwrap_or(f64::NAN);
    let report = json!({
        "events": stream.len(),
        "online": {
            "seconds": online_s,
            "events_per_s": stream.len() as f64 / online_s,
            "live_checks": validation["evaluated"],
            "live_hr10_all": live_hr10,
            "live_hr10_last_window": validation["hr10"],
        },
        "retrain": {
            "seconds": retrain_s,
            "read_log_seconds": read_s,
            "ratio_to_reading_the_log": retrain_s / read_s,
            "ratio_to_the_online_pass": retrain_s / online_s,
            "peak_memory_mb": peak_mb,
            "grid": outcome["grid"],
            "chosen": outcome["chosen"],
        },
        "holdout": {
            "checks": c["checks"],
            "online_recipe_hr10": c["champion_hr10"],
            "retrained_hr10": c["challenger_hr10"],
            "difference_95": [c["diff_low"], c["diff_high"]],
            "better": c["better"],
        },
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    write_report("retrain", &report)?;
    bench.delete_topics().await?;
    Ok(())
}
