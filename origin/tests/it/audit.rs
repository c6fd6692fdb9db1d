//! Reconciliation on the real stack: an injected loss (records the consumer
//! group never applies) and an injected duplicate (a record produced again
//! behind ingest's back) are named by minute, kind and count — by
//! `attune-origin audit` and by the origin's continuous gauge — and nothing
//! else is, though batches are retried and clients report drops.

use std::time::{Duration, Instant};

use crate::common::kafka::{create_topics, read_topic, Consumer};
use crate::common::{batch, env, event, now_ms, start, Backend, TestOrigin};
use attune_core::routing::topic;
use attune_core::{EventKind, Interaction};
use attune_origin::audit::{self, Boundary, Topics};
use attune_origin::ledger::{minute_of, Cell};
use attune_origin::record::EventRecord;
use attune_origin::store::redis::RedisStore;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

/// Moves `group`'s committed offsets and the store's positions to the log
/// end of every interaction topic: what a consumer that skipped those
/// records would leave behind (with only the group's offsets moved, the
/// consumer resumes from the store's positions and finds them).
fn skip_everything(brokers: &str, prefix: &str, group: &str) {
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut store = attune_origin::store::redis::conn::SyncConn::open(&env("REDIS_URL")).unwrap();
    let mut tpl = TopicPartitionList::new();
    for kind in EventKind::ALL {
        let name = format!("{prefix}{}", topic(kind));
        let metadata = client
            .fetch_metadata(Some(&name), Duration::from_secs(10))
            .unwrap();
        for p in metadata.topics()[0].partitions() {
            // A busy broker may not answer at once: ask again for a while.
            let deadline = Instant::now() + Duration::from_secs(60);
            let high = loop {
                match client.fetch_watermarks(&name, p.id(), Duration::from_secs(10)) {
                    Ok((_, high)) => break high,
                    Err(e) if Instant::now() < deadline => {
                        eprintln!("watermarks of {name}:{}: {e}; asking again", p.id())
                    }
                    Err(e) => panic!("watermarks of {name}:{}: {e}", p.id()),
                }
            };
            tpl.add_partition_offset(&name, p.id(), Offset::Offset(high))
                .unwrap();
            let _: () = redis::cmd("HSET")
                .arg(attune_origin::store::redis::RESUME_KEY)
                .arg(format!("{name}:{}", p.id()))
                .arg(high)
                .query(&mut store)
                .unwrap();
        }
    }
    client.commit(&tpl, CommitMode::Sync).unwrap();
}

async fn gap_gauge(origin: &TestOrigin) -> f64 {
    origin
        .metrics()
        .await
        .lines()
        .find(|l| l.starts_with("attune_audit_gap_events{boundary=\"ingest_to_consumers\"}"))
        .and_then(|l| l.split_whitespace().last()?.parse().ok())
        .unwrap_or(-1.0)
}

async fn wait_for_gauge(origin: &TestOrigin, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = gap_gauge(origin).await;
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "gap gauge {got}, want {want}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_for(consumer: &Consumer, metric: &str, at_least: f64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while consumer.metric(metric).await < at_least {
        assert!(
            Instant::now() < deadline,
            "{metric} never reached {at_least}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn an_injected_loss_and_duplicate_are_named_and_nothing_else() {
    let prefix = format!("au{}.", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let group = format!("g-{prefix}");
    let _topics = create_topics(&prefix).await;
    let (p, g) = (prefix.clone(), group.clone());
    let origin = start(Backend::KafkaRedis, move |a| {
        a.topic_prefix = p;
        a.consumer_group = g;
        a.audit_every_ms = 300;
        a.audit_settle_s = 0;
    })
    .await;
    let site = origin.site.site_key.clone();
    let brokers = env("KAFKA_BROKERS");
    let ts = now_ms();

    // The loss: two dwells appended and acknowledged, which the group then
    // skips.
    let lost = batch(
        &site,
        "lost-reader",
        vec![
            event(Interaction::Dwell { visible_ms: 9_000 }, Some("a-1"), ts),
            event(Interaction::Dwell { visible_ms: 4_000 }, Some("a-2"), ts),
        ],
    );
    assert_eq!(origin.post_batch(&lost).await.status(), 202);
    skip_everything(&brokers, &prefix, &group);
    wait_for_gauge(&origin, 2.0).await;

    // Clean traffic: a batch retried whole, with drops the client reports.
    let consumer = Consumer::start(&prefix, &group);
    let mut clicks = batch(
        &site,
        "reader",
        vec![
            event(Interaction::Click, Some("a-3"), ts),
            event(Interaction::Click, Some("a-4"), ts),
            event(Interaction::Scroll { depth_pct: 60 }, Some("a-4"), ts),
        ],
    );
    clicks.dropped = 3;
    // The audit counts per minute of receipt, and the click cell below
    // expects the batch and its retry in one minute: not in a minute's last
    // seconds (seen failing when they straddled 18:03/18:04).
    let into_minute_ms = now_ms().rem_euclid(60_000);
    if into_minute_ms > 55_000 {
        tokio::time::sleep(Duration::from_millis((60_000 - into_minute_ms) as u64)).await;
    }
    for _ in 0..2 {
        assert_eq!(origin.post_batch(&clicks).await.status(), 202);
    }
    wait_for(&consumer, "attune_consumer_events_applied_total", 3.0).await;
    wait_for(&consumer, "attune_consumer_events_duplicate_total", 3.0).await;
    // Still only the loss, a second after the retry's count reached the store.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(gap_gauge(&origin).await, 2.0, "a retry is not a gap");

    // The duplicate: a click record produced again as it is.
    let clicks_topic = format!("{prefix}{}", topic(EventKind::Click));
    let original = &read_topic(&brokers, &clicks_topic, 1, Duration::from_secs(30))[0];
    let duplicated = EventRecord::decode(original.payload().unwrap()).unwrap();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    producer
        .send(
            FutureRecord::to(&clicks_topic)
                .key(original.key().unwrap())
                .payload(original.payload().unwrap()),
            Duration::from_secs(10),
        )
        .await
        .expect("produced");
    wait_for(&consumer, "attune_consumer_events_duplicate_total", 4.0).await;
    wait_for_gauge(&origin, 3.0).await;

    // The full audit, reading the topics, names exactly the two.
    let store = RedisStore::connect(&env("REDIS_URL")).await.unwrap();
    let topics = Topics {
        brokers: &brokers,
        prefix: &prefix,
    };
    let minutes = audit::window(now_ms(), 5, 0);
    let report = audit::audit(&store, &topics, std::slice::from_ref(&site), minutes)
        .await
        .unwrap();
    let lost_minute = {
        let dwells = format!("{prefix}{}", topic(EventKind::Dwell));
        let m = &read_topic(&brokers, &dwells, 2, Duration::from_secs(30))[0];
        minute_of(
            EventRecord::decode(m.payload().unwrap())
                .unwrap()
                .received_at_ms,
        )
    };
    let cell = |minute, kind: &str| Cell {
        minute,
        site: site.clone(),
        kind: kind.into(),
    };
    let gaps: Vec<(Boundary, Cell, u64, u64)> = report
        .gaps
        .iter()
        .map(|g| (g.boundary, g.cell.clone(), g.upstream, g.downstream))
        .collect();
    let mut want = vec![
        (Boundary::KafkaToConsumers, cell(lost_minute, "dwell"), 2, 0),
        (
            Boundary::IngestToKafka,
            cell(minute_of(duplicated.received_at_ms), "click"),
            4, // two clicks, sent twice
            5,
        ),
    ];
    want.sort_by_key(|(_, c, _, _)| c.clone());
    assert_eq!(gaps, want, "{}", audit::render(&report));
    assert_eq!(
        report.total(attune_origin::ledger::Measure::ClientDropped),
        6,
        "both sends reported 3 drops"
    );
}
