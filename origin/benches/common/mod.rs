//! What the benchmarks share: their own topics and site on the real stack
//! (`cargo xtask bench …` passes KAFKA_BROKERS and REDIS_URL), an origin in
//! this process, consumer processes, batches and profile reads, and where
//! reports are written.
#![allow(dead_code)] // each benchmark uses part of this

use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use attune_core::codec::encode_msgpack;
use attune_core::routing::all_topics;
use attune_core::{Batch, Event, Interaction};
use attune_origin::config::{ServeArgs, SiteConfig};
use attune_origin::AppState;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;

pub const API_KEY: &str = "bench-secret-api-key";

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// `n` events for `anon`, clicks and page views on `article-0..50`.
pub fn batch(site: &str, anon: &str, n: usize) -> Vec<u8> {
    let t = now_ms();
    let events = (0..n)
        .map(|i| Event {
            id: uuid::Uuid::now_v7(),
            ts_ms: t,
            interaction: if i % 2 == 0 {
                Interaction::Click
            } else {
                Interaction::PageView
            },
            item: Some(format!("article-{}", i % 50)),
            context: None,
            slot: None,
        })
        .collect();
    encode_msgpack(&Batch {
        site_key: site.into(),
        anonymous_id: anon.into(),
        user_token: None,
        sent_at_ms: t,
        dropped: 0,
        events,
    })
}

/// Writes `json` to target/bench/<name>.json and says so.
pub fn write_report(name: &str, json: &impl serde::Serialize) -> anyhow::Result<()> {
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(
        out.join(format!("{name}.json")),
        serde_json::to_string_pretty(json)?,
    )?;
    println!("  wrote target/bench/{name}.json");
    Ok(())
}

/// The bench site: its key, the bench API key, every page allowed.
pub fn site(site_key: &str) -> SiteConfig {
    SiteConfig {
        site_key: site_key.into(),
        api_key: API_KEY.into(),
        token_secret: "bench-token-secret".into(),
        retired_token_secrets: Vec::new(),
        allowed_origins: vec!["*".into()],
        weights: Default::default(),
        experiments: Default::default(),
        segment: Default::default(),
    }
}

/// An origin on the stack at `brokers` and `redis_url`, on `prefix`'s topics
/// and group, with limits no benchmark load reaches.
pub fn serve_args(brokers: &str, redis_url: &str, prefix: &str) -> anyhow::Result<ServeArgs> {
    Ok(ServeArgs {
        listen: "127.0.0.1:0".parse()?,
        config: None,
        kafka_brokers: Some(brokers.into()),
        redis_url: Some(redis_url.into()),
        data_dir: "./data".into(),
        max_body_bytes: 256 * 1024,
        rate_per_key: 1_000_000,
        rate_per_ip: 1_000_000,
        header_timeout_ms: 10_000,
        body_timeout_ms: 30_000,
        audit_every_ms: 30_000,
        audit_settle_s: 180,
        max_connections: 10_000,
        store_timeout_ms: 100,
        edge_secret: None,
        produce_timeout_ms: 10_000,
        kafka_linger_ms: 1,
        popularity_half_life_h: 24.0,
        topic_prefix: prefix.into(),
        affinity_half_life_h: 24.0,
        consumer_group: format!("g-{prefix}"),
        validation_sample: 0.25,
        retrain_every_s: 0,
    })
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// One benchmark's part of the stack: its topics (`<name><run>.` prefix),
/// its site and an origin serving them in this process.
pub struct Bench {
    pub brokers: String,
    pub redis_url: String,
    pub prefix: String,
    pub site_key: String,
    /// The origin, `http://127.0.0.1:port`.
    pub base: String,
    pub http: reqwest::Client,
}

impl Bench {
    /// Creates the topics and starts the origin.
    pub async fn start(name: &str) -> anyhow::Result<Bench> {
        let var = |v: &str| {
            std::env::var(v).map_err(|_| anyhow::anyhow!("run `cargo xtask bench {name}`"))
        };
        Self::start_on(name, &var("KAFKA_BROKERS")?, &var("REDIS_URL")?).await
    }

    /// [`Bench::start`] on the Kafka at `brokers` and the Redis at `redis_url`.
    pub async fn start_on(name: &str, brokers: &str, redis_url: &str) -> anyhow::Result<Bench> {
        let (brokers, redis_url) = (brokers.to_owned(), redis_url.to_owned());
        let run_id = uuid::Uuid::now_v7().simple().to_string()[20..].to_owned();
        let prefix = format!("{name}{run_id}.");
        // Its own site too, so an audit counts this run's ledger only.
        let site_key = format!("{name}{run_id}");
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .create()?;
        let names: Vec<String> = all_topics().map(|t| format!("{prefix}{t}")).collect();
        let cluster = admin
            .inner()
            .fetch_metadata(None, Duration::from_secs(10))?
            .brokers()
            .len();
        let new = attune_origin::event_log::kafka::new_topics(&names, cluster);
        for r in admin.create_topics(&new, &AdminOptions::new()).await? {
            r.map_err(|(t, e)| anyhow::anyhow!("create {t}: {e}"))?;
        }
        let site = site(&site_key);
        let args = serve_args(&brokers, &redis_url, &prefix)?;
        let state = AppState::with_sites(&args, std::slice::from_ref(&site)).await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        tokio::spawn(attune_origin::serve(
            listener,
            state,
            std::future::pending(),
        ));
        Ok(Bench {
            brokers,
            redis_url,
            prefix,
            site_key,
            base,
            http: reqwest::Client::new(),
        })
    }

    /// Deletes the bench's topics once it has its numbers, so runs do not
    /// pile up topics on the stack.
    pub async fn delete_topics(&self) -> anyhow::Result<()> {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .create()?;
        let names: Vec<String> = all_topics()
            .map(|t| format!("{}{t}", self.prefix))
            .collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        admin.delete_topics(&names, &AdminOptions::new()).await?;
        Ok(())
    }

    /// A consumer process of the bench's group.
    pub fn consumer(&self) -> anyhow::Result<ConsumerProcess> {
        self.consumer_named(None)
    }

    /// A consumer process of the bench's group, with a stable instance name
    /// (`ATTUNE_CONSUMER_INSTANCE`) if given.
    pub fn consumer_named(&self, instance: Option<&str>) -> anyhow::Result<ConsumerProcess> {
        let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_attune-origin"));
        if let Some(instance) = instance {
            cmd.env("ATTUNE_CONSUMER_INSTANCE", instance);
        }
        Ok(cmd
            .arg("consume")
            .env("KAFKA_BROKERS", &self.brokers)
            .env("REDIS_URL", &self.redis_url)
            .env("ATTUNE_TOPIC_PREFIX", &self.prefix)
            .env("ATTUNE_CONSUMER_GROUP", format!("g-{}", self.prefix))
            .env(
                "ATTUNE_CONSUMER_LISTEN",
                format!("127.0.0.1:{metrics_port}"),
            )
            .env("RUST_LOG", "warn")
            .spawn()
            .map(ConsumerProcess)?)
    }

    /// Posts a MessagePack batch.
    pub async fn post(&self, body: Vec<u8>) -> reqwest::Result<reqwest::Response> {
        self.http
            .post(format!("{}/v1/events", self.base))
            .header("content-type", "application/msgpack")
            .body(body)
            .send()
            .await
    }

    /// GET `path` with the site's API key (`None` while unreachable).
    pub async fn get_json(&self, path: &str) -> Option<serde_json::Value> {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(API_KEY)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()
    }

    /// A user's profile from the API.
    pub async fn profile(&self, user: &str) -> Option<serde_json::Value> {
        self.get_json(&format!("/v1/profile?user={user}")).await
    }

    /// How many clicks `user`'s profile counts.
    pub async fn clicks(&self, user: &str) -> Option<u64> {
        self.profile(user).await?["counts"]["click"].as_u64()
    }
}

/// A consumer process, killed when dropped (also when the benchmark fails).
pub struct ConsumerProcess(Child);

impl ConsumerProcess {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// SIGKILL, and waits until it is gone.
    pub fn kill(&mut self) -> std::io::Result<()> {
        self.0.kill()?;
        self.0.wait().map(drop)
    }
}

impl Drop for ConsumerProcess {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// CPU seconds (user + system) process `pid` has used so far, from
/// `/proc/<pid>/stat` (0 once it is gone). Linux counts them in USER_HZ
/// ticks, 100 a second.
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // The command name (field 2) may hold spaces; the fields after it don't.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line.
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    match (ticks(11), ticks(12)) {
        (Some(user), Some(system)) => (user + system) / 100.0,
        _ => 0.0,
    }
}

/// The CPU seconds of several processes together.
pub fn cpu_seconds_of(pids: &[u32]) -> f64 {
    pids.iter().map(|p| cpu_seconds(*p)).sum()
}

/// A steady load: `batches_per_s` batches of `events` from 200 users until
/// stopped.
pub struct SteadyLoad {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl SteadyLoad {
    pub fn start(bench: Arc<Bench>, batches_per_s: u64, events: usize) -> SteadyLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let (stop2, sent2) = (stop.clone(), sent.clone());
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / batches_per_s));
            let mut i = 0u64;
            while !stop2.load(Ordering::Relaxed) {
                tick.tick().await;
                let body = batch(&bench.site_key, &format!("load-{}", i % 200), events);
                let (bench, sent) = (bench.clone(), sent2.clone());
                tokio::spawn(async move {
                    if bench.post(body).await.is_ok_and(|r| r.status() == 202) {
                        sent.fetch_add(events as u64, Ordering::Relaxed);
                    }
                });
                i += 1;
            }
        });
        SteadyLoad { stop, sent, task }
    }

    /// Stops it; returns the events acknowledged.
    pub async fn stop(self) -> anyhow::Result<u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await?;
        Ok(self.sent.load(Ordering::Relaxed))
    }
}
