//! Reading back what the origin wrote to the real Kafka.

use std::time::{Duration, Instant};

use attune_core::routing::PARTITIONS_PER_TOPIC;
use attune_origin::record::EventRecord;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

fn consumer(brokers: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("it-{}", uuid::Uuid::now_v7()))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer")
}

/// High watermark of every partition of `topic`.
pub fn high_watermarks(brokers: &str, topic: &str) -> Vec<(i32, i64)> {
    let c = consumer(brokers);
    (0..PARTITIONS_PER_TOPIC)
        .map(|p| {
            let (_, high) = c
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .expect("watermarks");
            (p, high)
        })
        .collect()
}

/// Every message with `key` written to `topic` after `from`, until `n` arrived
/// or `timeout` passed: (partition, record).
pub fn read_key(
    brokers: &str,
    topic: &str,
    from: &[(i32, i64)],
    key: &str,
    n: usize,
    timeout: Duration,
) -> Vec<(i32, EventRecord)> {
    let c = consumer(brokers);
    let mut tpl = TopicPartitionList::new();
    for (p, offset) in from {
        tpl.add_partition_offset(topic, *p, Offset::Offset(*offset))
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while out.len() < n && Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            if m.key() == Some(key.as_bytes()) {
                let record = EventRecord::decode(m.payload().unwrap()).expect("record decodes");
                out.push((m.partition(), record));
            }
        }
    }
    out
}
