//! The faults the harness injects, each returning once what it broke has
//! been started again (a paused broker: resumed).

use std::time::Duration;

use anyhow::{bail, Context, Result};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

use super::procs::Procs;
use crate::process::alive;
use crate::stack::Stack;

#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// kill -9 of a consumer (each in turn), restarted under its instance name.
    KillConsumer,
    /// SIGKILL of the broker leading the clicks topic's partition 0, restarted.
    KillLeader,
    /// SIGSTOP of the broker leading the clicks topic's partition 1 for a
    /// while, then SIGCONT.
    PauseBroker(Duration),
    /// kill -9 of a Redis Cluster primary; once its replica has taken over,
    /// it is started again (and rejoins as the replica).
    KillRedisPrimary,
    /// kill -9 of the origin, the consumers, every broker and Redis; all
    /// started again.
    RestartEverything,
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::KillConsumer => f.write_str("kill -9 a consumer"),
            Fault::KillLeader => f.write_str("SIGKILL the partition-leader broker"),
            Fault::PauseBroker(d) => write!(f, "SIGSTOP a broker for {} s", d.as_secs()),
            Fault::KillRedisPrimary => f.write_str("kill -9 a Redis primary"),
            Fault::RestartEverything => f.write_str("kill -9 everything, restart"),
        }
    }
}

pub fn inject(fault: &Fault, stack: &Stack, procs: &mut Procs) -> Result<()> {
    match fault {
        Fault::KillConsumer => procs.kill_next_consumer(),
        Fault::KillLeader => {
            let pid = leader_pid(stack, 0)?;
            signal(pid, Signal::SIGKILL)?;
            std::thread::sleep(Duration::from_secs(3));
            restart_stack(stack)
        }
        Fault::PauseBroker(pause) => {
            let pid = leader_pid(stack, 1)?;
            signal(pid, Signal::SIGSTOP)?;
            std::thread::sleep(*pause);
            signal(pid, Signal::SIGCONT)
        }
        Fault::KillRedisPrimary => {
            let before = stack.redis_primaries()?;
            let port = before[0];
            let file = stack
                .redis_node_pid_file(port)
                .context("the primary is not one of the stack's Redis nodes")?;
            signal(pid_in(&file)?, Signal::SIGKILL)?;
            wait_failover(stack, port, before.len())?;
            restart_stack(stack)
        }
        Fault::RestartEverything => {
            procs.kill_all();
            let mut files = stack.redis_pid_files();
            files.extend((1..=3).filter_map(|id| stack.kafka_node_pid_file(id)));
            for file in files {
                signal(pid_in(&file)?, Signal::SIGKILL)?;
            }
            std::thread::sleep(Duration::from_secs(2));
            restart_stack(stack)?;
            procs.start_all()
        }
    }
}

/// Starts whatever of the stack is not running and waits until it answers.
fn restart_stack(stack: &Stack) -> Result<()> {
    stack.up()?.keep();
    Ok(())
}

fn pid_in(file: &std::path::Path) -> Result<u32> {
    std::fs::read_to_string(file)
        .with_context(|| format!("read {}", file.display()))?
        .trim()
        .parse()
        .with_context(|| format!("a pid in {}", file.display()))
}

/// Signals the process group of `pid` (the stack's servers lead their own)
/// and, for a kill, waits until it is gone.
fn signal(pid: u32, signal: Signal) -> Result<()> {
    killpg(Pid::from_raw(pid as i32), signal).with_context(|| format!("{signal} to {pid}"))?;
    if signal == Signal::SIGKILL {
        while alive(pid) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}

/// Waits until `primaries` primaries serve the slots again, none of them
/// the one on `killed` (its replica was promoted).
fn wait_failover(stack: &Stack, killed: u16, primaries: usize) -> Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let now = stack.redis_primaries().unwrap_or_default();
        if now.len() == primaries && !now.contains(&killed) {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            bail!("no replica took over from the Redis primary on {killed} within 60 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The pid of the broker leading `partition` of the clicks topic.
fn leader_pid(stack: &Stack, partition: i32) -> Result<u32> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", stack.endpoints().kafka_brokers)
        .create()?;
    let topic = attune_core::routing::topic(attune_core::EventKind::Click);
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let leader = metadata
        .topics()
        .first()
        .and_then(|t| t.partitions().iter().find(|p| p.id() == partition))
        .map(|p| p.leader())
        .context("the clicks topic's partition has no leader")?;
    let Some(file) = stack.kafka_node_pid_file(leader) else {
        bail!("broker {leader} is not one of the stack's nodes");
    };
    pid_in(&file)
}
