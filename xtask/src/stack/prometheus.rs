//! Prometheus (Debian's `prometheus`) for `cargo xtask stack up --monitoring`:
//! scrapes the origin (`ATTUNE_LISTEN`, default 127.0.0.1:8080) and a consumer
//! (`ATTUNE_CONSUMER_LISTEN`, default 127.0.0.1:9464) every 5 s, with the
//! alert rules of `origin/alerts/` loaded. UI and API on
//! `ATTUNE_PROMETHEUS_PORT` (19090).

use std::path::PathBuf;
use std::process::Command;

use anyhow::Result;

use super::{claim_port, Health, Stack, Started, READY_TIMEOUT};
use crate::process::{self, port_open, running_pid, spawn_detached};

/// Appears in the server's command line; identifies our process.
pub const MARKER: &str = "prometheus";

pub fn data_dir(stack: &Stack) -> PathBuf {
    stack.dir.join("prometheus")
}

pub fn pid_file(stack: &Stack) -> PathBuf {
    stack.dir.join("prometheus.pid")
}

fn log_file(stack: &Stack) -> PathBuf {
    stack.logs().join("prometheus.log")
}

/// The scrape config: the origin and the consumer at their listen addresses.
fn config() -> String {
    let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let rules = crate::workspace_root().join("origin/alerts/attune.rules.yml");
    format!(
        "global: {{scrape_interval: 5s, evaluation_interval: 5s}}\n\
         rule_files: [\"{}\"]\n\
         scrape_configs:\n\
         \x20 - job_name: attune-origin\n\
         \x20   static_configs: [{{targets: [\"{}\"]}}]\n\
         \x20 - job_name: attune-consumer\n\
         \x20   static_configs: [{{targets: [\"{}\"]}}]\n",
        rules.display(),
        var("ATTUNE_LISTEN", "127.0.0.1:8080"),
        var("ATTUNE_CONSUMER_LISTEN", "127.0.0.1:9464"),
    )
}

/// Starts Prometheus unless it runs already.
pub fn start(stack: &Stack) -> Result<Started> {
    if let Some(pid) = running_pid(&pid_file(stack), MARKER) {
        println!("==> Prometheus already running (pid {pid})");
        return Ok(Started {
            pid,
            started: false,
        });
    }
    claim_port(
        "Prometheus",
        stack.prometheus_port,
        "ATTUNE_PROMETHEUS_PORT",
    )?;
    std::fs::create_dir_all(data_dir(stack))?;
    let config_file = stack.dir.join("prometheus.yml");
    std::fs::write(&config_file, config())?;
    println!(
        "==> starting Prometheus on http://127.0.0.1:{}",
        stack.prometheus_port
    );
    let pid = spawn_detached(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!("--storage.tsdb.path={}", data_dir(stack).display()))
            .arg(format!(
                "--web.listen-address=127.0.0.1:{}",
                stack.prometheus_port
            )),
        &log_file(stack),
        &pid_file(stack),
    )?;
    Ok(Started { pid, started: true })
}

pub fn wait_ready(stack: &Stack, pid: u32) -> Result<()> {
    let port = stack.prometheus_port;
    process::wait_ready("Prometheus", pid, &log_file(stack), READY_TIMEOUT, || {
        port_open(port)
    })
}

pub fn status(stack: &Stack) -> Health {
    match running_pid(&pid_file(stack), MARKER) {
        None => Health::Stopped,
        Some(pid) if port_open(stack.prometheus_port) => Health::Answering(pid),
        Some(pid) => Health::NotAnswering(pid),
    }
}
