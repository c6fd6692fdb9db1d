//! The consumers against the real Kafka and Redis: profiles count every
//! accepted event exactly once through kill -9, restarts, duplicate batches and
//! rebalances; forgetting a user removes their profile and ignores what comes
//! later; the origin reports the group's true lag. Each test runs on its own topics (a prefix), so history never leaks in.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::common::kafka::{setup, Consumer};
use crate::common::{batch, env, event, now_ms, Popularity, TestOrigin};
use attune_core::routing::topics;
use attune_core::{Batch, HalfLife, Interaction};
use attune_origin::config::SiteWeights;
use attune_origin::model::validation::Validator;
use attune_origin::model::versions::VersionInfo;
use rdkafka::ClientConfig;
use serde_json::Value;

/// Ten events of every kind for `anon`: (batch, expected count per kind, dwell ms).
fn user_batch(site: &str, anon: &str, round: usize) -> Batch {
    let t = now_ms();
    let events = (0..10)
        .map(|i| match i % 5 {
            0 => event(Interaction::PageView, None, t),
            1 => event(Interaction::Click, Some(&format!("item-{round}-{i}")), t),
            2 => event(
                Interaction::Scroll {
                    depth_pct: 40 + i as u8,
                },
                Some("item-1"),
                t,
            ),
            3 => event(
                Interaction::Dwell {
                    visible_ms: 1000 + i as u32,
                },
                Some("item-1"),
                t,
            ),
            _ => event(Interaction::Impression, Some("item-2"), t),
        })
        .collect();
    batch(site, anon, events)
}

async fn profile(origin: &TestOrigin, user: &str) -> Value {
    origin
        .get_as_site(&format!("/v1/profile?user={user}"))
        .await
}

/// What the profiles must show (distinct events per user and kind, and
/// dwell) and the site's popularity (each distinct event's weight, once).
#[derive(Default)]
struct Expected {
    profiles: BTreeMap<String, (BTreeMap<String, u64>, u64)>,
    popularity: Popularity,
}

impl Expected {
    fn add(&mut self, b: &Batch) {
        let (counts, dwell) = self
            .profiles
            .entry(format!("anon:{}", b.anonymous_id))
            .or_default();
        for e in &b.events {
            *counts.entry(e.kind().as_str().to_owned()).or_default() += 1;
            if let Interaction::Dwell { visible_ms } = e.interaction {
                *dwell += u64::from(visible_ms);
            }
        }
        self.popularity.add(b);
    }

    /// Waits until every profile matches (and stays matched for a moment).
    async fn wait_for(&self, origin: &TestOrigin) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let mut all = true;
            let mut last = String::new();
            for (user, (counts, dwell)) in &self.profiles {
                let p = profile(origin, user).await;
                let got: BTreeMap<String, u64> =
                    serde_json::from_value(p["counts"].clone()).unwrap();
                if &got != counts || p["dwell_ms_total"].as_u64() != Some(*dwell) {
                    all = false;
                    last = format!(
                        "{user}: got {got:?} / {}, want {counts:?} / {dwell}",
                        p["dwell_ms_total"]
                    );
                    break;
                }
            }
            if all {
                return;
            }
            assert!(Instant::now() < deadline, "profiles never matched: {last}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

#[tokio::test]
async fn profiles_count_once_through_kill9_restart_and_duplicate_batches() {
    let (prefix, origin) = setup().await;
    let site = origin.site.site_key.clone();
    let group = format!("g-{prefix}");
    let mut expected = Expected::default();
    let mut sent = Vec::new();

    let first = Consumer::start(&prefix, &group);
    for round in 0..6 {
        for u in 0..8 {
            let b = user_batch(&site, &format!("u{u}"), round);
            assert_eq!(origin.post_batch(&b).await.status(), 202);
            expected.add(&b);
            sent.push(b);
        }
    }
    // Kill it mid-stream, once it has applied part of what was sent.
    let deadline = Instant::now() + Duration::from_secs(60);
    while first.applied().await < 50.0 {
        assert!(Instant::now() < deadline, "the consumer applied nothing");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    first.kill9();
    // Client retries of batches already sent: same ids, new offsets.
    for b in sent.iter().step_by(3) {
        assert_eq!(origin.post_batch(b).await.status(), 202);
    }
    let _second = Consumer::start(&prefix, &group);
    for round in 6..8 {
        for u in 0..8 {
            let b = user_batch(&site, &format!("u{u}"), round);
            assert_eq!(origin.post_batch(&b).await.status(), 202);
            expected.add(&b);
        }
    }
    expected.wait_for(&origin).await;
    expected.popularity.check(&origin).await;
    // And the tiers' ledgers agree: nothing lost, nothing counted twice.
    crate::common::kafka::wait_for_clean_audit(&origin, &prefix).await;
}

/// A consumer killed inside a transaction leaves the group's offsets pending
/// until the broker aborts it; restarted under its instance name, it aborts
/// that transaction itself at once. The dead incarnation is played by a
/// transactional producer with the consumer's transactional id that sends the
/// group's offsets for every partition and is never heard from again, with a
/// transaction timeout (60 s) far beyond the test's patience.
#[tokio::test]
async fn a_consumer_restarted_under_its_instance_name_aborts_its_dead_transaction_at_once() {
    use rdkafka::consumer::{BaseConsumer, Consumer as _};
    use rdkafka::producer::{BaseProducer, Producer as _};
    use rdkafka::{Offset, TopicPartitionList};

    let (prefix, origin) = setup().await;
    let site = origin.site.site_key.clone();
    let group = format!("g-{prefix}");
    let brokers = env("KAFKA_BROKERS");
    let member: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", &group)
        .create()
        .unwrap();
    let zombie: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("transactional.id", format!("{group}-victim"))
        .set("transaction.timeout.ms", "60000")
        .create()
        .unwrap();
    zombie.init_transactions(Duration::from_secs(30)).unwrap();
    zombie.begin_transaction().unwrap();
    let mut offsets = TopicPartitionList::new();
    for t in topics() {
        for p in 0..attune_core::routing::PARTITIONS_PER_TOPIC {
            offsets
                .add_partition_offset(&format!("{prefix}{t}"), p, Offset::Offset(0))
                .unwrap();
        }
    }
    let metadata = member.group_metadata().unwrap();
    zombie
        .send_offsets_to_transaction(&offsets, &metadata, Duration::from_secs(30))
        .unwrap();
    // Dead: no commit, no abort, nothing more from it.
    std::mem::forget(zombie);

    let mut expected = Expected::default();
    for u in 0..16 {
        let b = user_batch(&site, &format!("r{u}"), 0);
        assert_eq!(origin.post_batch(&b).await.status(), 202);
        expected.add(&b);
    }
    let started = Instant::now();
    let _restarted = Consumer::start_with(&prefix, &group, None, Some("victim"));
    expected.wait_for(&origin).await;
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(20),
        "the restarted consumer waited {waited:?} for its dead transaction (timeout 60 s)"
    );
}

/// The group's lag as the origin measures it: the dashboard's figure, and the
/// sum of `attune_consumer_lag` on the origin's `/metrics` for these topics.
async fn group_lag(origin: &TestOrigin, prefix: &str) -> (Option<i64>, f64) {
    let dashboard = origin.get_as_site("/v1/dashboard").await;
    let metrics = origin.metrics().await;
    let from_metrics = metrics
        .lines()
        .filter(|l| {
            l.starts_with("attune_consumer_lag{") && l.contains(&format!("topic=\"{prefix}"))
        })
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .sum();
    (dashboard["consumer_lag"]["total"].as_i64(), from_metrics)
}

/// Waits until both lag figures read `want`.
async fn lag_reaches(origin: &TestOrigin, prefix: &str, want: i64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = group_lag(origin, prefix).await;
        if got == (Some(want), want as f64) {
            return;
        }
        assert!(Instant::now() < deadline, "lag {got:?}, want {want}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The newcomer's path: a benchmark fills its topics with a backlog nobody
/// consumes, then the demo starts (its own topics and group, as `cargo xtask
/// demo --stack` runs it): the demo's consumer is current at once, and a
/// reader's click is in their profile within the end-to-end test's
/// consistency window (15 s), consumer start included.
#[tokio::test]
async fn a_benchmarks_backlog_never_reaches_the_demos_consumer() {
    let (_bench_prefix, bench) = setup().await;
    let bench_site = bench.site.site_key.clone();
    let mut backlog = 0;
    for b in 0..200 {
        let events = (0..100)
            .map(|i| event(Interaction::Click, Some(&format!("item-{i}")), now_ms()))
            .collect();
        let batch = batch(&bench_site, &format!("load-{b}"), events);
        assert_eq!(bench.post_batch(&batch).await.status(), 202);
        backlog += 100;
    }

    let (prefix, demo) = setup().await;
    let started = Instant::now();
    let _consumer = Consumer::start(&prefix, &format!("g-{prefix}"));
    let reader = batch(
        &demo.site.site_key,
        "newcomer",
        vec![event(Interaction::Click, Some("article-1"), now_ms())],
    );
    assert_eq!(demo.post_batch(&reader).await.status(), 202);
    loop {
        let p = profile(&demo, "anon:newcomer").await;
        if p["counts"]["click"] == 1 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the reader's click was not in their profile 15 s after the demo started \
             (a backlog of {backlog} events sits on the benchmark's topics): {p}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    lag_reaches(&demo, &prefix, 0).await;
}

/// A group renamed on a running deployment: the new group starts where the
/// store is (nothing applied twice) and says so to Kafka at once, so its lag
/// is 0 with no new event, not the topics' whole history.
#[tokio::test]
async fn a_new_group_on_a_current_store_reports_no_lag() {
    let (prefix, origin) = setup().await;
    let site = origin.site.site_key.clone();
    for u in 0..3 {
        let b = user_batch(&site, &format!("renamed{u}"), 0);
        assert_eq!(origin.post_batch(&b).await.status(), 202);
    }
    // The measured group has never run: all of it is its lag.
    lag_reaches(&origin, &prefix, 30).await;
    // The old group applies everything to the store…
    let old = Consumer::start(&prefix, &format!("old-{prefix}"));
    let applied = |p: Value| -> i64 {
        p["counts"]
            .as_object()
            .map_or(0, |c| c.values().filter_map(Value::as_i64).sum())
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    for u in 0..3 {
        while applied(profile(&origin, &format!("anon:renamed{u}")).await) != 10 {
            assert!(
                Instant::now() < deadline,
                "the old group did not apply the events"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    old.kill9();
    // …and the group the origin measures takes over with nothing new to read.
    let _new = Consumer::start(&prefix, &format!("g-{prefix}"));
    lag_reaches(&origin, &prefix, 0).await;
    for u in 0..3 {
        let p = profile(&origin, &format!("anon:renamed{u}")).await;
        assert_eq!(applied(p.clone()), 10, "applied once: {p}");
    }
}

#[tokio::test]
async fn the_origin_reports_the_groups_true_lag_with_consumers_stopped_started_and_restarted() {
    let (prefix, origin) = setup().await;
    let (site, group) = (origin.site.site_key.clone(), format!("g-{prefix}"));
    // No consumer has ever run: every accepted event is behind.
    for u in 0..3 {
        let b = user_batch(&site, &format!("lag{u}"), 0);
        assert_eq!(origin.post_batch(&b).await.status(), 202);
    }
    lag_reaches(&origin, &prefix, 30).await;

    let first = Consumer::start(&prefix, &group);
    lag_reaches(&origin, &prefix, 0).await;
    first.kill9();
    // Stopped: what arrives now is lag again.
    let b = user_batch(&site, "lag0", 1);
    assert_eq!(origin.post_batch(&b).await.status(), 202);
    lag_reaches(&origin, &prefix, 10).await;
    // Restarted: back to 0, and it stays there (no drift from commits the
    // consumer made through its transactions).
    let _second = Consumer::start(&prefix, &group);
    lag_reaches(&origin, &prefix, 0).await;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(group_lag(&origin, &prefix).await, (Some(0), 0.0));
    }
}

#[tokio::test]
async fn two_consumers_split_the_partitions_and_a_rebalance_loses_nothing() {
    let (prefix, origin) = setup().await;
    let site = origin.site.site_key.clone();
    let group = format!("g-{prefix}");
    let mut expected = Expected::default();
    let a = Consumer::start(&prefix, &group);
    let b = Consumer::start(&prefix, &group);
    let mut round = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    // Enough users that both consumers' partitions get events.
    while a.applied().await == 0.0 || b.applied().await == 0.0 {
        assert!(
            Instant::now() < deadline,
            "both consumers should get partitions"
        );
        for u in 0..16 {
            let batch = user_batch(&site, &format!("r{u}"), round);
            assert_eq!(origin.post_batch(&batch).await.status(), 202);
            expected.add(&batch);
        }
        round += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    a.kill9(); // its partitions move to b
    for u in 0..16 {
        let batch = user_batch(&site, &format!("r{u}"), round + 1);
        assert_eq!(origin.post_batch(&batch).await.status(), 202);
        expected.add(&batch);
    }
    expected.wait_for(&origin).await;
    drop(b);
}

#[tokio::test]
async fn forgetting_a_user_removes_the_profile_and_ignores_later_events() {
    let (prefix, origin) = setup().await;
    let site = origin.site.site_key.clone();
    origin
        .load_items(serde_json::json!({"items": [{"id": "item-1", "tags": ["sports"]}]}))
        .await;
    let _consumer = Consumer::start(&prefix, &format!("g-{prefix}"));
    let mut expected = Expected::default();
    let gone = user_batch(&site, "gone", 0);
    let kept = user_batch(&site, "kept", 0);
    for b in [&gone, &kept] {
        assert_eq!(origin.post_batch(b).await.status(), 202);
        expected.add(b);
    }
    expected.wait_for(&origin).await;
    let p = profile(&origin, "anon:kept").await;
    assert_eq!(
        p["max_scroll"]["item-1"], 47,
        "deepest scroll of item-1: {p}"
    );
    assert!(
        p["affinities"]["sports"].as_f64().unwrap() > 0.0,
        "item-1's category: {p}"
    );
    assert!(p["first_seen_ms"].as_i64().unwrap() <= p["last_seen_ms"].as_i64().unwrap());

    let r = origin
        .http
        .delete(origin.url("/v1/users/anon:gone"))
        .bearer_auth(&origin.site.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        profile(&origin, "anon:gone").await["counts"],
        serde_json::json!({})
    );
    // Later events: ingest ignores them; the consumer would too.
    let later = user_batch(&site, "gone", 1);
    let body: Value = origin.post_batch(&later).await.json().await.unwrap();
    assert_eq!(body["ignored"], 10);
    let more = user_batch(&site, "kept", 1);
    assert_eq!(origin.post_batch(&more).await.status(), 202);
    expected.add(&more);
    expected.profiles.remove("anon:gone");
    expected.wait_for(&origin).await;
    assert_eq!(
        profile(&origin, "anon:gone").await["counts"],
        serde_json::json!({})
    );

    // Every key of the user is gone but the forgotten mark, and stays gone
    // when their events come again: replayed through the consumers' check,
    // and as a round already past that check when the forget arrived.
    use attune_origin::consume::apply::{by_user, ProfileWriter};
    use attune_origin::consume::train::Trainer;
    use attune_origin::store::redis::{user_key, FORGOTTEN_MARK};
    let user_keys = || -> Vec<String> {
        let pattern = format!(
            "{}*",
            user_key(&site, "anon:gone", "").trim_end_matches(':')
        );
        let mut keys: Vec<String> = redis::cmd("KEYS")
            .arg(pattern)
            .query(&mut redis_conn())
            .unwrap();
        keys.sort();
        keys
    };
    let only_the_mark = [user_key(&site, "anon:gone", FORGOTTEN_MARK)];
    assert_eq!(user_keys(), only_the_mark);
    let late: Vec<_> = ["item-1", "item-2"]
        .iter()
        .enumerate()
        .map(|(n, item)| click_as_consumed("late", n as i64, &site, "anon:gone", item, now_ms()))
        .collect();
    let mut writer = ProfileWriter::connect(&env("REDIS_URL")).unwrap();
    let mut trainer =
        Trainer::connect(&env("REDIS_URL"), VersionInfo::first(), Validator::new(1.0)).unwrap();
    let mut replayed = by_user(&late, &SiteWeights::default(), &mut |_, _| {
        Default::default()
    });
    writer.drop_forgotten(&mut replayed).unwrap();
    assert!(replayed.is_empty(), "the consumers' check drops them");
    let mut in_flight = by_user(&late, &SiteWeights::default(), &mut |_, _| {
        Default::default()
    });
    trainer.update(&mut in_flight).unwrap();
    for ((site, user), events) in &in_flight {
        let applied = writer.apply(site, user, events, HalfLife::from_hours(24.0).unwrap(), 1);
        assert_eq!(applied.unwrap(), 0, "the profile script writes nothing");
    }
    assert_eq!(user_keys(), only_the_mark, "nothing of the user came back");
}

/// The consumers train the online model: after a user's clicks, their
/// recommendations come from it, without the items they already clicked.
#[tokio::test]
async fn the_online_model_learns_from_events_and_serves_recommendations() {
    let (prefix, origin) = setup().await;
    let site = origin.site.site_key.clone();
    let items: Vec<Value> = (0..6)
        .map(|i| serde_json::json!({"id": format!("m{i}"), "tags": [if i < 3 { "drama" } else { "comedy" }]}))
        .collect();
    origin
        .load_items(serde_json::json!({ "items": items }))
        .await;
    let before: Value = origin
        .get_as_site("/v1/recommendations?user=anon:learner&k=6")
        .await;
    assert_eq!(before["model"], "popularity", "a newcomer: cold start");

    let _consumer = Consumer::start(&prefix, &format!("g-{prefix}"));
    let t = now_ms();
    let b = batch(
        &site,
        "learner",
        vec![
            event(Interaction::Click, Some("m0"), t),
            event(Interaction::Click, Some("m1"), t),
            event(Interaction::Dwell { visible_ms: 40_000 }, Some("m1"), t),
        ],
    );
    assert_eq!(origin.post_batch(&b).await.status(), 202);
    let mut expected = Expected::default();
    expected.add(&b);
    expected.wait_for(&origin).await;

    let after: Value = origin
        .get_as_site("/v1/recommendations?user=anon:learner&k=6")
        .await;
    assert_eq!(after["model"], "covisit+mf+popularity", "{after}");
    let ids: Vec<&str> = after["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["item"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 4, "six items less the two consumed: {after}");
    assert!(!ids.contains(&"m0") && !ids.contains(&"m1"));
    for i in after["items"].as_array().unwrap() {
        let s = i["score"].as_f64().unwrap();
        assert!(
            (0.0..=1.0).contains(&s),
            "scores are scaled to 0..=1: {after}"
        );
    }
}

/// The consumer validates the online model live, before it learns each
/// engagement: its HR@10 counts on /metrics are exactly those of an offline
/// prequential run of the same stream, and climb once the model has learned
/// the readers' tastes (`common::learning`).
#[tokio::test]
async fn live_validation_on_kafka_and_redis_matches_an_offline_run() {
    let (prefix, origin) = setup().await;
    let consumer = Consumer::start(&prefix, &format!("g-{prefix}"));
    crate::common::learning::live_validation_matches_offline(&origin, || async {
        let n = consumer
            .metric("attune_model_validation_events_total")
            .await;
        let hits = consumer.metric("attune_model_validation_hits_total").await;
        let hr10 = consumer.metric("attune_model_live_hr10").await;
        (n > 0.0).then_some((n as u64, hits as u64, hr10))
    })
    .await;
}

/// A poll that brings only records it cannot apply (a foreign producer's
/// bytes, a newer schema version) dead-letters them as they were, with the
/// reason and their source, commits past them and counts them, without
/// restarting the consumer.
#[tokio::test]
async fn unreadable_records_go_to_the_dead_letter_topic_without_a_restart() {
    use rdkafka::message::Headers;
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use rdkafka::Message;
    let (prefix, origin) = setup().await;
    let site = origin.site.site_key.clone();
    let consumer = Consumer::start(&prefix, &format!("g-{prefix}"));
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", env("KAFKA_BROKERS"))
        .create()
        .unwrap();
    let topic = format!("{prefix}{}", topics().next().unwrap());
    let mut sources = BTreeMap::new();
    // Three are not protobuf; two are version 2 of the record (field 1 = 2,
    // then a site key), which this reader must refuse rather than guess at.
    for i in 0..5u8 {
        let (payload, reason) = if i < 3 {
            (vec![0xc1u8, i], "undecodable")
        } else {
            (
                vec![0x08, 0x02, 0x12, 0x01, b'0' + i],
                "unsupported_version",
            )
        };
        let delivery = producer
            .send(
                FutureRecord::to(&topic).key("x").payload(&payload),
                Duration::from_secs(10),
            )
            .await
            .expect("produced");
        let (partition, offset) = (delivery.partition, delivery.offset);
        sources.insert(format!("{topic}:{partition}:{offset}"), (reason, payload));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while consumer.metric("attune_consumer_dead_letters_total").await < 5.0 {
        assert!(
            Instant::now() < deadline,
            "the poison records were never dead-lettered"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let dead_letters = format!("{prefix}{}", attune_core::routing::DEAD_LETTERS);
    let letters = crate::common::kafka::read_topic(
        &env("KAFKA_BROKERS"),
        &dead_letters,
        5,
        Duration::from_secs(30),
    );
    let mut got = BTreeMap::new();
    for m in &letters {
        let header = |name: &str| {
            let headers = m.headers().expect("dead letters have headers");
            headers
                .iter()
                .find(|h| h.key == name)
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        assert!(header("attune-detail").is_some_and(|d| !d.is_empty()));
        assert_eq!(m.key(), Some(&b"x"[..]), "the record's key is kept");
        let reason = match header("attune-reason").as_deref() {
            Some("undecodable") => "undecodable",
            Some("unsupported_version") => "unsupported_version",
            other => panic!("unexpected reason {other:?}"),
        };
        got.insert(
            header("attune-source").unwrap(),
            (reason, m.payload().unwrap().to_vec()),
        );
    }
    assert_eq!(
        got, sources,
        "each record once, as it was, with its reason and source"
    );
    // The stream goes on: a valid batch after them is applied.
    let mut expected = Expected::default();
    let b = user_batch(&site, "after-poison", 0);
    assert_eq!(origin.post_batch(&b).await.status(), 202);
    expected.add(&b);
    expected.wait_for(&origin).await;
    assert_eq!(
        consumer.metric("attune_consumer_restarts_total").await,
        0.0,
        "skipping poison must not restart the consumer"
    );
}

/// Co-visitation in the real pipeline: two readers go a → b; a third who
/// reads a is recommended b first, ahead of a more popular item. The
/// duplicate batches add nothing to the counts.
#[tokio::test]
async fn a_reader_is_recommended_what_readers_of_the_same_item_read_next() {
    let (prefix, origin) = setup().await;
    let site = origin.site.site_key.clone();
    let items: Vec<Value> = ["a", "b", "c", "d"]
        .iter()
        .map(|id| serde_json::json!({"id": id, "tags": ["news"]}))
        .collect();
    origin
        .load_items(serde_json::json!({ "items": items }))
        .await;
    let _consumer = Consumer::start(&prefix, &format!("g-{prefix}"));
    let t = now_ms();
    let mut expected = Expected::default();
    let mut send = async |b: Batch, times: usize| {
        for _ in 0..times {
            assert_eq!(origin.post_batch(&b).await.status(), 202);
        }
        expected.add(&b);
    };
    for fan in 0..8 {
        let clicks = vec![event(Interaction::Click, Some("c"), t)];
        send(batch(&site, &format!("fan{fan}"), clicks), 1).await;
    }
    for reader in ["r1", "r2"] {
        let path = vec![
            event(Interaction::Click, Some("a"), t),
            event(Interaction::Click, Some("b"), t + 1),
        ];
        send(batch(&site, reader, path), 2).await;
    }
    send(
        batch(
            &site,
            "r3",
            vec![event(Interaction::Click, Some("a"), t + 2)],
        ),
        1,
    )
    .await;
    expected.wait_for(&origin).await;

    let mut redis = attune_origin::store::redis::conn::AsyncConn::open(&env("REDIS_URL"))
        .await
        .unwrap();
    let (pair, norm): (f64, f64) = redis::pipe()
        .hget(format!("attune:{{{site}}}:covisit:a"), "b")
        .hget(format!("attune:{{{site}}}:covisit_norm"), "a")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(
        (pair, norm),
        (2.0, 3.0),
        "two readers went a → b, three read a"
    );

    let recs: Value = origin
        .get_as_site("/v1/recommendations?user=anon:r3&k=3")
        .await;
    assert_eq!(recs["items"][0]["item"], "b", "{recs}");
    let cold: Value = origin
        .get_as_site("/v1/recommendations?user=anon:newcomer&k=3")
        .await;
    assert_eq!(
        cold["items"][0]["item"], "c",
        "popularity for a newcomer: {cold}"
    );
}

/// Cold start by referrer: readers who came from a search engine read `a`,
/// more readers who came directly read `b`. A newcomer whose page came from
/// search is ranked by what search readers read; one without a referrer by
/// the site's popularity.
#[tokio::test]
async fn a_newcomer_from_search_gets_what_search_readers_read() {
    let (prefix, origin) = setup().await;
    let site = origin.site.site_key.clone();
    let _consumer = Consumer::start(&prefix, &format!("g-{prefix}"));
    origin
        .load_items(serde_json::json!({"items": [
            {"id": "a", "tags": ["x"]}, {"id": "b", "tags": ["x"]}
        ]}))
        .await;
    let t = now_ms();
    let mut expected = Expected::default();
    for (readers, item, referrer) in [(8, "a", Some("https://www.google.com/")), (10, "b", None)] {
        for r in 0..readers {
            let mut view = event(Interaction::PageView, None, t);
            view.context = Some(attune_core::Context {
                referrer: referrer.map(Into::into),
                ..Default::default()
            });
            let b = batch(
                &site,
                &format!("{item}-reader-{r}"),
                vec![view, event(Interaction::Click, Some(item), t)],
            );
            assert_eq!(origin.post_batch(&b).await.status(), 202);
            expected.add(&b);
        }
    }
    expected.wait_for(&origin).await;
    let first = |query: &'static str| {
        let origin = &origin;
        async move {
            let r: Value = origin
                .get_as_site(&format!(
                    "/v1/recommendations?user=anon:newcomer&k=2{query}"
                ))
                .await;
            (
                r["items"][0]["item"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                r,
            )
        }
    };
    let (direct, r) = first("").await;
    assert_eq!(direct, "b", "the site's most read: {r}");
    let (from_search, r) = first("&referrer=https%3A%2F%2Fwww.bing.com%2Fsearch").await;
    assert_eq!(from_search, "a", "what search readers read: {r}");
}

/// A click on `item` by `user` as the consumers receive it, at `offset` of
/// partition 0 of `topic` (for tests that drive the trainer directly).
fn click_as_consumed(
    topic: &str,
    offset: i64,
    site: &str,
    user: &str,
    item: &str,
    t: i64,
) -> attune_origin::consume::apply::Incoming {
    use attune_origin::record::{Device, EventRecord};
    attune_origin::consume::apply::Incoming {
        topic: topic.into(),
        partition: 0,
        offset,
        record: EventRecord {
            site_key: site.into(),
            user_id: user.into(),
            anonymous_id: user.into(),
            event: event(Interaction::Click, Some(item), t),
            received_at_ms: t,
            clock_skew_ms: 0,
            corrected_ts_ms: t,
            device: Device::default(),
            attributes: Default::default(),
            segments: Vec::new(),
            attributes_unknown: false,
        },
    }
}

/// A round replayed after a crash between the popularity credit and the
/// profile script (the ids not yet seen) credits nothing twice, site-wide or
/// in a segment: the scopes' offset watermarks hold.
#[test]
fn a_replayed_round_credits_popularity_once() {
    use attune_core::{DecayedScore, FeedbackWeights, HalfLife};
    use attune_origin::consume::apply::by_user;
    use attune_origin::consume::popularity::PopularityWriter;

    let site = format!("pop{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let t = now_ms();
    let incoming: Vec<_> = (0..3)
        .map(|n| {
            let mut m = click_as_consumed("replay", n, &site, &format!("u{n}"), "a", t);
            m.record.segments = vec!["device:mobile".into()];
            m
        })
        .collect();
    let half_life = HalfLife::from_hours(24.0).unwrap();
    let mut writer = PopularityWriter::connect(&env("REDIS_URL"), half_life).unwrap();
    for _ in 0..2 {
        let groups = by_user(&incoming, &SiteWeights::default(), &mut |_, _| {
            Default::default()
        });
        writer.credit(&groups).unwrap();
    }
    let mut redis = attune_origin::store::redis::conn::SyncConn::open(&env("REDIS_URL")).unwrap();
    let click = FeedbackWeights::default().weight(&Interaction::Click);
    for scope in [site.clone(), format!("{site}~device:mobile")] {
        let stored: String = redis::cmd("HGET")
            .arg(format!("attune:{{{scope}}}:pop"))
            .arg("a")
            .query(&mut redis)
            .unwrap();
        let value: f64 = stored.split(',').next().unwrap().parse().unwrap();
        let want = DecayedScore::point(3.0 * click, t).value;
        assert!((value - want).abs() < 1e-9, "{scope}: {value}, want {want}");
    }
}

/// A round replayed after a crash before its offsets commit counts each
/// record once in the reconciliation ledger: the offset watermarks hold.
#[tokio::test]
async fn a_replayed_round_counts_each_record_once_in_the_ledger() {
    use attune_origin::consume::apply::by_user;
    use attune_origin::consume::ledger::{entries, LedgerWriter};
    use attune_origin::ledger::{minute_of, Measure};
    use attune_origin::store::Store;

    let site = format!("led{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let topic = format!("replay-{site}");
    let t = now_ms();
    let incoming: Vec<_> = (0..3)
        .map(|n| click_as_consumed(&topic, n, &site, &format!("u{n}"), "a", t))
        .collect();
    let mut writer = LedgerWriter::connect(&env("REDIS_URL")).unwrap();
    for _ in 0..2 {
        let groups = by_user(&incoming, &SiteWeights::default(), &mut |_, _| {
            Default::default()
        });
        writer
            .record(&entries(&incoming, &groups, &[], ""))
            .unwrap();
    }
    let store = attune_origin::store::redis::RedisStore::connect(&env("REDIS_URL"))
        .await
        .unwrap();
    let minute = minute_of(t);
    let counts = store
        .ledger(std::slice::from_ref(&site), minute..minute + 1)
        .await
        .unwrap();
    let counted: Vec<(Measure, u64)> = counts.iter().map(|((_, m), n)| (*m, *n)).collect();
    assert_eq!(counted, [(Measure::Applied, 3)]);
}

/// A round replayed after a crash between the model's writes and the
/// profile script (the ids not yet seen) adds no co-visit twice: the rows'
/// offset watermarks hold.
#[test]
fn a_replayed_round_counts_each_co_visit_once() {
    use attune_origin::consume::apply::{by_user, Incoming};
    use attune_origin::consume::train::Trainer;

    let site = format!("replay{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let t = now_ms();
    let incoming: Vec<Incoming> = ["a", "b"]
        .iter()
        .enumerate()
        .map(|(n, item)| click_as_consumed("replay", n as i64, &site, "u", item, t))
        .collect();
    let mut trainer =
        Trainer::connect(&env("REDIS_URL"), VersionInfo::first(), Validator::new(1.0)).unwrap();
    for _ in 0..2 {
        let mut groups = by_user(&incoming, &SiteWeights::default(), &mut |_, _| {
            Default::default()
        });
        trainer.update(&mut groups).unwrap();
    }
    let mut redis = attune_origin::store::redis::conn::SyncConn::open(&env("REDIS_URL")).unwrap();
    let (ab, ba, norm_b): (f64, f64, f64) = redis::pipe()
        .hget(format!("attune:{{{site}}}:covisit:a"), "b")
        .hget(format!("attune:{{{site}}}:covisit:b"), "a")
        .hget(format!("attune:{{{site}}}:covisit_norm"), "b")
        .query(&mut redis)
        .unwrap();
    assert_eq!((ab, ba, norm_b), (1.0, 1.0, 1.0));
}

/// A hub item co-visited with more items than its row may hold: the Redis
/// trainer's script trims the row exactly as `Neighbours::apply` (what the
/// eval scores) does — every row equal cell for cell — and the items every
/// reader shared keep their exact counts.
#[test]
fn a_popular_items_row_is_trimmed_as_the_model_trims_it() {
    use attune_origin::consume::apply::by_user;
    use attune_origin::consume::train::Trainer;
    use attune_origin::model::covisit::{push, visit, CovisitConfig, Neighbours};
    use std::collections::HashMap;

    let site = format!("trim{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let cfg = CovisitConfig::default();
    let t = now_ms();
    // 30 readers: the hub, five items everyone reads, then 15 of their own.
    let paths: Vec<(String, Vec<String>)> = (0..30)
        .map(|r| {
            let own = (0..15).map(|k| format!("own{r:02}-{k:02}"));
            let shared = (1..=5).map(|s| format!("shared{s}"));
            let path = std::iter::once("hub".to_string()).chain(shared).chain(own);
            (format!("r{r:02}"), path.collect())
        })
        .collect();
    let mut incoming = Vec::new();
    let mut expected = Neighbours::default();
    for (user, path) in &paths {
        let mut window = Vec::new();
        for item in path {
            let offset = incoming.len() as i64;
            incoming.push(click_as_consumed("trim", offset, &site, user, item, t));
            if let Some(d) = visit(&window, item, &cfg) {
                expected.apply(&d, &cfg);
            }
            push(&mut window, item, cfg.window);
        }
    }
    let mut trainer =
        Trainer::connect(&env("REDIS_URL"), VersionInfo::first(), Validator::new(1.0)).unwrap();
    let mut groups = by_user(&incoming, &SiteWeights::default(), &mut |_, _| {
        Default::default()
    });
    trainer.update(&mut groups).unwrap();

    let mut redis = attune_origin::store::redis::conn::SyncConn::open(&env("REDIS_URL")).unwrap();
    let mut pipe = redis::pipe();
    let expected = expected.rows();
    let rows: Vec<&String> = expected.keys().collect();
    for row in &rows {
        pipe.hgetall(format!("attune:{{{site}}}:covisit:{row}"));
    }
    let stored: Vec<HashMap<String, f64>> = pipe.query(&mut redis).unwrap();
    let hub = &expected["hub"];
    assert!(
        hub.len() <= 2 * cfg.row_cap && hub.len() < 5 + 30 * 15,
        "the hub's row was trimmed: {} cells",
        hub.len()
    );
    for s in 1..=5 {
        assert_eq!(
            hub[&format!("shared{s}")],
            30.0,
            "shared items keep their counts"
        );
    }
    for (row, got) in rows.iter().zip(&stored) {
        let want = &expected[*row];
        assert!(
            got == want,
            "row {row}: {} cells stored, {} expected",
            got.len(),
            want.len()
        );
    }
}

/// A backup of one test's part of the shared Redis: every key of its site
/// (users, items, popularity, model, ledger), and its topics' fields of the
/// deployment-wide position hashes. What a restore from a snapshot would do
/// to the whole store, without touching the other tests' data.
struct Backup {
    site: String,
    prefix: String,
    keys: Vec<(String, Vec<u8>)>,
    fields: Vec<(&'static str, Vec<(String, String)>)>,
}

const POSITION_HASHES: [&str; 1] = [attune_origin::store::redis::RESUME_KEY];

impl Backup {
    fn site_keys(
        conn: &mut attune_origin::store::redis::conn::SyncConn,
        site: &str,
    ) -> Vec<String> {
        let pattern = format!("attune:{{{site}*");
        redis::cmd("KEYS").arg(pattern).query(conn).unwrap()
    }

    fn take(site: &str, prefix: &str) -> Backup {
        let mut conn = redis_conn();
        let keys = Self::site_keys(&mut conn, site)
            .into_iter()
            .map(|k| {
                let dump: Vec<u8> = redis::cmd("DUMP").arg(&k).query(&mut conn).unwrap();
                (k, dump)
            })
            .collect();
        let fields = POSITION_HASHES
            .into_iter()
            .map(|hash| {
                let all: BTreeMap<String, String> =
                    redis::cmd("HGETALL").arg(hash).query(&mut conn).unwrap();
                let ours = all.into_iter().filter(|(f, _)| f.starts_with(prefix));
                (hash, ours.collect())
            })
            .collect();
        Backup {
            site: site.to_owned(),
            prefix: prefix.to_owned(),
            keys,
            fields,
        }
    }

    fn restore(&self) {
        let mut conn = redis_conn();
        for k in Self::site_keys(&mut conn, &self.site) {
            let _: () = redis::cmd("DEL").arg(&k).query(&mut conn).unwrap();
        }
        for (k, dump) in &self.keys {
            let _: () = redis::cmd("RESTORE")
                .arg(k)
                .arg(0)
                .arg(dump.as_slice())
                .query(&mut conn)
                .unwrap();
        }
        for (hash, saved) in &self.fields {
            let all: BTreeMap<String, String> =
                redis::cmd("HGETALL").arg(*hash).query(&mut conn).unwrap();
            for field in all.keys().filter(|f| f.starts_with(&self.prefix)) {
                let _: () = redis::cmd("HDEL")
                    .arg(*hash)
                    .arg(field)
                    .query(&mut conn)
                    .unwrap();
            }
            for (field, value) in saved {
                let _: () = redis::cmd("HSET")
                    .arg(*hash)
                    .arg(field)
                    .arg(value)
                    .query(&mut conn)
                    .unwrap();
            }
        }
    }
}

fn redis_conn() -> attune_origin::store::redis::conn::SyncConn {
    attune_origin::store::redis::conn::SyncConn::open(&env("REDIS_URL")).unwrap()
}

/// Redis restored from a backup taken mid-stream (or a host crash that lost
/// its last second): the consumers resume each partition from the store's
/// own position, so every event after the backup is applied again, once —
/// profiles, popularity, the model and the reconciliation ledger.
#[tokio::test]
async fn a_store_restored_from_a_backup_is_rebuilt_from_kafka() {
    let (prefix, origin) = setup().await;
    let site = origin.site.site_key.clone();
    let group = format!("g-{prefix}");
    let mut expected = Expected::default();
    let consumer = Consumer::start(&prefix, &group);
    for u in 0..4 {
        let b = user_batch(&site, &format!("u{u}"), 0);
        assert_eq!(origin.post_batch(&b).await.status(), 202);
        expected.add(&b);
    }
    expected.wait_for(&origin).await;
    let backup = Backup::take(&site, &prefix);
    let at_backup = profile(&origin, "anon:u0").await["counts"].clone();

    for round in 1..3 {
        for u in 0..4 {
            let b = user_batch(&site, &format!("u{u}"), round);
            assert_eq!(origin.post_batch(&b).await.status(), 202);
            expected.add(&b);
        }
    }
    expected.wait_for(&origin).await;
    consumer.kill9();
    backup.restore();
    assert_eq!(
        profile(&origin, "anon:u0").await["counts"],
        at_backup,
        "the restore took the store back to the backup"
    );

    let _again = Consumer::start(&prefix, &group);
    expected.wait_for(&origin).await;
    expected.popularity.check(&origin).await;
    // The model learned the items clicked after the backup again.
    let items: Vec<String> = redis::cmd("HKEYS")
        .arg(attune_origin::store::redis::site_key(&site, "item_vectors"))
        .query(&mut redis_conn())
        .unwrap();
    for round in 1..3 {
        let clicked = format!("item-{round}-1");
        assert!(items.contains(&clicked), "no factors for {clicked}");
    }
    // The consumers' counts agree with the topics. Ingest's counts since the
    // backup went back with it, so Kafka holds more than they say: the
    // audit's false alarm on the safe side, never a hidden loss.
    crate::common::kafka::wait_for_audit(&origin, &prefix, |gap| {
        gap.boundary == attune_origin::audit::Boundary::IngestToKafka
            && gap.downstream > gap.upstream
    })
    .await;
}

/// The Redis trainer stores exactly the factor steps the model computes
/// (the item script's vector add, value for value), and a replayed round
/// leaves the item's vector as it was (its offset watermark holds).
#[test]
fn item_factors_in_redis_are_the_models_steps_and_a_replay_changes_nothing() {
    use attune_core::FeedbackWeights;
    use attune_origin::consume::apply::by_user;
    use attune_origin::consume::train::Trainer;
    use attune_origin::model::online::learn_factors;
    use attune_origin::model::unpack;
    use attune_origin::model::{initial, MfConfig};
    use attune_origin::store::redis::site_key;
    use std::collections::HashMap;

    let cfg = MfConfig::default();
    let site = format!("mf{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let incoming = vec![click_as_consumed("factors", 0, &site, "u", "a", now_ms())];
    let mut trainer =
        Trainer::connect(&env("REDIS_URL"), VersionInfo::first(), Validator::new(1.0)).unwrap();
    let stored = |conn: &mut attune_origin::store::redis::conn::SyncConn| -> Vec<f32> {
        let bytes: Vec<u8> = redis::cmd("HGET")
            .arg(site_key(&site, "item_vectors"))
            .arg("a")
            .query(conn)
            .unwrap();
        unpack(&bytes, cfg.dim).unwrap()
    };
    let mut conn = redis_conn();
    let mut groups = by_user(&incoming, &SiteWeights::default(), &mut |_, _| {
        Default::default()
    });
    trainer.update(&mut groups).unwrap();
    let after_one = stored(&mut conn);

    // The same step in memory: a fresh trainer has no negatives to draw yet.
    let mut user = initial(&format!("{site}/u"), cfg.dim);
    let mut vectors = HashMap::from([("a".to_owned(), initial(&format!("{site}/a"), cfg.dim))]);
    let weight = FeedbackWeights::default().weight(&Interaction::Click) as f32;
    learn_factors(&mut user, &mut vectors, "a", weight, &[], &cfg);
    let start = initial(&format!("{site}/a"), cfg.dim);
    assert_ne!(after_one, start, "the click moved the item");
    for (k, (got, want)) in after_one.iter().zip(&vectors["a"]).enumerate() {
        assert!(
            (got - want).abs() <= 1e-6 * want.abs().max(1e-3),
            "factor {k}: Redis {got}, model {want}"
        );
    }

    let mut groups = by_user(&incoming, &SiteWeights::default(), &mut |_, _| {
        Default::default()
    });
    trainer.update(&mut groups).unwrap();
    assert_eq!(stored(&mut conn), after_one, "a replay changes nothing");
}

/// A site's `[sites.weights]` reach the consumers: a click counts in the
/// reader's category interest with the weight the sites file gives it.
#[tokio::test]
async fn a_sites_feedback_weights_decide_what_a_click_is_worth() {
    let (prefix, origin) = setup().await;
    let config = origin.sites_file().to_owned();
    let sites = std::fs::read_to_string(&config).unwrap() + "[sites.weights]\nclick = 7.5\n";
    std::fs::write(&config, sites).unwrap();
    origin
        .load_items(serde_json::json!({"items": [{"id": "w1", "tags": ["weighted"]}]}))
        .await;
    let _consumer = Consumer::start_with(&prefix, &format!("g-{prefix}"), Some(&config), None);
    let b = batch(
        &origin.site.site_key,
        "weighed",
        vec![event(Interaction::Click, Some("w1"), now_ms())],
    );
    assert_eq!(origin.post_batch(&b).await.status(), 202);
    let mut expected = Expected::default();
    expected.add(&b);
    expected.wait_for(&origin).await;
    let p = profile(&origin, "anon:weighed").await;
    let interest = p["affinities"]["weighted"].as_f64().unwrap();
    assert!((interest - 7.5).abs() < 1e-3, "the click's weight: {p}");
}

/// A glance is not a read: short dwells on a long article leave it among
/// the reader's recommendations; half its reading time marks it consumed as
/// a click does.
#[tokio::test]
async fn only_reads_and_clicks_mark_an_item_consumed() {
    let (prefix, origin) = setup().await;
    // 1,150 words: five minutes at the default 230 words a minute.
    let items: Vec<Value> = ["glanced", "read", "clicked", "other"]
        .iter()
        .map(|id| serde_json::json!({"id": id, "tags": ["x"], "length_words": 1150}))
        .collect();
    origin
        .load_items(serde_json::json!({ "items": items }))
        .await;
    let _consumer = Consumer::start(&prefix, &format!("g-{prefix}"));
    let t = now_ms();
    let dwell = |visible_ms| Interaction::Dwell { visible_ms };
    let b = batch(
        &origin.site.site_key,
        "reader",
        vec![
            event(dwell(2_000), Some("glanced"), t),
            event(dwell(160_000), Some("read"), t),
            event(dwell(120_000), Some("glanced"), t),
            event(Interaction::Click, Some("clicked"), t),
        ],
    );
    assert_eq!(origin.post_batch(&b).await.status(), 202);
    let mut expected = Expected::default();
    expected.add(&b);
    expected.wait_for(&origin).await;
    let recs = origin
        .get_as_site("/v1/recommendations?user=anon:reader&k=10")
        .await;
    let ids: Vec<&str> = recs["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["item"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"glanced") && ids.contains(&"other"), "{recs}");
    assert!(
        !ids.contains(&"read") && !ids.contains(&"clicked"),
        "{recs}"
    );
}

/// A served rail end to end on Kafka and Redis: the reply's serve id names
/// its ranker; the page's impressions and clicks with that serve id and
/// their positions are counted once each (a resent batch adds nothing) per
/// ranker and position, on the dashboard and on `/metrics`; a serve id the
/// client made up falls into `unknown` and a far position into `10+`; a
/// click on a served item counts as a served click; an impression of a
/// served item moves the item's factors (an exposure), one without a rail
/// slot teaches the model nothing.
#[tokio::test]
async fn served_rails_are_counted_once_by_ranker_and_position_and_teach_the_model() {
    use attune_core::{FeedbackWeights, Slot};
    use attune_origin::store::redis::site_key;

    let (prefix, origin) = setup().await;
    let site = origin.site.site_key.clone();
    let items: Vec<Value> = ["r0", "r1", "r2", "r3", "plain"]
        .iter()
        .map(|id| serde_json::json!({"id": id, "tags": [format!("tag-{id}")]}))
        .collect();
    origin
        .load_items(serde_json::json!({ "items": items }))
        .await;
    let served: Value = origin
        .get_as_site("/v1/recommendations?user=anon:railer&k=4")
        .await;
    assert_eq!(served["ranker"], "popularity", "a newcomer: {served}");
    let serve_id = served["serve_id"].as_str().unwrap().to_owned();
    assert!(serve_id.starts_with("popularity."), "{serve_id}");
    let again: Value = origin
        .get_as_site("/v1/recommendations?user=anon:railer&k=4")
        .await;
    assert_ne!(again["serve_id"], served["serve_id"], "one id per serve");

    let _consumer = Consumer::start(&prefix, &format!("g-{prefix}"));
    let t = now_ms();
    let slotted = |kind, item: &str, serve: &str, position| {
        let mut e = event(kind, Some(item), t);
        e.slot = Some(Slot {
            serve_id: serve.into(),
            position,
        });
        e
    };
    let mut events: Vec<_> = ["r0", "r1", "r2", "r3"]
        .iter()
        .enumerate()
        .map(|(p, item)| slotted(Interaction::Impression, item, &serve_id, p as u8))
        .collect();
    events.push(slotted(Interaction::Click, "r1", &serve_id, 1));
    events.push(slotted(
        Interaction::Impression,
        "r3",
        "made-up-by-a-client",
        12,
    ));
    events.push(event(Interaction::Impression, Some("plain"), t));
    let b = batch(&site, "railer", events);
    assert_eq!(origin.post_batch(&b).await.status(), 202);
    assert_eq!(origin.post_batch(&b).await.status(), 202, "a resend");
    let mut expected = Expected::default();
    expected.add(&b);
    expected.wait_for(&origin).await;

    let dashboard = origin.get_as_site("/v1/dashboard").await;
    let rails: Vec<(String, String, u64, u64)> = dashboard["rails"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["ranker"].as_str().unwrap().to_owned(),
                r["position"].as_str().unwrap().to_owned(),
                r["shown"].as_u64().unwrap(),
                r["clicked"].as_u64().unwrap(),
            )
        })
        .collect();
    let row = |ranker: &str, position: &str, shown, clicked| {
        (ranker.to_owned(), position.to_owned(), shown, clicked)
    };
    assert_eq!(
        rails,
        [
            row("popularity", "0", 1, 0),
            row("popularity", "1", 1, 1),
            row("popularity", "2", 1, 0),
            row("popularity", "3", 1, 0),
            row("unknown", "10+", 1, 0),
        ],
        "{dashboard}"
    );
    let metrics = origin.metrics().await;
    let line = format!(
        "attune_rail_clicks_total{{site=\"{site}\",ranker=\"popularity\",position=\"1\"}} 1"
    );
    assert!(metrics.contains(&line), "{line} in:\n{metrics}");

    // The served click is worth a served click in the reader's interest.
    let p = profile(&origin, "anon:railer").await;
    let interest = p["affinities"]["tag-r1"].as_f64().unwrap();
    let served_click = FeedbackWeights::default().served_click;
    assert!((interest - served_click).abs() < 1e-3, "{p}");

    // Exposures step the shown items' factors; a plain impression does not.
    let mut conn = redis_conn();
    let vectors: Vec<Option<Vec<u8>>> = ["r0", "r2", "plain"]
        .iter()
        .map(|i| {
            redis::cmd("HGET")
                .arg(site_key(&site, "item_vectors"))
                .arg(i)
                .query(&mut conn)
                .unwrap()
        })
        .collect();
    let start = |item: &str| {
        attune_origin::model::pack(&attune_origin::model::initial(
            &format!("{site}/{item}"),
            attune_origin::model::MfConfig::default().dim,
        ))
    };
    for (item, stored) in ["r0", "r2"].iter().zip(&vectors) {
        let stored = stored.as_ref().expect("an exposed item has factors");
        assert_ne!(stored, &start(item), "{item}'s exposure moved it");
    }
    assert_eq!(vectors[2], None, "a plain impression teaches nothing");
}
