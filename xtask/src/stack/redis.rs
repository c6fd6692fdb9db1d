//! Redis (Debian's redis-server) with an append-only file, so restarts keep
//! data: one node (development), or with `stack up --cluster` a Redis
//! Cluster of three primaries and three replicas (`redis-server
//! --cluster-enabled`, formed by `redis-cli --cluster create`).

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::{claim_port, Health, Stack, Started, READY_TIMEOUT};
use crate::process::{self, run, running_pid, spawn_detached};

/// Appears in the server's command line; identifies our process.
pub const MARKER: &str = "redis-server";

/// Nodes of the cluster layout: three primaries, each with one replica.
pub const CLUSTER_NODES: u8 = 6;

/// How long a primary may stay silent before its replica takes over.
const NODE_TIMEOUT_MS: u32 = 2000;

/// One Redis process of the stack: the single node, or node `id` (1-based)
/// of the cluster, listening `100 × (id − 1)` ports above the stack's Redis
/// port.
#[derive(Debug, Clone, Copy)]
pub struct Node {
    pub id: u8,
    clustered: bool,
}

impl Node {
    pub fn port(self, stack: &Stack) -> u16 {
        stack.redis_port + 100 * u16::from(self.id - 1)
    }

    /// `redis` alone; `redis-node-<id>` in the cluster.
    pub fn name(self) -> String {
        if self.clustered {
            format!("redis-node-{}", self.id)
        } else {
            "redis".into()
        }
    }

    pub fn data_dir(self, stack: &Stack) -> PathBuf {
        if self.clustered {
            stack.dir.join("redis/cluster").join(self.name())
        } else {
            stack.dir.join("redis")
        }
    }

    pub fn pid_file(self, stack: &Stack) -> PathBuf {
        stack.dir.join(format!("{}.pid", self.name()))
    }

    fn log_file(self, stack: &Stack) -> PathBuf {
        stack.logs().join(format!("{}.log", self.name()))
    }

    fn url(self, stack: &Stack) -> String {
        format!("redis://127.0.0.1:{}", self.port(stack))
    }
}

/// The nodes of the stack's layout.
pub fn nodes(stack: &Stack) -> Vec<Node> {
    if stack.redis_cluster {
        (1..=CLUSTER_NODES)
            .map(|id| Node {
                id,
                clustered: true,
            })
            .collect()
    } else {
        vec![Node {
            id: 1,
            clustered: false,
        }]
    }
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

/// `REDIS_URL`: the node, or every cluster node (the client's seeds).
pub fn url(stack: &Stack) -> String {
    nodes(stack)
        .iter()
        .map(|n| n.url(stack))
        .collect::<Vec<_>>()
        .join(",")
}

/// Starts every node that is not running yet.
pub fn start(stack: &Stack) -> Result<Vec<Started>> {
    nodes(stack)
        .into_iter()
        .map(|n| start_node(stack, n))
        .collect()
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
    claim_port(&name, node.port(stack), "ATTUNE_REDIS_PORT")?;
    fs::create_dir_all(node.data_dir(stack))?;
    println!("==> starting {name} on 127.0.0.1:{}", node.port(stack));
    let mut cmd = Command::new("redis-server");
    cmd.args(["--bind", "127.0.0.1", "--port"])
        .arg(node.port(stack).to_string())
        .arg("--dir")
        .arg(node.data_dir(stack))
        .args(["--save", "", "--appendonly", "yes", "--daemonize", "no"]);
    if node.clustered {
        cmd.args(["--cluster-enabled", "yes"])
            .args(["--cluster-config-file", "nodes.conf"])
            .arg("--cluster-node-timeout")
            .arg(NODE_TIMEOUT_MS.to_string());
    }
    let pid = spawn_detached(&mut cmd, &node.log_file(stack), &node.pid_file(stack))?;
    Ok(Started { pid, started: true })
}

fn query<T: ::redis::FromRedisValue>(url: &str, cmd: &::redis::Cmd) -> ::redis::RedisResult<T> {
    let client = ::redis::Client::open(url)?;
    let mut conn = client.get_connection_with_timeout(Duration::from_secs(1))?;
    cmd.query(&mut conn)
}

fn answers(url: &str) -> bool {
    query::<String>(url, &::redis::cmd("PING")).is_ok_and(|pong| pong == "PONG")
}

/// `CLUSTER INFO`'s fields.
fn cluster_info(url: &str) -> Option<std::collections::HashMap<String, String>> {
    let info: String = query(url, ::redis::cmd("CLUSTER").arg("INFO")).ok()?;
    Some(
        info.lines()
            .filter_map(|l| l.trim().split_once(':'))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    )
}

/// Whether every node sees the whole cluster, every slot served.
fn cluster_ok(stack: &Stack) -> bool {
    nodes(stack).iter().all(|n| {
        cluster_info(&n.url(stack)).is_some_and(|i| {
            i.get("cluster_state").map(String::as_str) == Some("ok")
                && i.get("cluster_known_nodes") == Some(&CLUSTER_NODES.to_string())
        })
    })
}

/// Waits until each node answers; the cluster is formed on its first start
/// (a restarted node rejoins from its `nodes.conf`), then waited for until
/// every node sees every slot served.
pub fn wait_ready(stack: &Stack, started: &[Started]) -> Result<()> {
    for (node, s) in nodes(stack).into_iter().zip(started) {
        let url = node.url(stack);
        process::wait_ready(
            &node.name(),
            s.pid,
            &node.log_file(stack),
            READY_TIMEOUT,
            || answers(&url),
        )?;
    }
    if !stack.redis_cluster {
        return Ok(());
    }
    let formed = nodes(stack).iter().any(|n| {
        cluster_info(&n.url(stack))
            .and_then(|i| i.get("cluster_known_nodes").cloned())
            .is_some_and(|known| known != "1")
    });
    if !formed {
        println!("==> forming the Redis Cluster (3 primaries, 3 replicas)");
        let mut create = Command::new("redis-cli");
        create.args(["--cluster", "create"]);
        for n in nodes(stack) {
            create.arg(format!("127.0.0.1:{}", n.port(stack)));
        }
        run(create
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdout(std::process::Stdio::null()))?;
    }
    let deadline = Instant::now() + READY_TIMEOUT;
    while !cluster_ok(stack) {
        if Instant::now() > deadline {
            bail!(
                "the Redis Cluster did not reach cluster_state:ok in {} s; see {}",
                READY_TIMEOUT.as_secs(),
                stack.logs().display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// Each node's health, named.
pub fn status(stack: &Stack) -> Vec<(String, Health)> {
    nodes(stack)
        .into_iter()
        .map(|node| {
            let health = match running_pid(&node.pid_file(stack), MARKER) {
                None => Health::Stopped,
                Some(pid) if answers(&node.url(stack)) => Health::Answering(pid),
                Some(pid) => Health::NotAnswering(pid),
            };
            (node.name(), health)
        })
        .collect()
}

/// Which node serves which slots, and their replicas: one line per primary
/// for `stack status`, as the first node that answers sees it (`CLUSTER NODES`).
pub fn slots(stack: &Stack) -> Result<Vec<String>> {
    let nodes = cluster_nodes(stack)?;
    let rows: Vec<Vec<&str>> = nodes.lines().map(|l| l.split(' ').collect()).collect();
    let mut lines = Vec::new();
    for row in rows.iter().filter(|r| serves(r)) {
        let replicas = rows
            .iter()
            .filter(|r| r.len() > 3 && r[3] == row[0] && !r[2].contains("fail"))
            .map(|r| address(r[1]))
            .collect::<Vec<_>>()
            .join(", ");
        let replicas = if replicas.is_empty() {
            "NO replica".to_owned()
        } else {
            format!("replica {replicas}")
        };
        lines.push(format!(
            "primary {}: slots {} ({replicas})",
            address(row[1]),
            row[8..].join(" ")
        ));
    }
    lines.sort();
    Ok(lines)
}

/// The ports of the primaries that serve slots, as a node that answers
/// sees them (a failed primary is left out once the cluster marked it).
pub fn primaries(stack: &Stack) -> Result<Vec<u16>> {
    let nodes = cluster_nodes(stack)?;
    let mut ports: Vec<u16> = nodes
        .lines()
        .map(|l| l.split(' ').collect::<Vec<_>>())
        .filter(|r| serves(r))
        .filter_map(|r| address(r[1]).rsplit(':').next()?.parse().ok())
        .collect();
    ports.sort();
    Ok(ports)
}

/// A `CLUSTER NODES` row of a primary that is up and serves slots.
fn serves(row: &[&str]) -> bool {
    row.len() > 8 && row[2].split(',').any(|f| f == "master") && !row[2].contains("fail")
}

/// `CLUSTER NODES` from the first node that answers.
fn cluster_nodes(stack: &Stack) -> Result<String> {
    nodes(stack)
        .iter()
        .find_map(|n| query(&n.url(stack), ::redis::cmd("CLUSTER").arg("NODES")).ok())
        .context("no Redis Cluster node answered CLUSTER NODES")
}

/// `127.0.0.1:16379@26379` → `127.0.0.1:16379`.
fn address(field: &str) -> &str {
    field.split('@').next().unwrap_or(field)
}
