//! The consumer group's lag, measured from outside the group: per partition,
//! the log end (high watermark) minus the offset the group committed.
//!
//! The consumers commit through their transactional producer
//! (`send_offsets_to_transaction`), which librdkafka's own `consumer_lag`
//! statistic never sees; and a consumer that is down reports nothing. So the
//! origin, which runs whether or not the consumers do, asks the brokers once
//! a second. A partition the group never committed counts from its low
//! watermark (the consumers start at the earliest offset).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How often the lag is measured.
pub const EVERY: Duration = Duration::from_secs(1);
const TIMEOUT: Duration = Duration::from_secs(5);

/// One measurement of the group's lag.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GroupLag {
    /// The consumer group.
    pub group: String,
    /// Records not yet consumed, summed over every partition.
    pub total: i64,
    /// Per `topic/partition`.
    pub by_partition: BTreeMap<String, i64>,
    /// When it was measured, Unix ms.
    pub measured_at_ms: i64,
}

/// The latest measurement, refreshed by a background thread while this lives.
pub struct LagProbe {
    latest: Arc<Mutex<Option<GroupLag>>>,
}

impl LagProbe {
    /// Starts measuring `group`'s lag on `topics`.
    pub fn spawn(brokers: &str, group: &str, topics: Vec<String>) -> anyhow::Result<Self> {
        // Never subscribes or joins: it only reads the group's commits.
        let client: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()?;
        let latest = Arc::new(Mutex::new(None));
        let weak: Weak<Mutex<Option<GroupLag>>> = Arc::downgrade(&latest);
        let group = group.to_owned();
        std::thread::Builder::new()
            .name("attune-lag".into())
            .spawn(move || loop {
                let Some(latest) = weak.upgrade() else { return };
                match measure(&client, &group, &topics) {
                    Ok(lag) => {
                        for (partition, n) in &lag.by_partition {
                            let (topic, partition) =
                                partition.rsplit_once('/').unwrap_or((partition, ""));
                            metrics::gauge!("attune_consumer_lag", "topic" => topic.to_owned(), "partition" => partition.to_owned())
                                .set(*n as f64);
                        }
                        *latest.lock().expect("not poisoned") = Some(lag);
                    }
                    Err(e) => tracing::debug!("consumer lag not measured: {e}"),
                }
                drop(latest);
                std::thread::sleep(EVERY);
            })?;
        Ok(LagProbe { latest })
    }

    /// The latest measurement, if one succeeded.
    pub fn latest(&self) -> Option<GroupLag> {
        self.latest.lock().expect("not poisoned").clone()
    }
}

fn measure(client: &BaseConsumer, group: &str, topics: &[String]) -> anyhow::Result<GroupLag> {
    let mut tpl = TopicPartitionList::new();
    for topic in topics {
        let metadata = client.fetch_metadata(Some(topic), TIMEOUT)?;
        for t in metadata.topics() {
            for p in t.partitions() {
                tpl.add_partition(t.name(), p.id());
            }
        }
    }
    let committed = client.committed_offsets(tpl, TIMEOUT)?;
    let mut by_partition = BTreeMap::new();
    for e in committed.elements() {
        let (low, high) = client.fetch_watermarks(e.topic(), e.partition(), TIMEOUT)?;
        let from = match e.offset() {
            Offset::Offset(o) => o.max(low),
            _ => low,
        };
        by_partition.insert(
            format!("{}/{}", e.topic(), e.partition()),
            (high - from).max(0),
        );
    }
    Ok(GroupLag {
        group: group.to_owned(),
        total: by_partition.values().sum(),
        by_partition,
        measured_at_ms: crate::clock::now_ms(),
    })
}
