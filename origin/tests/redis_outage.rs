//! Redis stops answering (SIGSTOP of the real Redis) for a while: ingest
//! keeps acknowledging into Kafka, promptly, with records that say their
//! attributes are unknown; once Redis is back the consumers apply every
//! event exactly once.
//!
//! Alone in its test binary: cargo runs test binaries one at a time, so no
//! other test sees the paused Redis.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use attune_core::routing::topic;
use attune_core::{EventKind, Interaction};
use common::kafka::{read_topic, setup, Consumer};
use common::{batch, env, event, now_ms, Paused};

/// How long Redis is away.
const OUTAGE: Duration = Duration::from_secs(10);

#[tokio::test]
async fn ingest_accepts_while_redis_is_away_and_everything_is_applied_after() {
    let (prefix, origin) = setup().await;
    let site = origin.site.site_key.clone();
    let _consumer = Consumer::start(&prefix, &format!("g-{prefix}"));
    let mut sent: BTreeMap<String, u64> = BTreeMap::new();

    let warm = batch(
        &site,
        "before",
        vec![event(Interaction::Click, Some("a"), now_ms())],
    );
    assert_eq!(origin.post_batch(&warm).await.status(), 202);
    sent.insert("anon:before".into(), 1);

    let mut slowest = Duration::ZERO;
    {
        let _paused = Paused::pause("ATTUNE_REDIS_PID_FILE");
        let started = Instant::now();
        let mut n = 0;
        while started.elapsed() < OUTAGE {
            // A new reader each time: nothing of theirs is cached.
            let anon = format!("during-{n}");
            let b = batch(
                &site,
                &anon,
                vec![
                    event(Interaction::PageView, None, now_ms()),
                    event(Interaction::Click, Some("b"), now_ms()),
                ],
            );
            let t0 = Instant::now();
            let status = origin.post_batch(&b).await.status();
            slowest = slowest.max(t0.elapsed());
            assert_eq!(status, 202, "batch {n} while Redis is away");
            sent.insert(format!("anon:{anon}"), 2);
            n += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(n >= 20, "only {n} batches in {OUTAGE:?}");
    }
    // The store's timeout (100 ms) bounds a lookup; after a failure ingest
    // does not ask for a second. Nothing waits on Redis's own timeouts.
    assert!(
        slowest < Duration::from_secs(1),
        "the slowest batch took {slowest:?} while Redis was away"
    );
    let metrics = origin.metrics().await;
    assert!(
        metrics.contains("attune_ingest_context_unknown_total{reason=\"store_timeout\"}"),
        "the lookups that timed out are counted"
    );

    // The records appended during the outage say what they lack.
    let clicks = format!("{prefix}{}", topic(EventKind::Click));
    let records = read_topic(
        &env("KAFKA_BROKERS"),
        &clicks,
        sent.len(),
        Duration::from_secs(30),
    );
    for m in &records {
        use rdkafka::Message;
        let r = attune_origin::record::EventRecord::decode(m.payload().unwrap()).unwrap();
        let during = r.user_id != "anon:before";
        assert_eq!(r.attributes_unknown, during, "{}", r.user_id);
    }

    // Once Redis is back, every event is applied, once.
    let deadline = Instant::now() + Duration::from_secs(90);
    for (user, events) in &sent {
        loop {
            let p = origin
                .get_as_site(&format!("/v1/profile?user={user}"))
                .await;
            let counts: BTreeMap<String, u64> =
                serde_json::from_value(p["counts"].clone()).unwrap_or_default();
            let total: u64 = counts.values().sum();
            if total == *events {
                break;
            }
            assert!(
                total < *events,
                "{user}: {total} events applied, {events} sent"
            );
            assert!(
                Instant::now() < deadline,
                "{user}: {total} of {events} applied"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}
