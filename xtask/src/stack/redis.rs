//! Redis (Debian's redis-server) with an append-only file, so restarts keep data.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::Result;

use super::{claim_port, Health, Stack, Started, READY_TIMEOUT};
use crate::process::{self, running_pid, spawn_detached};

/// Appears in the server's command line; identifies our process.
pub const MARKER: &str = "redis-server";

pub fn data_dir(stack: &Stack) -> PathBuf {
    stack.dir.join("redis")
}

pub fn pid_file(stack: &Stack) -> PathBuf {
    stack.dir.join("redis.pid")
}

fn log_file(stack: &Stack) -> PathBuf {
    stack.logs().join("redis.log")
}

/// Starts redis-server unless it runs already.
pub fn start(stack: &Stack) -> Result<Started> {
    if let Some(pid) = running_pid(&pid_file(stack), MARKER) {
        println!("==> Redis already running (pid {pid})");
        return Ok(Started {
            pid,
            started: false,
        });
    }
    claim_port("Redis", stack.redis_port, "ATTUNE_REDIS_PORT")?;
    std::fs::create_dir_all(data_dir(stack))?;
    println!("==> starting Redis on 127.0.0.1:{}", stack.redis_port);
    let pid = spawn_detached(
        Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port"])
            .arg(stack.redis_port.to_string())
            .arg("--dir")
            .arg(data_dir(stack))
            .args(["--save", "", "--appendonly", "yes", "--daemonize", "no"]),
        &log_file(stack),
        &pid_file(stack),
    )?;
    Ok(Started { pid, started: true })
}

fn answers(url: &str) -> bool {
    let ping = || -> redis::RedisResult<String> {
        let client = redis::Client::open(url)?;
        let mut conn = client.get_connection_with_timeout(Duration::from_secs(1))?;
        redis::cmd("PING").query(&mut conn)
    };
    ping().is_ok_and(|pong| pong == "PONG")
}

pub fn wait_ready(stack: &Stack, pid: u32) -> Result<()> {
    let url = stack.endpoints().redis_url;
    process::wait_ready("Redis", pid, &log_file(stack), READY_TIMEOUT, || {
        answers(&url)
    })
}

pub fn status(stack: &Stack) -> Health {
    match running_pid(&pid_file(stack), MARKER) {
        None => Health::Stopped,
        Some(pid) if answers(&stack.endpoints().redis_url) => Health::Answering(pid),
        Some(pid) => Health::NotAnswering(pid),
    }
}
