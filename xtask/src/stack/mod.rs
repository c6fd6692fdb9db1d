//! `cargo xtask stack up|down|status`: real Apache Kafka (single-node KRaft,
//! jars from Maven Central) and Redis (Debian's redis-server) on loopback.
//!
//! Everything lives under `target/stack/` (`ATTUNE_STACK_DIR`): `kafka/libs`
//! (jars), `kafka/data`, `redis/` (append-only file), `logs/`, `*.pid`, and `env`
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

use anyhow::{bail, Result};

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
        }
    }

    pub fn endpoints(&self) -> Endpoints {
        Endpoints {
            kafka_brokers: format!("127.0.0.1:{}", self.kafka_port),
            redis_url: format!("redis://127.0.0.1:{}", self.redis_port),
        }
    }

    /// The broker's pid file (the outage test pauses the broker through it).
    pub fn kafka_pid_file(&self) -> PathBuf {
        kafka::pid_file(self)
    }

    /// Redis's pid file (the Redis outage test pauses it through it).
    pub fn redis_pid_file(&self) -> PathBuf {
        redis::pid_file(self)
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
        running.started_here |= kafka.started;
        let redis = redis::start(self)?;
        running.started_here |= redis.started;
        kafka::wait_ready(self, kafka.pid)?;
        redis::wait_ready(self, redis.pid)?;
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
            "==> stack up in {:.1}s (Kafka pid {}, Redis pid {}); logs in {}\n{env}",
            t0.elapsed().as_secs_f64(),
            kafka.pid,
            redis.pid,
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
        for (name, pid_file, marker) in [
            ("Kafka", kafka::pid_file(self), kafka::MARKER),
            ("Redis", redis::pid_file(self), redis::MARKER),
            ("Prometheus", prometheus::pid_file(self), prometheus::MARKER),
        ] {
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
                kafka::data_dir(self),
                redis::data_dir(self),
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
        println!("Kafka: {kafka}\nRedis: {redis}");
        match prometheus::status(self) {
            Health::Stopped => {}
            health => println!(
                "Prometheus: {health} on http://127.0.0.1:{}",
                self.prometheus_port
            ),
        }
        if kafka.is_up() && redis.is_up() {
            for (k, v) in self.endpoints().vars() {
                println!("{k}={v}");
            }
            Ok(())
        } else {
            bail!("the stack is not fully up: run `cargo xtask stack up`")
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
