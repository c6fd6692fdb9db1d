//! `cargo xtask stack up|down|status`: real Apache Kafka (KRaft, jars from
//! Maven Central) and Redis (Debian's redis-server) on loopback. Each is one
//! node, or with `stack up --cluster` a cluster: three Kafka nodes with three
//! replicas per partition (`ATTUNE_KAFKA_NODES=3` alone), and a Redis
//! Cluster of three primaries and three replicas (`ATTUNE_REDIS_NODES=6`
//! alone); each node 100 ports above the last.
//!
//! Everything lives under `target/stack/` (`ATTUNE_STACK_DIR`): `kafka/libs`
//! (jars), `kafka/data`, `redis/` (append-only files), `logs/`, `*.pid`, and `env`
//! (the variables the origin and the tests read). Ports: `ATTUNE_KAFKA_PORT`
//! (19092), `ATTUNE_KAFKA_CONTROLLER_PORT` (19093), `ATTUNE_REDIS_PORT` (16379),
//! and with `--monitoring` Prometheus (Debian's) on `ATTUNE_PROMETHEUS_PORT`
//! (19090) with the alert rules loaded.

mod kafka;
mod prometheus;
mod redis;

pub use kafka::ensure_topics;

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::install;
use crate::process::{port_free, running_pid, stop};

/// How long each server gets to answer after start.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the stack lives and listens.
pub struct Stack {
    dir: PathBuf,
    kafka_port: u16,
    controller_port: u16,
    redis_port: u16,
    prometheus_port: u16,
    /// Kafka nodes: 1, or 3 (the cluster layout).
    kafka_nodes: u8,
    /// A Redis Cluster (6 nodes) rather than one node.
    redis_cluster: bool,
}

/// How clients reach a running stack.
pub struct Endpoints {
    pub kafka_brokers: String,
    pub redis_url: String,
}

impl Endpoints {
    /// As environment variables, the way the origin and the tests read them.
    pub fn vars(&self) -> [(&'static str, String); 2] {
        [
            ("KAFKA_BROKERS", self.kafka_brokers.clone()),
            ("REDIS_URL", self.redis_url.clone()),
        ]
    }
}

/// A started stack; stops what this process started when dropped.
pub struct Running<'a> {
    stack: &'a Stack,
    pub endpoints: Endpoints,
    started_here: bool,
}

impl Running<'_> {
    /// Leaves the servers running after this handle goes away.
    pub fn keep(mut self) {
        self.started_here = false;
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if self.started_here {
            if let Err(e) = self.stack.down(false) {
                eprintln!("warning: stopping the stack: {e:#}");
            }
        }
    }
}

fn env_port(name: &str, default: u16) -> u16 {
    match std::env::var(name) {
        Ok(v) => v.parse().unwrap_or_else(|_| {
            eprintln!("warning: {name}={v} is not a port number; using {default}");
            default
        }),
        Err(_) => default,
    }
}

impl Stack {
    /// The stack's location and ports, from the environment or the defaults.
    pub fn from_env() -> Self {
        let dir = std::env::var_os("ATTUNE_STACK_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| crate::workspace_root().join("target/stack"));
        Stack {
            dir,
            kafka_port: env_port("ATTUNE_KAFKA_PORT", 19092),
            controller_port: env_port("ATTUNE_KAFKA_CONTROLLER_PORT", 19093),
            redis_port: env_port("ATTUNE_REDIS_PORT", 16379),
            prometheus_port: env_port("ATTUNE_PROMETHEUS_PORT", 19090),
            kafka_nodes: 1,
            redis_cluster: false,
        }
        .with_layout_from_env()
    }

    /// `ATTUNE_KAFKA_NODES` when set; else the layout already running.
    fn with_layout_from_env(mut self) -> Self {
        self.kafka_nodes = match std::env::var("ATTUNE_KAFKA_NODES").ok().as_deref() {
            Some("3") => kafka::CLUSTER_NODES,
            Some("1") => 1,
            Some(other) => {
                eprintln!("warning: ATTUNE_KAFKA_NODES={other} is neither 1 nor 3; using 1");
                1
            }
            None if kafka::nodes(&self.clustered())
                .iter()
                .any(|n| running_pid(&n.pid_file(&self), kafka::MARKER).is_some()) =>
            {
                kafka::CLUSTER_NODES
            }
            None => 1,
        };
        self.redis_cluster = match std::env::var("ATTUNE_REDIS_NODES").ok().as_deref() {
            Some("6") => true,
            Some("1") => false,
            Some(other) => {
                eprintln!("warning: ATTUNE_REDIS_NODES={other} is neither 1 nor 6; using 1");
                false
            }
            None => redis::nodes(&self.clustered())
                .iter()
                .any(|n| running_pid(&n.pid_file(&self), redis::MARKER).is_some()),
        };
        self
    }

    /// This stack in the cluster layout (`stack up --cluster`).
    pub fn clustered(&self) -> Stack {
        Stack {
            dir: self.dir.clone(),
            kafka_nodes: kafka::CLUSTER_NODES,
            redis_cluster: true,
            ..*self
        }
    }

    pub fn endpoints(&self) -> Endpoints {
        Endpoints {
            kafka_brokers: kafka::nodes(self)
                .iter()
                .map(|n| format!("127.0.0.1:{}", n.broker_port(self)))
                .collect::<Vec<_>>()
                .join(","),
            redis_url: redis::url(self),
        }
    }

    /// The cluster layout beside this stack (its ports 1000 above this
    /// stack's, its data under `kafka/cluster` and `redis/cluster`), for
    /// running suites on replicated Kafka and a Redis Cluster while the
    /// single nodes keep running.
    pub fn cluster_beside(&self) -> Stack {
        Stack {
            dir: self.dir.clone(),
            kafka_port: self.kafka_port + 1000,
            controller_port: self.controller_port + 1000,
            redis_port: self.redis_port + 1000,
            ..self.clustered()
        }
    }

    /// The chaos harness's own stack: the cluster layout under `chaos/`
    /// (ports 2000 above this stack's), which it may kill at will; it
    /// shares this stack's Kafka jars.
    pub fn for_chaos(&self) -> Result<Stack> {
        let chaos = Stack {
            dir: self.dir.join("chaos"),
            kafka_port: self.kafka_port + 2000,
            controller_port: self.controller_port + 2000,
            redis_port: self.redis_port + 2000,
            prometheus_port: self.prometheus_port + 2000,
            kafka_nodes: kafka::CLUSTER_NODES,
            redis_cluster: true,
        };
        install::kafka_jars(&self.dir.join("kafka"))?;
        fs::create_dir_all(chaos.dir.join("kafka"))?;
        let libs = chaos.dir.join("kafka/libs");
        if !libs.exists() {
            std::os::unix::fs::symlink(self.dir.join("kafka/libs").canonicalize()?, libs)?;
        }
        Ok(chaos)
    }

    /// The pid file of Kafka node `id` (1-based).
    pub fn kafka_node_pid_file(&self, id: i32) -> Option<PathBuf> {
        kafka::nodes(self)
            .into_iter()
            .find(|n| i32::from(n.id) == id)
            .map(|n| n.pid_file(self))
    }

    /// Starts this stack's Kafka and Redis nodes (without writing its `env`),
    /// waits until they answer and creates the topics of `prefixes`; they
    /// stop when the returned guard goes, if started here.
    pub fn servers(&self, prefixes: &[&str]) -> Result<Servers> {
        fs::create_dir_all(self.logs())?;
        install::kafka_jars(&self.dir.join("kafka"))?;
        let started = kafka::start(self)?;
        let mut guard = Servers {
            started: kafka::nodes(self)
                .iter()
                .zip(&started)
                .filter(|(_, s)| s.started)
                .map(|(node, s)| (node.pid_file(self), s.pid))
                .collect(),
        };
        let redis = redis::start(self)?;
        guard.started.extend(
            redis::nodes(self)
                .iter()
                .zip(&redis)
                .filter(|(_, s)| s.started)
                .map(|(node, s)| (node.pid_file(self), s.pid)),
        );
        kafka::wait_ready(self, &started)?;
        redis::wait_ready(self, &redis)?;
        for prefix in prefixes {
            kafka::ensure_topics(&self.endpoints().kafka_brokers, prefix)?;
        }
        Ok(guard)
    }

    /// Where the stack keeps its files.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// The (first) broker's pid file (the outage test pauses the broker
    /// through it).
    pub fn kafka_pid_file(&self) -> PathBuf {
        kafka::nodes(self)[0].pid_file(self)
    }

    /// The (first) Redis node's pid file (the Redis outage test pauses it
    /// through it).
    pub fn redis_pid_file(&self) -> PathBuf {
        redis::nodes(self)[0].pid_file(self)
    }

    /// The running pids of `kind`'s nodes (`kafka` or `redis`), comma-separated.
    pub fn server_pids(&self, kind: &str) -> Result<String> {
        let (files, marker): (Vec<PathBuf>, _) = match kind {
            "kafka" => (
                kafka::nodes(self)
                    .iter()
                    .map(|n| n.pid_file(self))
                    .collect(),
                kafka::MARKER,
            ),
            _ => (self.redis_pid_files(), redis::MARKER),
        };
        let pids: Vec<String> = files
            .iter()
            .map(|f| {
                running_pid(f, marker)
                    .map(|p| p.to_string())
                    .with_context(|| format!("{} names no running process", f.display()))
            })
            .collect::<Result<_>>()?;
        Ok(pids.join(","))
    }

    /// The ports of the Redis Cluster's primaries that serve slots.
    pub fn redis_primaries(&self) -> Result<Vec<u16>> {
        redis::primaries(self)
    }

    /// The pid file of the Redis node listening on `port`.
    pub fn redis_node_pid_file(&self, port: u16) -> Option<PathBuf> {
        redis::nodes(self)
            .into_iter()
            .find(|n| n.port(self) == port)
            .map(|n| n.pid_file(self))
    }

    /// Every Redis node's pid file.
    pub fn redis_pid_files(&self) -> Vec<PathBuf> {
        redis::nodes(self)
            .into_iter()
            .map(|n| n.pid_file(self))
            .collect()
    }

    fn logs(&self) -> PathBuf {
        self.dir.join("logs")
    }

    /// Starts whatever is not running yet, waits until both answer, and makes
    /// sure the topics exist. Stops what it started if anything fails.
    pub fn up(&self) -> Result<Running<'_>> {
        let t0 = Instant::now();
        fs::create_dir_all(self.logs())?;
        install::apt("redis-server", "redis-server")?;
        install::kafka_jars(&self.dir.join("kafka"))?;
        let mut running = Running {
            stack: self,
            endpoints: self.endpoints(),
            started_here: false,
        };
        // From here on, dropping `running` on an error stops what was started.
        let kafka = kafka::start(self)?;
        running.started_here |= kafka.iter().any(|k| k.started);
        let redis = redis::start(self)?;
        running.started_here |= redis.iter().any(|r| r.started);
        kafka::wait_ready(self, &kafka)?;
        redis::wait_ready(self, &redis)?;
        kafka::ensure_topics(&running.endpoints.kafka_brokers, "")?;
        // The topics of a prefixed deployment (the origin's ATTUNE_TOPIC_PREFIX) too.
        if let Some(prefix) = std::env::var("ATTUNE_TOPIC_PREFIX")
            .ok()
            .filter(|p| !p.is_empty())
        {
            kafka::ensure_topics(&running.endpoints.kafka_brokers, &prefix)?;
        }
        let env: String = running
            .endpoints
            .vars()
            .iter()
            .map(|(k, v)| format!("{k}={v}\n"))
            .collect();
        fs::write(self.dir.join("env"), &env)?;
        println!(
            "==> stack up in {:.1}s (Kafka pids {:?}, Redis pids {:?}); logs in {}\n{env}",
            t0.elapsed().as_secs_f64(),
            kafka.iter().map(|k| k.pid).collect::<Vec<_>>(),
            redis.iter().map(|r| r.pid).collect::<Vec<_>>(),
            self.logs().display()
        );
        Ok(running)
    }

    /// Starts Prometheus beside the stack (`stack up --monitoring`): it
    /// scrapes the origin and the consumer, with the alert rules loaded.
    pub fn monitoring(&self) -> Result<()> {
        install::apt("prometheus", "prometheus")?;
        let started = prometheus::start(self)?;
        prometheus::wait_ready(self, started.pid)?;
        println!(
            "==> Prometheus (pid {}) on http://127.0.0.1:{}/alerts — scraping the origin and the consumer",
            started.pid, self.prometheus_port
        );
        Ok(())
    }

    /// Stops Kafka, Redis and Prometheus; with `wipe`, deletes their data too.
    pub fn down(&self, wipe: bool) -> Result<()> {
        let kafka_nodes = kafka::every_node()
            .map(|n| (format!("Kafka ({})", n.id), n.pid_file(self), kafka::MARKER));
        let redis_nodes = redis::every_node().map(|n| (n.name(), n.pid_file(self), redis::MARKER));
        for (name, pid_file, marker) in kafka_nodes.chain(redis_nodes).chain([(
            "Prometheus".to_owned(),
            prometheus::pid_file(self),
            prometheus::MARKER,
        )]) {
            if !pid_file.exists() {
                continue;
            }
            match running_pid(&pid_file, marker) {
                Some(pid) => {
                    println!("==> stopping {name} (pid {pid})");
                    stop(pid, Duration::from_secs(30));
                }
                None => println!("==> {name} is not running"),
            }
            let _ = fs::remove_file(pid_file);
        }
        if wipe {
            for data in [
                kafka::every_node().next().unwrap().data_dir(self),
                self.dir.join("kafka/cluster"),
                self.dir.join("redis"),
                prometheus::data_dir(self),
            ] {
                if data.exists() {
                    println!("==> deleting {}", data.display());
                    fs::remove_dir_all(data)?;
                }
            }
        }
        Ok(())
    }

    /// Prints what runs and whether it answers; fails when something is down.
    pub fn status(&self) -> Result<()> {
        let kafka = kafka::status(self);
        let redis = redis::status(self);
        for (name, health) in kafka.iter().chain(&redis) {
            println!("{name}: {health}");
        }
        if self.redis_cluster && redis.iter().any(|(_, h)| h.is_up()) {
            match redis::slots(self) {
                Ok(lines) => {
                    for line in lines {
                        println!("Redis Cluster: {line}");
                    }
                }
                Err(e) => println!("Redis Cluster slots: unknown ({e})"),
            }
        }
        if kafka.iter().any(|(_, h)| h.is_up()) {
            match kafka::leaders(self) {
                Ok(line) => println!("Kafka partitions: {line}"),
                Err(e) => println!("Kafka partitions: unknown ({e})"),
            }
        }
        match prometheus::status(self) {
            Health::Stopped => {}
            health => println!(
                "Prometheus: {health} on http://127.0.0.1:{}",
                self.prometheus_port
            ),
        }
        if kafka.iter().chain(&redis).all(|(_, h)| h.is_up()) {
            for (k, v) in self.endpoints().vars() {
                println!("{k}={v}");
            }
            Ok(())
        } else {
            bail!("the stack is not fully up: run `cargo xtask stack up`")
        }
    }
}

/// Servers started by [`Stack::servers`]; stopped when dropped.
pub struct Servers {
    /// Pid file and pid of each node started here.
    started: Vec<(PathBuf, u32)>,
}

impl Drop for Servers {
    fn drop(&mut self) {
        for (pid_file, pid) in &self.started {
            stop(*pid, Duration::from_secs(30));
            let _ = fs::remove_file(pid_file);
        }
    }
}

/// A server's pid and whether this call started it.
struct Started {
    pid: u32,
    started: bool,
}

/// What `stack status` reports for one server.
enum Health {
    Answering(u32),
    NotAnswering(u32),
    Stopped,
}

impl Health {
    fn is_up(&self) -> bool {
        matches!(self, Health::Answering(_))
    }
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Health::Answering(pid) => write!(f, "running (pid {pid}), answering"),
            Health::NotAnswering(pid) => write!(f, "running (pid {pid}), NOT answering"),
            Health::Stopped => f.write_str("stopped"),
        }
    }
}

/// Fails with a clear message when `port` is taken by something that is not ours.
fn claim_port(service: &str, port: u16, env_var: &str) -> Result<()> {
    if !port_free(port) {
        bail!(
            "port {port} (for {service}) is in use by another process: stop it, \
             or choose another port with {env_var}=<port>"
        );
    }
    Ok(())
}
