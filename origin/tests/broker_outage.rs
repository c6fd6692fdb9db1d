//! The broker stops answering (SIGSTOP of the real Kafka process, as in a
//! network partition or a GC pause) and comes back (SIGCONT): ingest answers
//! 503 with Retry-After and the ids it could not store — never 202 — and every
//! event acknowledged before the outage is still in Kafka afterwards.
//!
//! Alone in its test binary: cargo runs test binaries one at a time, so no
//! other test sees the paused broker.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use attune_core::routing::{partition_key, topic};
use attune_core::{EventKind, Interaction};
use common::kafka::{high_watermarks, read_key};
use common::{batch, env, event, now_ms, start, Backend, Paused};
use serde_json::Value;

const PRODUCE_TIMEOUT: Duration = Duration::from_secs(3);

#[tokio::test]
async fn a_stopped_broker_yields_503_and_loses_nothing_acknowledged() {
    let brokers = env("KAFKA_BROKERS");
    let origin = start(Backend::KafkaRedis, |a| {
        a.produce_timeout_ms = PRODUCE_TIMEOUT.as_millis() as u64
    })
    .await;
    let site = origin.site.site_key.clone();
    let key = partition_key(&site, "anon:anon-outage");
    let clicks = topic(EventKind::Click);
    let before = high_watermarks(&brokers, clicks);

    let clicks_of = |n: usize| -> Vec<_> {
        (0..n)
            .map(|i| event(Interaction::Click, Some(&format!("item-{i}")), now_ms()))
            .collect()
    };
    let acked = batch(&site, "anon-outage", clicks_of(3));
    assert_eq!(origin.post_batch(&acked).await.status(), 202);

    let during = batch(&site, "anon-outage", clicks_of(4));
    {
        let _paused = Paused::pause("ATTUNE_KAFKA_PID_FILE");
        let t0 = Instant::now();
        let r = origin.post_batch(&during).await;
        let waited = t0.elapsed();
        eprintln!("503 after {waited:?} (produce timeout {PRODUCE_TIMEOUT:?})");
        // The client's budget is the configured timeout: the answer comes
        // within it, plus scheduling slack (librdkafka alone answered a
        // paused broker after 3.0 or 4.0 s, a killed one after 10-15 s).
        assert!(
            waited < PRODUCE_TIMEOUT + Duration::from_millis(500),
            "the 503 came after {waited:?}, the timeout is {PRODUCE_TIMEOUT:?}"
        );
        let status = r.status().as_u16();
        let retry_after = r.headers().get("retry-after").cloned();
        let body: Value = r.json().await.unwrap();
        assert_eq!(status, 503, "{body}");
        assert!(retry_after.is_some(), "503 carries Retry-After");
        assert_eq!(body["error"], "unavailable");
        let rejected = body["rejected"].as_array().unwrap().len();
        let accepted = body["accepted"].as_array().unwrap().len();
        assert_eq!(rejected + accepted, 4, "{body}");
        assert!(rejected > 0, "{body}");
        let ready = origin.http.get(origin.url("/readyz")).send().await.unwrap();
        assert_eq!(ready.status(), 503, "not ready while the broker is away");
    }

    // The client retries the same batch (same ids) until it is accepted.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = origin.post_batch(&during).await;
        if r.status() == 202 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no 202 within 60 s after the broker returned"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    let stored = read_key(&brokers, clicks, &before, &key, 7, Duration::from_secs(30));
    let ids: BTreeSet<_> = stored.iter().map(|(_, r)| r.event.id).collect();
    for e in acked.events.iter().chain(&during.events) {
        assert!(
            ids.contains(&e.id),
            "event {} missing after the outage",
            e.id
        );
    }
    // Duplicates from the retry can only repeat ids that were sent.
    let sent: BTreeSet<_> = acked
        .events
        .iter()
        .chain(&during.events)
        .map(|e| e.id)
        .collect();
    assert!(ids.is_subset(&sent));
}
