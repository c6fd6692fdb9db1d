//! Round trips through the real Kafka and Redis that `cargo xtask test`
//! starts (`cargo xtask stack up` for a manual run; then export the variables
//! in target/stack/env).

use std::time::Duration;

use attune_core::codec::{decode_msgpack, encode_msgpack};
use attune_core::routing::{partition_key, topic, topics, PARTITIONS_PER_TOPIC};
use attune_core::{Batch, Event, EventKind, Interaction, Limits};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: these tests need the real stack. Run `cargo xtask test`, \
             or `cargo xtask stack up` and export the variables in target/stack/env"
        )
    })
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn one_event_batch(kind: EventKind, user: &str) -> Batch {
    let ts_ms = now_ms();
    let interaction = match kind {
        EventKind::PageView => Interaction::PageView,
        EventKind::Click => Interaction::Click,
        EventKind::Scroll => Interaction::Scroll { depth_pct: 64 },
        EventKind::Dwell => Interaction::Dwell { visible_ms: 12_345 },
        EventKind::Impression => Interaction::Impression,
    };
    Batch {
        site_key: "it-site".into(),
        anonymous_id: user.into(),
        user_token: None,
        sent_at_ms: ts_ms,
        dropped: 0,
        events: vec![Event {
            id: uuid::Uuid::now_v7(),
            ts_ms,
            interaction,
            item: Some("item-1".into()),
            context: None,
        }],
    }
}

/// Every interaction topic exists with its partitions; an event produced with
/// an idempotent, acks=all producer comes back from exactly the partition and
/// offset Kafka acknowledged, with its key, and decodes to the same batch; one
/// user's key always lands on one partition.
#[tokio::test]
async fn events_round_trip_through_their_kind_topics() {
    let brokers = env("KAFKA_BROKERS");
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()
        .expect("producer");
    let metadata = producer
        .client()
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata");
    for name in topics() {
        let t = metadata
            .topics()
            .iter()
            .find(|t| t.name() == name)
            .unwrap_or_else(|| panic!("topic {name} missing"));
        assert!(t.partitions().len() >= PARTITIONS_PER_TOPIC as usize);
    }

    let user = format!("user-{}", uuid::Uuid::now_v7().simple());
    let key = partition_key("it-site", &user);
    for kind in EventKind::ALL {
        let batch = one_event_batch(kind, &user);
        let payload = encode_msgpack(&batch);
        let mut partitions = Vec::new();
        let mut acked = None;
        // Twice, to see the key keep its partition.
        for _ in 0..2 {
            let delivery = producer
                .send(
                    FutureRecord::to(topic(kind)).key(&key).payload(&payload),
                    Duration::from_secs(10),
                )
                .await
                .map_err(|(e, _)| e)
                .expect("Kafka acknowledged the event");
            partitions.push(delivery.partition);
            acked.get_or_insert((delivery.partition, delivery.offset));
        }
        assert_eq!(partitions[0], partitions[1], "{kind}: key moved partition");
        let (partition, offset) = acked.unwrap();

        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", format!("it-{}", uuid::Uuid::now_v7()))
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .create()
            .expect("consumer");
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(topic(kind), partition, Offset::Offset(offset))
            .unwrap();
        consumer.assign(&assignment).unwrap();
        let message = tokio::time::timeout(Duration::from_secs(20), consumer.recv())
            .await
            .expect("message arrives within 20 s")
            .expect("consume");
        assert_eq!(message.key(), Some(key.as_bytes()));
        let decoded = decode_msgpack(message.payload().unwrap(), &Limits::default())
            .expect("payload decodes");
        assert_eq!(decoded, batch);
    }
}

/// Redis answers, persists with an append-only file, and an atomic script
/// (the shape of the profile updates to come) applies once per event id.
#[tokio::test]
async fn redis_writes_and_reads_atomically() {
    let client = redis::Client::open(env("REDIS_URL")).expect("REDIS_URL");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("Redis answers");
    let appendonly: (String, String) = redis::cmd("CONFIG")
        .arg("GET")
        .arg("appendonly")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(appendonly.1, "yes");

    let user = format!("{{it:{}}}", uuid::Uuid::now_v7().simple());
    let (profile, seen) = (format!("{user}:profile"), format!("{user}:seen"));
    let apply = redis::Script::new(
        r"if redis.call('SADD', KEYS[2], ARGV[1]) == 1 then
              return redis.call('HINCRBY', KEYS[1], 'clicks', 1)
          end
          return tonumber(redis.call('HGET', KEYS[1], 'clicks'))",
    );
    for event_id in ["e1", "e2", "e1"] {
        let _: i64 = apply
            .key(&profile)
            .key(&seen)
            .arg(event_id)
            .invoke_async(&mut conn)
            .await
            .unwrap();
    }
    let clicks: i64 = redis::cmd("HGET")
        .arg(&profile)
        .arg("clicks")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(clicks, 2, "the repeated event id counted once");
    let _: () = redis::cmd("DEL")
        .arg(&profile)
        .arg(&seen)
        .query_async(&mut conn)
        .await
        .unwrap();
}
