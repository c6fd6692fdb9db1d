//! `cargo xtask bench segment`: the same events through the Segment API
//! (`POST /v1/batch`, JSON, as analytics-node sends them) and through
//! `POST /v1/events` (attune-core MessagePack, as the tracker sends them), to
//! the same origin on the real Kafka, in alternating rounds of one run.
//! Reports accepted events/s each and their ratio. Writes
//! target/bench/segment.json.

mod common;

use std::sync::Arc;
use std::time::Instant;

use attune_core::codec::encode_msgpack;
use attune_core::{Batch, Event, Interaction};
use base64::Engine as _;
use common::{now_ms, write_report, Bench, API_KEY};
use serde_json::json;

const ROUNDS: usize = 6;
const BATCHES_PER_ROUND: usize = 400;
const EVENTS_PER_BATCH: usize = 20;
const CONCURRENCY: usize = 16;

/// One reader's events, both ways: the MessagePack body and the Segment body.
fn bodies(site: &str, reader: usize) -> (Vec<u8>, Vec<u8>) {
    let t = now_ms();
    let anon = format!("r{reader}-{}", uuid::Uuid::now_v7().simple());
    let events: Vec<Event> = (0..EVENTS_PER_BATCH)
        .map(|i| Event {
            id: uuid::Uuid::now_v7(),
            ts_ms: t,
            interaction: Interaction::Click,
            item: Some(format!("article-{}", i % 50)),
            context: None,
            slot: None,
        })
        .collect();
    let iso = chrono::DateTime::from_timestamp_millis(t)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let segment = json!({
        "batch": events.iter().map(|e| json!({
            "type": "track",
            "event": "Product Clicked",
            "anonymousId": anon,
            "userId": anon,
            "messageId": e.id.to_string(),
            "timestamp": iso,
            "properties": {"product_id": e.item},
            "context": {"library": {"name": "@segment/analytics-node", "version": "3.1.0"}},
            "integrations": {},
        })).collect::<Vec<_>>(),
        "sentAt": iso,
    });
    let msgpack = encode_msgpack(&Batch {
        site_key: site.into(),
        anonymous_id: anon,
        user_token: None,
        sent_at_ms: t,
        dropped: 0,
        events,
    });
    (msgpack, serde_json::to_vec(&segment).unwrap())
}

/// Posts `bodies` with `CONCURRENCY` in flight; events/s accepted.
async fn round(bench: &Arc<Bench>, bodies: Vec<Vec<u8>>, segment: bool) -> anyhow::Result<f64> {
    let started = Instant::now();
    let queue = Arc::new(std::sync::Mutex::new(bodies));
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{API_KEY}:"))
    );
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let (bench, queue, auth) = (bench.clone(), queue.clone(), auth.clone());
        workers.push(tokio::spawn(async move {
            let mut accepted = 0usize;
            loop {
                let Some(body) = queue.lock().unwrap().pop() else {
                    return Ok::<usize, anyhow::Error>(accepted);
                };
                let r = if segment {
                    bench
                        .http
                        .post(format!("{}/v1/batch", bench.base))
                        .header("content-type", "application/json")
                        .header("authorization", &auth)
                        .body(body)
                        .send()
                        .await?
                } else {
                    bench.post(body).await?
                };
                anyhow::ensure!(r.status().is_success(), "{}", r.text().await?);
                accepted += EVENTS_PER_BATCH;
            }
        }));
    }
    let mut accepted = 0;
    for w in workers {
        accepted += w.await??;
    }
    Ok(accepted as f64 / started.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let bench = Arc::new(Bench::start("segment").await?);
    let (mut attune, mut segment) = (Vec::new(), Vec::new());
    for r in 0..ROUNDS {
        let (msgpack, json): (Vec<_>, Vec<_>) = (0..BATCHES_PER_ROUND)
            .map(|i| bodies(&bench.site_key, r * BATCHES_PER_ROUND + i))
            .unzip();
        // Alternate which goes first, so neither always meets a warmer broker.
        if r % 2 == 0 {
            attune.push(round(&bench, msgpack, false).await?);
            segment.push(round(&bench, json, true).await?);
        } else {
            segment.push(round(&bench, json, true).await?);
            attune.push(round(&bench, msgpack, false).await?);
        }
        println!(
            "round {r}: /v1/events {:.0} events/s, /v1/batch {:.0} events/s",
            attune[r], segment[r]
        );
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (a, s) = (median(&mut attune.clone()), median(&mut segment.clone()));
    let report = json!({
        "events_per_round_each": BATCHES_PER_ROUND * EVENTS_PER_BATCH,
        "events_per_batch": EVENTS_PER_BATCH,
        "concurrency": CONCURRENCY,
        "attune_msgpack_events_per_s": attune,
        "segment_json_events_per_s": segment,
        "median_attune_msgpack": a,
        "median_segment_json": s,
        "segment_to_attune_ratio": s / a,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    write_report("segment", &report)?;
    bench.delete_topics().await?;
    Ok(())
}
