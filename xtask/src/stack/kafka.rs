//! Apache Kafka 4, single-node KRaft (broker and controller in one JVM).

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use attune_core::routing::{all_topics, PARTITIONS_PER_TOPIC};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;

use super::{claim_port, Health, Stack, Started, READY_TIMEOUT};
use crate::process::{self, output, port_open, run, running_pid, spawn_detached};

/// Appears in the broker's command line; identifies our process.
pub const MARKER: &str = "kafka.Kafka";

fn dir(stack: &Stack) -> PathBuf {
    stack.dir.join("kafka")
}

pub fn data_dir(stack: &Stack) -> PathBuf {
    dir(stack).join("data")
}

pub fn pid_file(stack: &Stack) -> PathBuf {
    stack.dir.join("kafka.pid")
}

fn log_file(stack: &Stack) -> PathBuf {
    stack.logs().join("kafka.log")
}

/// The settings that matter on one node: replication factor 1 for the internal
/// topics, so transactions and consumer groups work.
fn server_properties(stack: &Stack) -> String {
    let (port, controller) = (stack.kafka_port, stack.controller_port);
    format!(
        "process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:{controller}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs={data}
num.partitions={PARTITIONS_PER_TOPIC}
auto.create.topics.enable=false
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.abort.timed.out.transaction.cleanup.interval.ms=1000
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
broker.heartbeat.interval.ms=500
",
        data = data_dir(stack).display()
    )
}

const LOG4J2: &str = "Configuration:
  Appenders:
    Console:
      name: STDOUT
      PatternLayout:
        pattern: \"[%d] %p %m (%c)%n\"
  Loggers:
    Root:
      level: WARN
      AppenderRef:
        - ref: STDOUT
    Logger:
      - name: kafka.server.KafkaRaftServer
        level: INFO
";

fn java(stack: &Stack) -> Command {
    let mut cmd = Command::new("java");
    cmd.arg(format!(
        "-Dlog4j2.configurationFile={}",
        dir(stack).join("log4j2.yaml").display()
    ))
    .arg("-cp")
    .arg(dir(stack).join("libs/*"));
    cmd
}

/// Starts the broker unless it runs already; formats storage on first start.
pub fn start(stack: &Stack) -> Result<Started> {
    if let Some(pid) = running_pid(&pid_file(stack), MARKER) {
        println!("==> Kafka already running (pid {pid})");
        return Ok(Started {
            pid,
            started: false,
        });
    }
    claim_port("Kafka", stack.kafka_port, "ATTUNE_KAFKA_PORT")?;
    claim_port(
        "the Kafka controller",
        stack.controller_port,
        "ATTUNE_KAFKA_CONTROLLER_PORT",
    )?;
    let properties = dir(stack).join("server.properties");
    fs::write(&properties, server_properties(stack))?;
    fs::write(dir(stack).join("log4j2.yaml"), LOG4J2)?;
    if !data_dir(stack).join("meta.properties").exists() {
        println!(
            "==> formatting Kafka storage in {}",
            data_dir(stack).display()
        );
        let cluster_id = output(java(stack).args(["kafka.tools.StorageTool", "random-uuid"]))
            .context("kafka.tools.StorageTool random-uuid failed: is Java 17+ installed?")?;
        run(java(stack)
            .args(["kafka.tools.StorageTool", "format", "--standalone", "-t"])
            .arg(cluster_id.trim())
            .arg("-c")
            .arg(&properties)
            .stdout(std::process::Stdio::null()))?;
    }
    println!("==> starting Kafka on 127.0.0.1:{}", stack.kafka_port);
    let pid = spawn_detached(
        java(stack)
            // The JVM flags of Kafka's own kafka-server-start.sh: G1 with a
            // 20 ms pause goal (the default goal, 200 ms, shows up in p99s).
            .args([
                "-Xms1g",
                "-Xmx1g",
                "-XX:+UseG1GC",
                "-XX:MaxGCPauseMillis=20",
                "-XX:InitiatingHeapOccupancyPercent=35",
                "-XX:+ExplicitGCInvokesConcurrent",
                "-Djava.awt.headless=true",
                MARKER,
            ])
            .arg(&properties),
        &log_file(stack),
        &pid_file(stack),
    )?;
    Ok(Started { pid, started: true })
}

fn metadata_answers(brokers: &str) -> bool {
    let consumer: Result<BaseConsumer, _> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create();
    consumer.is_ok_and(|c| c.fetch_metadata(None, Duration::from_secs(2)).is_ok())
}

/// Waits for the port, then for a metadata answer (librdkafka, as clients see it).
pub fn wait_ready(stack: &Stack, pid: u32) -> Result<()> {
    let brokers = stack.endpoints().kafka_brokers;
    process::wait_ready("Kafka", pid, &log_file(stack), READY_TIMEOUT, || {
        port_open(stack.kafka_port) && metadata_answers(&brokers)
    })
}

/// Creates every topic of attune-core's `all_topics` ([`PARTITIONS_PER_TOPIC`] partitions,
/// keyed by user), each named `{prefix}{topic}`, through the AdminClient;
/// existing topics are checked.
pub fn ensure_topics(brokers: &str, prefix: &str) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .context("create the Kafka admin client")?;
    let names = all_topics()
        .map(|t| format!("{prefix}{t}"))
        .collect::<Vec<_>>();
    let new: Vec<NewTopic> = names
        .iter()
        .map(|t| NewTopic::new(t, PARTITIONS_PER_TOPIC, TopicReplication::Fixed(1)))
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = rt.block_on(admin.create_topics(&new, &opts))?;
    for result in results {
        match result {
            Ok(topic) => println!("==> created topic {topic}"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => bail!("cannot create topic {topic}: {code}"),
        }
    }
    // A topic created a moment ago may not show its partitions in the
    // metadata yet: look again for a few seconds before calling it short.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let metadata = admin
            .inner()
            .fetch_metadata(None, Duration::from_secs(10))
            .context("read topic metadata")?;
        let short = names.iter().find_map(|name| {
            let partitions = metadata
                .topics()
                .iter()
                .find(|t| t.name() == name.as_str())
                .map_or(0, |t| t.partitions().len());
            (partitions < PARTITIONS_PER_TOPIC as usize).then_some((name, partitions))
        });
        match short {
            None => return Ok(()),
            Some(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(200));
            }
            Some((name, partitions)) => bail!(
                "topic {name} has {partitions} partitions, fewer than {PARTITIONS_PER_TOPIC}: \
                 recreate it with `cargo xtask stack down --wipe && cargo xtask stack up`"
            ),
        }
    }
}

pub fn status(stack: &Stack) -> Health {
    match running_pid(&pid_file(stack), MARKER) {
        None => Health::Stopped,
        Some(pid) if metadata_answers(&stack.endpoints().kafka_brokers) => Health::Answering(pid),
        Some(pid) => Health::NotAnswering(pid),
    }
}
