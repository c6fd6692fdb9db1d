//! Apache Kafka 4 in KRaft mode, broker and controller in each JVM: one node
//! (development), or three (`stack up --cluster`: a controller quorum of
//! three, topics with three replicas of which two must hold each write).

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use attune_core::routing::{all_topics, replication, PARTITIONS_PER_TOPIC};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;

use super::{claim_port, Health, Stack, Started, READY_TIMEOUT};
use crate::process::{self, output, port_open, run, running_pid, spawn_detached};

/// Appears in the broker's command line; identifies our process.
pub const MARKER: &str = "kafka.Kafka";

/// Nodes of the cluster layout.
pub const CLUSTER_NODES: u8 = 3;

/// One Kafka process of the stack: the single node, or node `id` (1-based)
/// of the cluster. Node `id` listens `100 × (id − 1)` ports above the
/// stack's Kafka and controller ports.
#[derive(Debug, Clone, Copy)]
pub struct Node {
    pub id: u8,
    clustered: bool,
}

impl Node {
    fn offset(self) -> u16 {
        100 * u16::from(self.id - 1)
    }

    pub fn broker_port(self, stack: &Stack) -> u16 {
        stack.kafka_port + self.offset()
    }

    fn controller_port(self, stack: &Stack) -> u16 {
        stack.controller_port + self.offset()
    }

    /// `kafka` alone; `kafka-node-<id>` in the cluster.
    fn name(self) -> String {
        if self.clustered {
            format!("kafka-node-{}", self.id)
        } else {
            "kafka".into()
        }
    }

    fn home(self, stack: &Stack) -> PathBuf {
        if self.clustered {
            dir(stack).join("cluster").join(self.name())
        } else {
            dir(stack)
        }
    }

    pub fn data_dir(self, stack: &Stack) -> PathBuf {
        self.home(stack).join("data")
    }

    pub fn pid_file(self, stack: &Stack) -> PathBuf {
        stack.dir.join(format!("{}.pid", self.name()))
    }

    fn log_file(self, stack: &Stack) -> PathBuf {
        stack.logs().join(format!("{}.log", self.name()))
    }
}

/// The nodes of the stack's layout.
pub fn nodes(stack: &Stack) -> Vec<Node> {
    let clustered = stack.kafka_nodes > 1;
    (1..=stack.kafka_nodes)
        .map(|id| Node { id, clustered })
        .collect()
}

/// Every node either layout can have running (what `stack down` stops).
pub fn every_node() -> impl Iterator<Item = Node> {
    std::iter::once(Node {
        id: 1,
        clustered: false,
    })
    .chain((1..=CLUSTER_NODES).map(|id| Node {
        id,
        clustered: true,
    }))
}

fn dir(stack: &Stack) -> PathBuf {
    stack.dir.join("kafka")
}

/// The node's settings. Alone: replication factor 1 for the internal topics,
/// so transactions and consumer groups work. In the cluster: a static quorum
/// of the three controllers, and attune-core's replication for every topic,
/// the internal ones (consumer offsets, transaction state) included.
fn server_properties(stack: &Stack, node: Node) -> String {
    let (port, controller) = (node.broker_port(stack), node.controller_port(stack));
    let r = replication(stack.kafka_nodes.into());
    let (rf, isr) = (r.factor, r.min_insync);
    let quorum = if node.clustered {
        let voters: Vec<String> = nodes(stack)
            .iter()
            .map(|n| format!("{}@127.0.0.1:{}", n.id, n.controller_port(stack)))
            .collect();
        format!("controller.quorum.voters={}", voters.join(","))
    } else {
        format!("controller.quorum.bootstrap.servers=127.0.0.1:{controller}")
    };
    format!(
        "process.roles=broker,controller
node.id={id}
{quorum}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs={data}
num.partitions={PARTITIONS_PER_TOPIC}
auto.create.topics.enable=false
default.replication.factor={rf}
min.insync.replicas={isr}
offsets.topic.replication.factor={rf}
transaction.state.log.replication.factor={rf}
transaction.state.log.min.isr={isr}
transaction.abort.timed.out.transaction.cleanup.interval.ms=1000
share.coordinator.state.topic.replication.factor={rf}
share.coordinator.state.topic.min.isr={isr}
group.initial.rebalance.delay.ms=0
broker.heartbeat.interval.ms=500
",
        id = node.id,
        data = node.data_dir(stack).display()
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

/// Starts every node that is not running yet; formats storage on first
/// start (the cluster's nodes with one cluster id).
pub fn start(stack: &Stack) -> Result<Vec<Started>> {
    fs::write(dir(stack).join("log4j2.yaml"), LOG4J2)?;
    let mut started = Vec::new();
    for node in nodes(stack) {
        started.push(start_node(stack, node)?);
    }
    Ok(started)
}

/// The cluster id a layout's storage is formatted with: one per cluster,
/// kept beside its nodes.
fn cluster_id(stack: &Stack, node: Node) -> Result<String> {
    let file = dir(stack).join("cluster").join("cluster-id");
    if node.clustered {
        if let Ok(id) = fs::read_to_string(&file) {
            return Ok(id.trim().to_owned());
        }
    }
    let id = output(java(stack).args(["kafka.tools.StorageTool", "random-uuid"]))
        .context("kafka.tools.StorageTool random-uuid failed: is Java 17+ installed?")?;
    if node.clustered {
        fs::create_dir_all(file.parent().unwrap())?;
        fs::write(&file, id.trim())?;
    }
    Ok(id.trim().to_owned())
}

fn start_node(stack: &Stack, node: Node) -> Result<Started> {
    let name = node.name();
    if let Some(pid) = running_pid(&node.pid_file(stack), MARKER) {
        println!("==> {name} already running (pid {pid})");
        return Ok(Started {
            pid,
            started: false,
        });
    }
    claim_port(&name, node.broker_port(stack), "ATTUNE_KAFKA_PORT")?;
    claim_port(
        &format!("the controller of {name}"),
        node.controller_port(stack),
        "ATTUNE_KAFKA_CONTROLLER_PORT",
    )?;
    fs::create_dir_all(node.home(stack))?;
    let properties = node.home(stack).join("server.properties");
    fs::write(&properties, server_properties(stack, node))?;
    if !node.data_dir(stack).join("meta.properties").exists() {
        println!(
            "==> formatting Kafka storage in {}",
            node.data_dir(stack).display()
        );
        let mut format = java(stack);
        format.args(["kafka.tools.StorageTool", "format"]);
        // A lone node is its own quorum; the cluster's is static (its
        // voters are in the properties).
        if !node.clustered {
            format.arg("--standalone");
        }
        run(format
            .arg("-t")
            .arg(cluster_id(stack, node)?)
            .arg("-c")
            .arg(&properties)
            .stdout(std::process::Stdio::null()))?;
    }
    println!(
        "==> starting {name} on 127.0.0.1:{}",
        node.broker_port(stack)
    );
    // Three JVMs share the machine in the cluster: a smaller heap each.
    let heap = if node.clustered { "768m" } else { "1g" };
    let pid = spawn_detached(
        java(stack)
            // The JVM flags of Kafka's own kafka-server-start.sh: G1 with a
            // 20 ms pause goal (the default goal, 200 ms, shows up in p99s).
            .arg(format!("-Xms{heap}"))
            .arg(format!("-Xmx{heap}"))
            .args([
                "-XX:+UseG1GC",
                "-XX:MaxGCPauseMillis=20",
                "-XX:InitiatingHeapOccupancyPercent=35",
                "-XX:+ExplicitGCInvokesConcurrent",
                "-Djava.awt.headless=true",
                MARKER,
            ])
            .arg(&properties),
        &node.log_file(stack),
        &node.pid_file(stack),
    )?;
    Ok(Started { pid, started: true })
}

/// How many brokers answer in the metadata of `brokers`, if any answers.
fn brokers_answering(brokers: &str) -> Option<usize> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .ok()?;
    let metadata = consumer.fetch_metadata(None, Duration::from_secs(2)).ok()?;
    Some(metadata.brokers().len())
}

/// Waits for each node's port, then for a metadata answer (librdkafka, as
/// clients see it) that lists every broker.
pub fn wait_ready(stack: &Stack, started: &[Started]) -> Result<()> {
    let brokers = stack.endpoints().kafka_brokers;
    let want = usize::from(stack.kafka_nodes);
    for (node, s) in nodes(stack).into_iter().zip(started) {
        process::wait_ready(
            &node.name(),
            s.pid,
            &node.log_file(stack),
            READY_TIMEOUT,
            || {
                port_open(node.broker_port(stack))
                    && brokers_answering(&brokers).is_some_and(|n| n >= want)
            },
        )?;
    }
    Ok(())
}

/// Creates every topic of attune-core's `all_topics` ([`PARTITIONS_PER_TOPIC`] partitions,
/// keyed by user, attune-core's `replication` for the brokers there are),
/// each named `{prefix}{topic}`, through the AdminClient; existing topics are
/// checked.
pub fn ensure_topics(brokers: &str, prefix: &str) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .context("create the Kafka admin client")?;
    let names = all_topics()
        .map(|t| format!("{prefix}{t}"))
        .collect::<Vec<_>>();
    let count = admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(10))
        .context("read the brokers")?
        .brokers()
        .len();
    let r = replication(count);
    let isr = r.min_insync.to_string();
    let new: Vec<NewTopic> = names
        .iter()
        .map(|t| {
            NewTopic::new(t, PARTITIONS_PER_TOPIC, TopicReplication::Fixed(r.factor))
                .set("min.insync.replicas", &isr)
        })
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
        // Ready: every partition there, led, and with all its replicas in
        // sync (on a cluster a first produce before then waits it out).
        let short = names.iter().find_map(|name| {
            let ready = metadata
                .topics()
                .iter()
                .find(|t| t.name() == name.as_str())
                .map_or(0, |t| {
                    t.partitions()
                        .iter()
                        .filter(|p| p.leader() >= 0 && p.isr().len() >= r.factor as usize)
                        .count()
                });
            (ready < PARTITIONS_PER_TOPIC as usize).then_some((name, ready))
        });
        match short {
            None => return Ok(()),
            Some(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(200));
            }
            Some((name, ready)) => bail!(
                "topic {name} has {ready} partitions led and in sync, fewer than \
                 {PARTITIONS_PER_TOPIC}: check `cargo xtask stack status`, or recreate it \
                 with `cargo xtask stack down --wipe && cargo xtask stack up`"
            ),
        }
    }
}

/// Where the partitions of Attune's topics lead, and how many replicas each
/// has and keeps in sync: one line for `stack status`.
pub fn leaders(stack: &Stack) -> Result<String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", stack.endpoints().kafka_brokers)
        .create()?;
    let metadata = consumer.fetch_metadata(None, Duration::from_secs(5))?;
    let mut led = std::collections::BTreeMap::<i32, usize>::new();
    let (mut partitions, mut under_replicated) = (0, 0);
    let mut replicas = std::collections::BTreeSet::new();
    for topic in metadata.topics() {
        if !topic.name().contains("attune.") {
            continue;
        }
        for p in topic.partitions() {
            partitions += 1;
            *led.entry(p.leader()).or_default() += 1;
            replicas.insert(p.replicas().len());
            under_replicated += usize::from(p.isr().len() < p.replicas().len());
        }
    }
    let led: Vec<String> = led
        .iter()
        .map(|(node, n)| format!("node {node}: {n}"))
        .collect();
    Ok(format!(
        "{partitions} partitions of attune topics; leaders {}; replicas {replicas:?}; {under_replicated} under-replicated",
        led.join(", ")
    ))
}

/// Each node's health, named.
pub fn status(stack: &Stack) -> Vec<(String, Health)> {
    nodes(stack)
        .into_iter()
        .map(|node| {
            let health = match running_pid(&node.pid_file(stack), MARKER) {
                None => Health::Stopped,
                Some(pid) => {
                    let own = format!("127.0.0.1:{}", node.broker_port(stack));
                    if brokers_answering(&own).is_some() {
                        Health::Answering(pid)
                    } else {
                        Health::NotAnswering(pid)
                    }
                }
            };
            (node.name(), health)
        })
        .collect()
}
