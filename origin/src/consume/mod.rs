//! `attune-origin consume`: the consumer group that turns the interaction
//! topics into Redis profiles, exactly once in effect.
//!
//! Each round: poll a batch; leave out what the user already has, train the
//! model ([`train`]), credit popularity ([`popularity`]) and count served
//! rails ([`rails`]) past their offset watermarks, and count it in the reconciliation ledger ([`ledger`]);
//! apply it to the profiles with [`apply::ProfileWriter`]
//! (idempotent per partition watermark and event id, atomically per user);
//! then, in one Kafka transaction, publish one `profile_updates` message per
//! changed user and commit the consumed offsets. A crash anywhere replays the
//! batch from the last committed offsets, and the replay changes nothing it
//! already changed. Any Kafka error restarts the round from committed offsets.
//! Beside it, [`exposures`] records experiment exposures.
//!
//! A consumer trains the serving model version. When the pointer moves
//! (`attune-origin model promote|rollback`, a retrain) it restarts its
//! clients, and every partition starts from where the new version stopped
//! learning ([`resume`]): the version catches up by replay.

pub mod apply;
pub mod embedded;
pub mod exposures;
pub mod ledger;
pub mod popularity;
pub mod rails;
pub mod resume;
pub mod retrain;
pub mod schedule;
pub mod stats;
pub mod train;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use attune_core::routing::{topics, DEAD_LETTERS, PROFILE_UPDATES};
use attune_core::HalfLife;

use crate::model::versions::{Registry, VersionInfo};
use crate::store::redis::conn::SyncConn;
use crate::store::redis::model_key;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use crate::clock::now_ms;
use crate::config::{ConsumeArgs, SiteWeights};
use crate::event_log::kafka::RECONNECT_BACKOFF_MAX_MS;
use crate::record::EventRecord;
use apply::{by_user, Incoming, ProfileWriter};
use resume::ResumeFromStore;
use stats::StatsTracker;

const POLL: Duration = Duration::from_millis(100);
const TX_TIMEOUT: Duration = Duration::from_secs(10);

/// With an instance name, the same across restarts: `init_transactions` of
/// the restarted process fences the old one and aborts its open
/// transaction. Without one, unique per client: zombies are fenced by the
/// group generation sent with the offsets (KIP-447).
fn transactional_id(args: &ConsumeArgs) -> String {
    match &args.instance {
        Some(instance) => format!("{}-{instance}", args.group),
        None => {
            // std's RandomState is seeded from the OS's randomness per process.
            use std::hash::{BuildHasher, Hasher};
            let unique = std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish();
            format!("{}-{unique:016x}", args.group)
        }
    }
}

/// Runs until `stop` is set; restarts its Kafka clients after any error.
pub fn run(args: &ConsumeArgs, stop: Arc<AtomicBool>) -> Result<()> {
    let exposures = {
        let (args, stop) = (args.clone(), stop.clone());
        std::thread::spawn(move || exposures::run(&args, &stop))
    };
    let degraded = Arc::new(AtomicBool::new(false));
    let schedule = schedule::spawn(args, degraded.clone(), stop.clone());
    let mut stats = StatsTracker::new(None);
    while !stop.load(Ordering::SeqCst) {
        let clients = serving_version(&args.redis_url, &args.topic_prefix)
            .and_then(|version| run_clients(args, &stop, &mut stats, version, &degraded));
        if let Err(e) = clients {
            tracing::warn!("consumer restarting from the committed offsets: {e:#}");
            metrics::counter!("attune_consumer_restarts_total").increment(1);
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    if let Ok(mut writer) = ProfileWriter::connect(&args.redis_url) {
        let _ = writer.retire_stats(stats.member());
    }
    let _ = exposures.join();
    if let Some(schedule) = schedule {
        let _ = schedule.join();
    }
    Ok(())
}

/// A polled message.
struct Polled {
    topic: String,
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
    /// The record's Kafka timestamp, Unix ms (0 if it has none).
    timestamp_ms: i64,
}

/// A record the consumer cannot apply, on its way to the dead-letter topic.
struct DeadLetter {
    message: Polled,
    /// Why, from a closed set (a metric label and a header).
    reason: &'static str,
    /// The decoder's words, for whoever reads the dead letter.
    detail: String,
}

/// What one round writes to Redis with, besides the Kafka clients.
struct Writers {
    profiles: ProfileWriter,
    model: train::Trainer,
    popularity: popularity::PopularityWriter,
    rails: rails::RailWriter,
    ledger: ledger::LedgerWriter,
    half_life: HalfLife,
    weights: SiteWeights,
}

impl Writers {
    /// Waits until Redis replicas hold the round's writes but the
    /// profiles' (whose connection waits when it records the positions).
    /// WAIT counts a connection's own writes, so each connection waits.
    fn wait_replicated(&mut self) -> redis::RedisResult<()> {
        self.model.wait_replicated()?;
        self.popularity.wait_replicated()?;
        self.rails.wait_replicated()?;
        self.ledger.wait_replicated()
    }
}

/// What a round applied: the users changed, events new to their users, and
/// events their users already had.
struct Applied {
    changed: Vec<((String, String), u64)>,
    applied: u64,
    duplicate: u64,
}

/// The serving model version, as the registry in Redis says.
fn serving_version(redis_url: &str, topic_prefix: &str) -> Result<VersionInfo> {
    let fields: std::collections::HashMap<String, String> = SyncConn::open(redis_url)
        .and_then(|mut c| {
            redis::cmd("HGETALL")
                .arg(model_key(topic_prefix))
                .query(&mut c)
        })
        .context("read the model registry from Redis")?;
    Ok(Registry::from_fields(&fields).serving_info())
}

/// Runs the clients until `stop`, or until the serving model version is no
/// longer `version` (then the caller starts them again for the new one).
fn run_clients(
    args: &ConsumeArgs,
    stop: &AtomicBool,
    stats: &mut StatsTracker,
    version: VersionInfo,
    degraded: &AtomicBool,
) -> Result<()> {
    let names: Vec<String> = topics()
        .map(|t| format!("{}{t}", args.topic_prefix))
        .collect();
    let mut consumer_config = ClientConfig::new();
    consumer_config
        .set("bootstrap.servers", &args.kafka_brokers)
        .set("group.id", &args.group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("reconnect.backoff.max.ms", RECONNECT_BACKOFF_MAX_MS);
    if let Some(instance) = &args.instance {
        consumer_config.set("group.instance.id", instance);
    }
    let consumer: BaseConsumer<ResumeFromStore> = consumer_config
        .create_with_context(ResumeFromStore::for_model(
            &args.redis_url,
            (&args.topic_prefix, version.version),
        ))
        .context("create the Kafka consumer")?;
    consumer.subscribe(&names.iter().map(String::as_str).collect::<Vec<_>>())?;
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &args.kafka_brokers)
        .set("transactional.id", transactional_id(args))
        .set("enable.idempotence", "true")
        .set("reconnect.backoff.max.ms", RECONNECT_BACKOFF_MAX_MS)
        // If this process dies mid-transaction, the coordinator aborts it after
        // this long (or at once when its instance restarts); until then the
        // group cannot fetch the pending offsets.
        .set(
            "transaction.timeout.ms",
            args.transaction_timeout_ms.to_string(),
        )
        .create()
        .context("create the transactional producer")?;
    producer.init_transactions(Duration::from_secs(30))?;
    let trained = version.version;
    let validator = stats.validator(trained, args.validation_sample);
    let mut writers = connect_writers(args, version, validator)?;
    let updates_topic = format!("{}{PROFILE_UPDATES}", args.topic_prefix);
    let dead_letters_topic = format!("{}{DEAD_LETTERS}", args.topic_prefix);
    tracing::info!(
        group = %args.group,
        instance = args.instance.as_deref().unwrap_or("-"),
        topics = ?names,
        model_version = trained,
        "consumer started"
    );

    while !stop.load(Ordering::SeqCst) {
        let serving = writers
            .profiles
            .serving_version(&args.topic_prefix)
            .context("read the serving model version")?;
        if serving != trained {
            tracing::info!(
                from = trained,
                to = serving,
                "the serving model version moved: restarting to catch it up from its positions"
            );
            return Ok(());
        }
        if stats.due() {
            // Best effort: the dashboard reads these; the stream does not need them.
            if let Err(e) = writers.profiles.publish_stats(&stats.snapshot(now_ms())) {
                tracing::debug!("consumer stats not published: {e}");
            }
        }
        let batch = poll_batch(&consumer, args.batch);
        if let Some(e) = consumer.context().take_error() {
            anyhow::bail!("an assignment could not be placed from the store's positions: {e}");
        }
        // Partitions a new group starts at the store's position: committed
        // with the next transaction (alone, if nothing else comes).
        let owed = consumer.context().take_owed(&consumer);
        if batch.is_empty() {
            if !owed.is_empty() {
                let nothing = Outputs {
                    updates_topic: &updates_topic,
                    changed: &[],
                    dead_letters_topic: &dead_letters_topic,
                    dead: &[],
                };
                commit(&consumer, &producer, &nothing, &owed)?;
            }
            continue;
        }
        let started = Instant::now();
        let mut offsets: BTreeMap<(String, i32), i64> = BTreeMap::new();
        for m in &batch {
            offsets.insert((m.topic.clone(), m.partition), m.offset + 1);
        }
        let (incoming, dead) = decode(batch);
        let unreadable: Vec<ledger::Unreadable> = dead
            .iter()
            .map(|d| {
                let m = &d.message;
                (m.topic.as_str(), m.partition, m.offset, m.timestamp_ms)
            })
            .collect();
        let round = apply(&mut writers, &incoming, &unreadable, &args.topic_prefix)?;
        writers
            .wait_replicated()
            .context("wait for the Redis replicas")?;
        // After every write of the round: where this store resumes, and
        // the Kafka commit only once the replicas hold it all.
        writers
            .profiles
            .record_positions(&offsets, (&args.topic_prefix, trained))
            .context("record the store's positions")?;
        for (partition, next) in owed {
            offsets.entry(partition).or_insert(next);
        }
        let outputs = Outputs {
            updates_topic: &updates_topic,
            changed: &round.changed,
            dead_letters_topic: &dead_letters_topic,
            dead: &dead,
        };
        commit(&consumer, &producer, &outputs, &offsets)?;
        for d in &dead {
            metrics::counter!("attune_consumer_dead_letters_total", "reason" => d.reason)
                .increment(1);
        }
        metrics::histogram!("attune_consumer_batch_duration_seconds").record(started.elapsed());
        stats.count(round.applied, round.duplicate);
        stats.observe(incoming.iter().map(|i| i.record.received_at_ms), now_ms());
        stats.validated(trained, writers.model.validator());
        degraded.store(stats.degraded(), Ordering::SeqCst);
    }
    Ok(())
}

fn connect_writers(
    args: &ConsumeArgs,
    version: VersionInfo,
    validator: crate::model::validation::Validator,
) -> Result<Writers> {
    let half_life = HalfLife::from_hours(args.affinity_half_life_h)
        .context("ATTUNE_AFFINITY_HALF_LIFE_H must be positive")?;
    let popularity_half_life = HalfLife::from_hours(args.popularity_half_life_h)
        .context("ATTUNE_POPULARITY_HALF_LIFE_H must be positive")?;
    let connect = "connect to Redis";
    Ok(Writers {
        profiles: ProfileWriter::connect(&args.redis_url).context(connect)?,
        model: train::Trainer::connect(&args.redis_url, version, validator).context(connect)?,
        popularity: popularity::PopularityWriter::connect(&args.redis_url, popularity_half_life)
            .context(connect)?,
        rails: rails::RailWriter::connect(&args.redis_url).context(connect)?,
        ledger: ledger::LedgerWriter::connect(&args.redis_url).context(connect)?,
        half_life,
        weights: SiteWeights::of_sites(&crate::config::load_sites(args.config.as_deref())?),
    })
}

/// The decodable records, and the rest as dead letters: a poison message
/// must not block its partition, nor vanish.
fn decode(batch: Vec<Polled>) -> (Vec<Incoming>, Vec<DeadLetter>) {
    let mut dead = Vec::new();
    let incoming = batch
        .into_iter()
        .filter_map(|m| match EventRecord::decode(&m.payload) {
            Ok(record) => Some(Incoming {
                topic: m.topic,
                partition: m.partition,
                offset: m.offset,
                record,
            }),
            Err(e) => {
                let (topic, partition, offset) = (&m.topic, m.partition, m.offset);
                tracing::warn!(%topic, partition, offset, "record dead-lettered: {e}");
                dead.push(DeadLetter {
                    message: m,
                    reason: e.reason(),
                    detail: e.to_string(),
                });
                None
            }
        })
        .collect();
    (incoming, dead)
}

/// Applies a round to Redis in the order that keeps it exactly once: what
/// the round learns (model, popularity) and counts (the ledger), each past
/// its offset watermarks, before the profile script records the event ids.
fn apply(
    w: &mut Writers,
    incoming: &[Incoming],
    unreadable: &[ledger::Unreadable],
    topic_prefix: &str,
) -> Result<Applied> {
    let mut groups = by_user(incoming, &w.weights, &mut |site, item| {
        w.profiles.facts_of(site, item)
    });
    w.profiles
        .drop_forgotten(&mut groups)
        .context("Redis forgotten check")?;
    w.profiles
        .mark_seen(&mut groups)
        .context("Redis seen check")?;
    w.model.update(&mut groups).context("update the model")?;
    w.popularity.credit(&groups).context("credit popularity")?;
    w.rails.count(&groups).context("count served rails")?;
    w.ledger
        .record(&ledger::entries(
            incoming,
            &groups,
            unreadable,
            topic_prefix,
        ))
        .context("count the round in the ledger")?;
    let mut round = Applied {
        changed: Vec::new(),
        applied: 0,
        duplicate: 0,
    };
    for (key, events) in groups {
        let applied = w
            .profiles
            .apply(&key.0, &key.1, &events, w.half_life, w.model.version())
            .context("apply to Redis")?;
        let duplicate = events.len() as u64 - applied;
        metrics::counter!("attune_consumer_events_applied_total").increment(applied);
        metrics::counter!("attune_consumer_events_duplicate_total").increment(duplicate);
        round.applied += applied;
        round.duplicate += duplicate;
        if applied > 0 {
            round.changed.push((key, applied));
        }
    }
    Ok(round)
}

/// What a round writes to Kafka besides its offsets.
struct Outputs<'a> {
    updates_topic: &'a str,
    changed: &'a [((String, String), u64)],
    dead_letters_topic: &'a str,
    dead: &'a [DeadLetter],
}

/// In one Kafka transaction: a `profile_updates` message per changed user,
/// the round's dead letters (the record as it was; reason, decoder message
/// and source in headers) and the consumed offsets.
fn commit(
    consumer: &BaseConsumer<ResumeFromStore>,
    producer: &BaseProducer,
    out: &Outputs,
    offsets: &BTreeMap<(String, i32), i64>,
) -> Result<()> {
    producer.begin_transaction()?;
    for ((site, user), applied) in out.changed {
        let key = attune_core::routing::partition_key(site, user);
        let payload =
            serde_json::json!({"site": site, "user": user, "applied": applied}).to_string();
        producer
            .send(
                BaseRecord::to(out.updates_topic)
                    .key(&key)
                    .payload(&payload),
            )
            .map_err(|(e, _)| e)?;
    }
    for d in out.dead {
        let m = &d.message;
        let source = format!("{}:{}:{}", m.topic, m.partition, m.offset);
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "attune-reason",
                value: Some(d.reason),
            })
            .insert(Header {
                key: "attune-detail",
                value: Some(&d.detail),
            })
            .insert(Header {
                key: "attune-source",
                value: Some(&source),
            });
        let mut record = BaseRecord::to(out.dead_letters_topic)
            .payload(&m.payload)
            .headers(headers);
        if let Some(key) = &m.key {
            record = record.key(key);
        }
        producer.send(record).map_err(|(e, _)| e)?;
    }
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), next) in offsets {
        tpl.add_partition_offset(topic, *partition, Offset::Offset(*next))?;
    }
    let metadata = consumer
        .group_metadata()
        .context("no consumer group metadata")?;
    if let Err(e) = producer
        .send_offsets_to_transaction(&tpl, &metadata, TX_TIMEOUT)
        .and_then(|()| producer.commit_transaction(TX_TIMEOUT))
    {
        let _ = producer.abort_transaction(TX_TIMEOUT);
        return Err(e).context("commit the transaction");
    }
    Ok(())
}

/// Up to `max` messages, waiting at most one poll interval for the first.
fn poll_batch(consumer: &BaseConsumer<ResumeFromStore>, max: usize) -> Vec<Polled> {
    let mut out = Vec::new();
    let deadline = Instant::now() + POLL;
    while out.len() < max {
        let wait = deadline.saturating_duration_since(Instant::now());
        match consumer.poll(if out.is_empty() {
            wait.max(POLL / 10)
        } else {
            Duration::ZERO
        }) {
            Some(Ok(m)) => out.push(Polled {
                topic: m.topic().to_owned(),
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(<[u8]>::to_vec),
                payload: m.payload().unwrap_or_default().to_vec(),
                timestamp_ms: m.timestamp().to_millis().unwrap_or(0),
            }),
            Some(Err(e)) => {
                tracing::warn!("consumer poll: {e}");
                break;
            }
            None => break,
        }
    }
    out
}
