//! The real Kafka in tests: topics under a fresh prefix, consumer processes,
//! and reading back what the origin wrote.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use attune_core::routing::{all_topics, PARTITIONS_PER_TOPIC};
use attune_origin::record::EventRecord;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::{BorrowedMessage, OwnedMessage};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use super::{env, start_with, Backend, TestOrigin};

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

/// Reads `topic` from each `(partition, offset)` until `keep` took `n`
/// messages or `timeout` passed (committed messages only).
fn read_from<T>(
    brokers: &str,
    topic: &str,
    from: impl IntoIterator<Item = (i32, Offset)>,
    n: usize,
    timeout: Duration,
    mut keep: impl FnMut(&BorrowedMessage) -> Option<T>,
) -> Vec<T> {
    let c = consumer(brokers);
    let mut tpl = TopicPartitionList::new();
    for (p, offset) in from {
        tpl.add_partition_offset(topic, p, offset).unwrap();
    }
    c.assign(&tpl).unwrap();
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while out.len() < n && Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            out.extend(keep(&m));
        }
    }
    out
}

/// The first `n` messages of every partition of `topic`, waiting at most
/// `timeout`.
pub fn read_topic(brokers: &str, topic: &str, n: usize, timeout: Duration) -> Vec<OwnedMessage> {
    let start = (0..PARTITIONS_PER_TOPIC).map(|p| (p, Offset::Beginning));
    read_from(brokers, topic, start, n, timeout, |m| Some(m.detach()))
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
    let start = from.iter().map(|&(p, o)| (p, Offset::Offset(o)));
    read_from(brokers, topic, start, n, timeout, |m| {
        (m.key() == Some(key.as_bytes())).then(|| {
            let record = EventRecord::decode(m.payload().unwrap()).expect("record decodes");
            (m.partition(), record)
        })
    })
}

/// Every topic of a prefix: the interaction topics and the consumers' outputs.
fn prefixed(prefix: &str) -> Vec<String> {
    all_topics().map(|t| format!("{prefix}{t}")).collect()
}

/// A test's own topics, deleted when it ends (also when it fails), so a
/// developer's stack does not fill up with test topics run after run.
pub struct OwnedTopics(String);

impl Drop for OwnedTopics {
    fn drop(&mut self) {
        let names = prefixed(&self.0);
        // Drop runs inside the test's runtime: delete from a thread of its own.
        let deleted = std::thread::spawn(move || {
            let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
                .set("bootstrap.servers", env("KAFKA_BROKERS"))
                .create()
                .ok()?;
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?
                .block_on(admin.delete_topics(&names, &AdminOptions::new()))
                .ok()
        })
        .join();
        if !matches!(deleted, Ok(Some(_))) {
            eprintln!("the topics of {} were not deleted", self.0);
        }
    }
}

/// Creates the topics of `prefix`; they go when the returned guard does.
pub async fn create_topics(prefix: &str) -> OwnedTopics {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", env("KAFKA_BROKERS"))
        .create()
        .unwrap();
    let names = prefixed(prefix);
    let brokers = admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(10))
        .unwrap()
        .brokers()
        .len();
    let new = attune_origin::event_log::kafka::new_topics(&names, brokers);
    for r in admin
        .create_topics(&new, &AdminOptions::new())
        .await
        .unwrap()
    {
        r.expect("topic created");
    }
    // On a cluster, a new topic's partitions get their leaders and in-sync
    // replicas a moment after the create answers: a first produce before
    // then waits out its timeout. Ready when every partition has a leader
    // and all its replicas in sync.
    let want_isr = attune_core::routing::replication(brokers).factor as usize;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metadata = admin
            .inner()
            .fetch_metadata(None, Duration::from_secs(10))
            .unwrap();
        let ready = names.iter().all(|name| {
            metadata
                .topics()
                .iter()
                .find(|t| t.name() == name.as_str())
                .is_some_and(|t| {
                    t.partitions().len() == PARTITIONS_PER_TOPIC as usize
                        && t.partitions()
                            .iter()
                            .all(|p| p.leader() >= 0 && p.isr().len() >= want_isr)
                })
        });
        if ready {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the topics of {prefix} never got their leaders"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    OwnedTopics(prefix.to_owned())
}

/// An `attune-origin consume` process on its own metrics port.
pub struct Consumer(Child, u16);

impl Consumer {
    pub fn start(prefix: &str, group: &str) -> Self {
        Self::start_with(prefix, group, None, None)
    }

    /// A consumer that reads the sites file at `config` (feedback weights)
    /// and runs under a stable `instance` name, if given.
    pub fn start_with(
        prefix: &str,
        group: &str,
        config: Option<&std::path::Path>,
        instance: Option<&str>,
    ) -> Self {
        Self::start_env(prefix, group, config, instance, &[])
    }

    /// The same, with more environment variables.
    pub fn start_env(
        prefix: &str,
        group: &str,
        config: Option<&std::path::Path>,
        instance: Option<&str>,
        vars: &[(&str, &str)],
    ) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_attune-origin"));
        if let Some(config) = config {
            cmd.env("ATTUNE_CONFIG", config);
        }
        if let Some(instance) = instance {
            cmd.env("ATTUNE_CONSUMER_INSTANCE", instance);
        }
        let child = cmd
            .arg("consume")
            .env("KAFKA_BROKERS", env("KAFKA_BROKERS"))
            .env("REDIS_URL", env("REDIS_URL"))
            .env("ATTUNE_TOPIC_PREFIX", prefix)
            .env("ATTUNE_CONSUMER_GROUP", group)
            .env("ATTUNE_CONSUMER_LISTEN", format!("127.0.0.1:{port}"))
            // Every engagement, as `common::learning`'s offline replay.
            .env("ATTUNE_VALIDATION_SAMPLE", "1")
            .env("RUST_LOG", "warn")
            .envs(vars.iter().copied())
            .stdout(Stdio::null())
            .spawn()
            .expect("start attune-origin consume");
        Consumer(child, port)
    }

    /// kill -9: no chance to commit or clean up.
    pub fn kill9(mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }

    pub async fn applied(&self) -> f64 {
        self.metric("attune_consumer_events_applied_total").await
    }

    /// A counter from the consumer's `/metrics` (0 when absent).
    /// The consumer's metric `name`, summed over its labels; 0 before it serves.
    pub async fn metric(&self, name: &str) -> f64 {
        let Ok(r) = reqwest::get(format!("http://127.0.0.1:{}/metrics", self.1)).await else {
            return 0.0;
        };
        let text = r.text().await.unwrap_or_default();
        // Summed over the series' labels.
        text.lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with(['{', ' ']))
            })
            .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
            .sum()
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A unique prefix and an origin producing to it, which reports the lag of
/// the group `g-<prefix>` (the group of [`Consumer::start`] in these tests).
pub async fn setup() -> (String, TestOrigin) {
    setup_with(super::DEFAULT_SITE_TOML).await
}

/// [`setup`], with the site's `site_toml` (see [`start_with`]).
pub async fn setup_with(site_toml: &str) -> (String, TestOrigin) {
    let prefix = format!("it{}.", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let topics = create_topics(&prefix).await;
    let (p, g) = (prefix.clone(), format!("g-{prefix}"));
    let mut origin = start_with(Backend::KafkaRedis, site_toml, move |a| {
        a.topic_prefix = p;
        a.consumer_group = g;
    })
    .await;
    origin.topics = Some(topics);
    (prefix, origin)
}

/// Waits until the audit of the last minutes finds no gap between the tiers
/// for `origin`'s site on the `prefix` topics (the consumers' counts of the
/// last records may still be on their way).
pub async fn wait_for_clean_audit(origin: &TestOrigin, prefix: &str) {
    wait_for_audit(origin, prefix, |_| false).await;
}

/// Waits until every gap the audit finds is one `expected` accepts.
pub async fn wait_for_audit(
    origin: &TestOrigin,
    prefix: &str,
    expected: impl Fn(&attune_origin::audit::Gap) -> bool,
) {
    use attune_origin::audit::{self, Topics};
    let store = attune_origin::store::redis::RedisStore::connect(&env("REDIS_URL"))
        .await
        .unwrap();
    let brokers = env("KAFKA_BROKERS");
    let topics = Topics {
        brokers: &brokers,
        prefix,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let minutes = audit::window(super::now_ms(), 10, 0);
        let report = audit::audit(
            &store,
            &topics,
            std::slice::from_ref(&origin.site.site_key),
            minutes,
        )
        .await
        .unwrap();
        if report.gaps.iter().all(&expected) {
            assert!(!report.cells.is_empty(), "the audit saw no events");
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the tiers disagree:\n{}",
            audit::render(&report)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
