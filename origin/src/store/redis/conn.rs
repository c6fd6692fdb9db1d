//! Connections to Redis: one node, or a Redis Cluster.
//!
//! `REDIS_URL` is one URL (`redis://127.0.0.1:6379`) for a single node, or
//! several separated by commas for a cluster
//! (`redis://10.0.0.1:7000,redis://10.0.0.2:7000`): seed nodes, from which
//! the client learns the slots and follows failovers.
//!
//! In a cluster a command, a script call and a pipeline each reach one node,
//! so each must touch keys of one hash slot. A user's keys share the
//! `{site/user}` hash tag and a site's aggregates share `{site}` (or
//! `{site~segment}`), so every script stays in one slot; what a round
//! writes across users and sites goes through [`Pipes`], which splits it by
//! slot.
//!
//! Replication in Redis is asynchronous: a primary that dies before its
//! replica copied a write loses it in the failover. Writers that must not
//! lose what they acknowledge call [`SyncConn::wait_replicated`] /
//! [`AsyncConn::wait_replicated`] before they acknowledge.

use std::collections::HashMap;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::cluster_routing::Slot;
use redis::{
    Arg, Cmd, ConnectionLike, FromRedisValue, Pipeline, RedisFuture, RedisResult, Script, Value,
};

/// How long a write waits for a replica's acknowledgement before the
/// writer gives up (and retries its round).
pub const REPLICATION_TIMEOUT: Duration = Duration::from_secs(2);

/// The nodes `REDIS_URL` names: one, or the seed nodes of a cluster.
pub fn nodes(url: &str) -> Vec<&str> {
    url.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect()
}

fn cluster_client(seeds: &[&str], timeout: Duration) -> RedisResult<redis::cluster::ClusterClient> {
    redis::cluster::ClusterClient::builder(seeds.iter().copied())
        .connection_timeout(timeout)
        .response_timeout(Duration::from_secs(10))
        .build()
}

/// A blocking connection (the consumers' loops are synchronous).
pub enum SyncConn {
    /// A single node.
    Node(redis::Connection),
    /// A Redis Cluster (boxed: it is large, and made once per writer).
    Cluster(Box<redis::cluster::ClusterConnection>),
}

impl SyncConn {
    /// Connects to what `url` names.
    pub fn open(url: &str) -> RedisResult<Self> {
        Self::open_with_timeout(url, Duration::from_secs(10))
    }

    /// Connects, giving up after `timeout`.
    pub fn open_with_timeout(url: &str, timeout: Duration) -> RedisResult<Self> {
        match nodes(url).as_slice() {
            [one] => Ok(SyncConn::Node(
                redis::Client::open(*one)?.get_connection_with_timeout(timeout)?,
            )),
            seeds => Ok(SyncConn::Cluster(Box::new(
                cluster_client(seeds, timeout)?.get_connection()?,
            ))),
        }
    }

    /// Waits until a replica of every primary holds this connection's
    /// writes; an error if one does not within [`REPLICATION_TIMEOUT`]. A
    /// single node has no replica to wait for.
    pub fn wait_replicated(&mut self) -> RedisResult<()> {
        match self {
            SyncConn::Node(_) => Ok(()),
            SyncConn::Cluster(c) => replicated(wait_cmd().query(c.as_mut())?),
        }
    }
}

fn wait_cmd() -> Cmd {
    let mut cmd = redis::cmd("WAIT");
    cmd.arg(1).arg(REPLICATION_TIMEOUT.as_millis() as u64);
    cmd
}

/// WAIT's answer, the fewest replicas any primary reached.
fn replicated(replicas: i64) -> RedisResult<()> {
    if replicas >= 1 {
        return Ok(());
    }
    metrics::counter!("attune_redis_unreplicated_writes_total").increment(1);
    Err(redis::RedisError::from((
        redis::ErrorKind::Io,
        "a Redis primary has no replica that acknowledged the writes",
        "start its replica again (or add one): until then nothing is acknowledged".to_owned(),
    )))
}

impl ConnectionLike for SyncConn {
    fn req_packed_command(&mut self, cmd: &[u8]) -> RedisResult<Value> {
        match self {
            SyncConn::Node(c) => c.req_packed_command(cmd),
            SyncConn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        match self {
            SyncConn::Node(c) => c.req_packed_commands(cmd, offset, count),
            SyncConn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    // The cluster routes a command by its parsed form (keys, or all nodes).
    fn req_command(&mut self, cmd: &Cmd) -> RedisResult<Value> {
        match self {
            SyncConn::Node(c) => c.req_command(cmd),
            SyncConn::Cluster(c) => c.req_command(cmd),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            SyncConn::Node(c) => c.get_db(),
            SyncConn::Cluster(c) => c.get_db(),
        }
    }

    fn check_connection(&mut self) -> bool {
        match self {
            SyncConn::Node(c) => c.check_connection(),
            SyncConn::Cluster(c) => c.check_connection(),
        }
    }

    fn is_open(&self) -> bool {
        match self {
            SyncConn::Node(c) => c.is_open(),
            SyncConn::Cluster(c) => c.is_open(),
        }
    }
}

/// A multiplexed connection that reconnects by itself (the API's).
#[derive(Clone)]
pub enum AsyncConn {
    /// A single node.
    Node(ConnectionManager),
    /// A Redis Cluster.
    Cluster(redis::cluster_async::ClusterConnection),
}

impl AsyncConn {
    /// Connects to what `url` names.
    pub async fn open(url: &str) -> RedisResult<Self> {
        match nodes(url).as_slice() {
            [one] => Ok(AsyncConn::Node(
                ConnectionManager::new(redis::Client::open(*one)?).await?,
            )),
            seeds => Ok(AsyncConn::Cluster(
                cluster_client(seeds, Duration::from_secs(10))?
                    .get_async_connection()
                    .await?,
            )),
        }
    }

    /// As [`SyncConn::wait_replicated`].
    pub async fn wait_replicated(&self) -> RedisResult<()> {
        match self {
            AsyncConn::Node(_) => Ok(()),
            AsyncConn::Cluster(c) => replicated(wait_cmd().query_async(&mut c.clone()).await?),
        }
    }
}

impl redis::aio::ConnectionLike for AsyncConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            AsyncConn::Node(c) => c.req_packed_command(cmd),
            AsyncConn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            AsyncConn::Node(c) => c.req_packed_commands(pipeline, offset, count),
            AsyncConn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            AsyncConn::Node(c) => c.get_db(),
            AsyncConn::Cluster(c) => c.get_db(),
        }
    }
}

/// Commands across hash slots, answered in the order they were added: one
/// pipeline to a single node; one per slot to a cluster. Not a
/// transaction: every command here is safe to repeat (the consumers'
/// writes move offset watermarks), and each stands alone.
#[derive(Default)]
pub struct Pipes {
    /// Each command, its slot, and whether its reply is wanted.
    cmds: Vec<(Slot, Cmd, bool)>,
    /// Scripts the commands call, loaded first: a restarted Redis has none.
    scripts: Vec<Script>,
}

impl Pipes {
    /// An empty set.
    pub fn new() -> Self {
        Pipes::default()
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.cmds.is_empty()
    }

    /// Adds `cmd`, whose reply is wanted. Its keys must share a slot.
    pub fn add(&mut self, cmd: Cmd) -> &mut Self {
        self.cmds.push((slot_of(&cmd), cmd, true));
        self
    }

    /// Adds `cmd`, whose reply is not wanted.
    pub fn add_ignored(&mut self, cmd: Cmd) -> &mut Self {
        self.cmds.push((slot_of(&cmd), cmd, false));
        self
    }

    /// Adds a call of `script` (`call` is built from it); its reply is wanted.
    pub fn invoke(&mut self, script: &Script, call: &redis::ScriptInvocation) -> &mut Self {
        if !self
            .scripts
            .iter()
            .any(|s| s.get_hash() == script.get_hash())
        {
            self.scripts.push(script.clone());
        }
        self.add(Cmd::invoke_script(call))
    }

    /// The replies wanted, in order, over a blocking connection.
    pub fn query(&self, conn: &mut SyncConn) -> RedisResult<Vec<Value>> {
        if self.cmds.is_empty() {
            return Ok(Vec::new());
        }
        match conn {
            SyncConn::Node(c) => self.as_one_pipeline().query(c),
            SyncConn::Cluster(_) => {
                for script in &self.scripts {
                    script.load(conn)?;
                }
                let mut replies = Replies::new(self.cmds.len());
                for (positions, pipe) in self.by_slot() {
                    replies.place(&positions, pipe.query(conn)?);
                }
                Ok(replies.wanted(&self.cmds))
            }
        }
    }

    /// The replies wanted, in order; a cluster's slots are asked at once.
    pub async fn query_async(&self, conn: &AsyncConn) -> RedisResult<Vec<Value>> {
        if self.cmds.is_empty() {
            return Ok(Vec::new());
        }
        match conn {
            AsyncConn::Node(c) => self.as_one_pipeline().query_async(&mut c.clone()).await,
            AsyncConn::Cluster(c) => {
                for script in &self.scripts {
                    script.load_async(&mut c.clone()).await?;
                }
                let groups = self.by_slot();
                let answers = futures::future::try_join_all(groups.iter().map(|(_, pipe)| async {
                    pipe.query_async::<Vec<Value>>(&mut c.clone()).await
                }))
                .await?;
                let mut replies = Replies::new(self.cmds.len());
                for ((positions, _), answer) in groups.iter().zip(answers) {
                    replies.place(positions, answer);
                }
                Ok(replies.wanted(&self.cmds))
            }
        }
    }

    /// [`Pipes::query`]'s replies as `T` (a tuple, a `Vec`…).
    pub fn query_as<T: FromRedisValue>(&self, conn: &mut SyncConn) -> RedisResult<T> {
        Ok(T::from_redis_value(Value::Array(self.query(conn)?))?)
    }

    /// [`Pipes::query_async`]'s replies as `T`.
    pub async fn query_async_as<T: FromRedisValue>(&self, conn: &AsyncConn) -> RedisResult<T> {
        Ok(T::from_redis_value(Value::Array(
            self.query_async(conn).await?,
        ))?)
    }

    fn as_one_pipeline(&self) -> Pipeline {
        let mut pipe = redis::pipe();
        for script in &self.scripts {
            pipe.load_script(script).ignore();
        }
        for (_, cmd, wanted) in &self.cmds {
            pipe.add_command(cmd.clone());
            if !wanted {
                pipe.ignore();
            }
        }
        pipe
    }

    /// One pipeline per slot (every reply kept), with the positions of its
    /// commands.
    fn by_slot(&self) -> Vec<(Vec<usize>, Pipeline)> {
        let mut groups: Vec<(Vec<usize>, Pipeline)> = Vec::new();
        let mut index: HashMap<Slot, usize> = HashMap::new();
        for (i, (slot, cmd, _)) in self.cmds.iter().enumerate() {
            let g = *index.entry(*slot).or_insert_with(|| {
                groups.push((Vec::new(), redis::pipe()));
                groups.len() - 1
            });
            groups[g].0.push(i);
            groups[g].1.add_command(cmd.clone());
        }
        groups
    }
}

/// Every command's reply, by position.
struct Replies(Vec<Value>);

impl Replies {
    fn new(n: usize) -> Self {
        Replies(vec![Value::Nil; n])
    }

    fn place(&mut self, positions: &[usize], answers: Vec<Value>) {
        for (at, v) in positions.iter().zip(answers) {
            self.0[*at] = v;
        }
    }

    fn wanted(self, cmds: &[(Slot, Cmd, bool)]) -> Vec<Value> {
        self.0
            .into_iter()
            .zip(cmds)
            .filter(|(_, (_, _, wanted))| *wanted)
            .map(|(v, _)| v)
            .collect()
    }
}

/// The slot of a command's first key (EVAL/EVALSHA: of its first KEYS
/// entry); a keyless command goes with slot 0's.
fn slot_of(cmd: &Cmd) -> Slot {
    let args: Vec<&[u8]> = cmd
        .args_iter()
        .filter_map(|a| match a {
            Arg::Simple(bytes) => Some(bytes),
            _ => None,
        })
        .collect();
    let name = args.first().map(|n| n.to_ascii_uppercase());
    let key = match name.as_deref() {
        Some(b"EVAL" | b"EVALSHA") => args.get(3),
        _ => args.get(1),
    };
    Slot::for_key(key.copied().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_list_names_cluster_seeds_and_one_url_a_node() {
        assert_eq!(nodes("redis://a:1"), ["redis://a:1"]);
        assert_eq!(
            nodes("redis://a:1, redis://b:2,"),
            ["redis://a:1", "redis://b:2"]
        );
    }

    #[test]
    fn commands_are_grouped_by_the_slot_of_their_key() {
        let script = Script::new("return 1");
        let mut pipes = Pipes::new();
        pipes
            .add(Cmd::hgetall("attune:{s/u1}:profile"))
            .add(Cmd::hgetall("attune:{s}:items"))
            .add_ignored(Cmd::hset("attune:{s/u1}:attrs", "a", "b"));
        pipes.invoke(&script, script.key("attune:{s}:pop").arg(1));
        let groups = pipes.by_slot();
        let positions: Vec<Vec<usize>> = groups.iter().map(|(p, _)| p.clone()).collect();
        assert_eq!(positions, [vec![0, 2], vec![1, 3]]);
        assert_eq!(pipes.scripts.len(), 1);
        let mut replies = Replies::new(4);
        for (p, _) in &groups {
            replies.place(p, p.iter().map(|i| Value::Int(*i as i64)).collect());
        }
        assert_eq!(
            replies.wanted(&pipes.cmds),
            [Value::Int(0), Value::Int(1), Value::Int(3)]
        );
    }
}
