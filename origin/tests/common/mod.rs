//! An origin started in-process on a loopback port, with real backends: Kafka
//! and Redis from `cargo xtask test` (KAFKA_BROKERS, REDIS_URL), or the embedded
//! store in a temporary directory.
#![allow(dead_code)] // broker_outage.rs uses part of this

pub mod kafka;
pub mod learning;

use std::path::PathBuf;
use std::time::Duration;

use attune_core::{Batch, Event, Interaction};
use attune_origin::config::{ServeArgs, SiteConfig};
use attune_origin::AppState;

pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: these tests need the real stack. Run `cargo xtask test`, \
             or `cargo xtask stack up` and export the variables in target/stack/env"
        )
    })
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

pub enum Backend {
    KafkaRedis,
    Embedded,
}

pub struct TestOrigin {
    pub base: String,
    pub site: SiteConfig,
    pub state: AppState,
    pub http: reqwest::Client,
    args: ServeArgs,
    _dir: tempfile::TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    /// The test's own topics, deleted with it.
    pub topics: Option<kafka::OwnedTopics>,
}

impl Drop for TestOrigin {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A fresh site per origin, so tests never see each other's data.
pub fn unique_site() -> SiteConfig {
    let id = uuid::Uuid::now_v7().simple().to_string();
    SiteConfig {
        site_key: format!("it-{}", &id[20..]),
        api_key: format!("sk-{id}"),
        token_secret: format!("ts-{id}"),
        retired_token_secrets: Vec::new(),
        allowed_origins: vec!["https://news.example".into()],
        weights: Default::default(),
        experiments: Default::default(),
        segment: Default::default(),
    }
}

pub fn args(backend: Backend, config: PathBuf, data_dir: PathBuf) -> ServeArgs {
    let (kafka_brokers, redis_url) = match backend {
        Backend::KafkaRedis => (Some(env("KAFKA_BROKERS")), Some(env("REDIS_URL"))),
        Backend::Embedded => (None, None),
    };
    ServeArgs {
        listen: "127.0.0.1:0".parse().unwrap(),
        config: Some(config),
        kafka_brokers,
        redis_url,
        data_dir,
        max_body_bytes: 64 * 1024,
        rate_per_key: 10_000,
        rate_per_ip: 10_000,
        header_timeout_ms: 10_000,
        body_timeout_ms: 30_000,
        audit_every_ms: 30_000,
        audit_settle_s: 180,
        max_connections: 10_000,
        store_timeout_ms: 100,
        edge_secret: None,
        produce_timeout_ms: 5000,
        kafka_linger_ms: 1,
        popularity_half_life_h: 24.0,
        topic_prefix: String::new(),
        affinity_half_life_h: 24.0,
        consumer_group: "attune-profiles".into(),
        validation_sample: 1.0,
        retrain_every_s: 0,
    }
}

/// Starts an origin; `tweak` adjusts the flags first.
pub async fn start(backend: Backend, tweak: impl FnOnce(&mut ServeArgs)) -> TestOrigin {
    start_with(backend, DEFAULT_SITE_TOML, tweak).await
}

/// A test site's settings besides its keys, unless a test gives its own.
pub const DEFAULT_SITE_TOML: &str = "allowed_origins = [\"https://news.example\"]\n";

/// Starts an origin whose site has `site_toml` besides its keys (its
/// `allowed_origins` and any other setting); `tweak` adjusts the flags.
pub async fn start_with(
    backend: Backend,
    site_toml: &str,
    tweak: impl FnOnce(&mut ServeArgs),
) -> TestOrigin {
    let dir = tempfile::tempdir().unwrap();
    let site = unique_site();
    let config = dir.path().join("attune.toml");
    std::fs::write(
        &config,
        format!(
            "[[sites]]\nsite_key = \"{}\"\napi_key = \"{}\"\ntoken_secret = \"{}\"\n{site_toml}",
            site.site_key, site.api_key, site.token_secret
        ),
    )
    .unwrap();
    let mut a = args(backend, config, dir.path().join("data"));
    tweak(&mut a);
    let state = AppState::from_args(&a).await.expect("origin starts");
    let (base, shutdown) = serve(state.clone()).await;
    TestOrigin {
        base,
        site,
        state,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
        args: a,
        _dir: dir,
        shutdown: Some(shutdown),
        topics: None,
    }
}

async fn serve(state: AppState) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        attune_origin::serve(listener, state, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    (base, tx)
}

impl TestOrigin {
    /// Stops this origin and starts another on the same data and config
    /// (embedded mode: the redb file is reopened once the old one is closed).
    pub async fn restart(mut self) -> TestOrigin {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let (site, http, args) = (self.site.clone(), self.http.clone(), self.args.clone());
        let _dir = std::mem::replace(&mut self._dir, tempfile::tempdir().unwrap());
        let topics = self.topics.take();
        drop(self);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let state = loop {
            match AppState::from_args(&args).await {
                Ok(state) => break state,
                Err(e) if std::time::Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("origin restarts: {e:#}"),
            }
        };
        let (base, shutdown) = serve(state.clone()).await;
        TestOrigin {
            base,
            site,
            state,
            http,
            args,
            _dir,
            shutdown: Some(shutdown),
            topics,
        }
    }

    /// A second origin on the same flags, sites file and backends, beside
    /// this one (as a second replica of a Deployment); it must not outlive
    /// this one, whose directory holds the sites file.
    pub async fn twin(&self) -> TestOrigin {
        let state = AppState::from_args(&self.args)
            .await
            .expect("twin origin starts");
        let (base, shutdown) = serve(state.clone()).await;
        TestOrigin {
            base,
            site: self.site.clone(),
            state,
            http: self.http.clone(),
            args: self.args.clone(),
            _dir: tempfile::tempdir().unwrap(),
            shutdown: Some(shutdown),
            topics: None,
        }
    }

    /// Stops the origin and hands back its directory (config and data).
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let dir = std::mem::replace(&mut self._dir, tempfile::tempdir().unwrap());
        drop(self);
        dir
    }

    /// The sites file this origin reads.
    pub fn sites_file(&self) -> &std::path::Path {
        self.args
            .config
            .as_deref()
            .expect("tests write a sites file")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn token(&self, user: &str) -> String {
        attune_origin::auth::mint_token(
            &self.site.site_key,
            user,
            self.site.token_secret.as_bytes(),
            attune_origin::clock::now_s() + 600,
        )
    }

    /// The origin's Prometheus exposition, as text.
    pub async fn metrics(&self) -> String {
        let r = self.http.get(self.url("/metrics")).send().await.unwrap();
        r.text().await.unwrap()
    }

    /// The value of the series `line` names (metric and labels, as
    /// rendered) on `/metrics`; 0 before it exists.
    pub async fn metric(&self, line: &str) -> f64 {
        self.metrics()
            .await
            .lines()
            .find_map(|l| l.strip_prefix(line)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    /// POSTs `body` as JSON to `path` with the site's API key.
    pub async fn post_as_site(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .bearer_auth(&self.site.api_key)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// GETs `path` with the site's API key and returns the JSON reply.
    pub async fn get_as_site(&self, path: &str) -> serde_json::Value {
        self.http
            .get(self.url(path))
            .bearer_auth(&self.site.api_key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Loads catalog items (`{"items": [...]}`) with the site's API key.
    pub async fn load_items(&self, body: serde_json::Value) {
        let r = self
            .http
            .post(self.url("/v1/items"))
            .bearer_auth(&self.site.api_key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }

    /// POSTs a batch as MessagePack.
    pub async fn post_batch(&self, batch: &Batch) -> reqwest::Response {
        self.http
            .post(self.url("/v1/events"))
            .header("content-type", "application/msgpack")
            .body(attune_core::codec::encode_msgpack(batch))
            .send()
            .await
            .unwrap()
    }
}

pub fn event(interaction: Interaction, item: Option<&str>, ts_ms: i64) -> Event {
    Event {
        id: uuid::Uuid::now_v7(),
        ts_ms,
        interaction,
        item: item.map(Into::into),
        context: None,
        slot: None,
    }
}

pub fn batch(site: &str, anon: &str, events: Vec<Event>) -> Batch {
    Batch {
        site_key: site.into(),
        anonymous_id: anon.into(),
        user_token: None,
        sent_at_ms: now_ms(),
        dropped: 0,
        events,
    }
}

/// Shared by both backends: catalog → recommendations, clicks lift an item
/// and its category, forget deletes and ignores later events.
pub async fn catalog_recommendations_and_forget(origin: &TestOrigin) {
    use serde_json::{json, Value};
    let api = &origin.site.api_key;
    let published = now_ms() - 3_600_000;
    let items: Vec<Value> = [("s1", "sports"), ("s2", "sports"), ("t1", "tech"), ("t2", "tech"), ("w1", "world")]
        .iter()
        .map(|(id, tag)| json!({"id": id, "tags": [tag], "published_at_ms": published, "metadata": {"title": format!("Article {id}")}}))
        .collect();
    let r = origin
        .http
        .post(origin.url("/v1/items"))
        .bearer_auth(api)
        .json(&json!({"items": items}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let r = origin
        .http
        .put(origin.url("/v1/items/t9"))
        .bearer_auth(api)
        .json(&json!({"id": "other"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "path and body ids must match");
    let catalog = origin.get_as_site("/v1/items").await;
    let ids: Vec<&str> = catalog["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["s1", "s2", "t1", "t2", "w1"], "{catalog}");
    assert_eq!(catalog["items"][2]["tags"], json!(["tech"]));
    let r = origin
        .http
        .get(origin.url("/v1/items"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        401,
        "the catalog is the site's: the API key reads it"
    );

    let carol = origin.token("carol");
    let clicks: Vec<_> = (0..3)
        .map(|_| event(Interaction::Click, Some("t1"), now_ms()))
        .collect();
    // Someone else's clicks: what carol consumed herself would be left out.
    let b = batch(&origin.site.site_key, "anon-dave", clicks);
    assert_eq!(origin.post_batch(&b).await.status(), 202);

    // The consumers credit popularity once they applied the clicks; poll for it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let recs = loop {
        let recs: Value = origin
            .http
            .get(origin.url("/v1/recommendations?k=3"))
            .bearer_auth(&carol)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if recs["items"][0]["item"] == "t1" || std::time::Instant::now() > deadline {
            break recs;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(recs["user"], "carol");
    assert_eq!(recs["items"].as_array().unwrap().len(), 3);
    assert_eq!(recs["items"][0]["item"], "t1", "{recs}");
    assert_eq!(
        recs["items"][1]["item"], "t2",
        "same category follows: {recs}"
    );
    assert_eq!(recs["items"][0]["tags"], json!(["tech"]));
    assert_eq!(recs["items"][0]["metadata"]["title"], "Article t1");

    let r = origin
        .http
        .put(origin.url("/v1/users/carol/attributes"))
        .bearer_auth(api)
        .json(&json!({"locale": "fr-FR"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let profile = origin.get_as_site("/v1/profile?user=carol").await;
    assert_eq!(profile["attributes"]["locale"], "fr-FR");
    let r = origin
        .http
        .delete(origin.url("/v1/users/carol"))
        .bearer_auth(&carol)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let profile = origin.get_as_site("/v1/profile?user=carol").await;
    assert_eq!(profile["attributes"], json!({}));
    let mut later = batch(
        &origin.site.site_key,
        "anon-carol",
        vec![event(Interaction::Click, Some("t2"), now_ms())],
    );
    later.user_token = Some(carol);
    let r = origin.post_batch(&later).await;
    assert_eq!(r.status(), 202);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        (body["accepted"].as_u64(), body["ignored"].as_u64()),
        (Some(0), Some(1))
    );
}

/// A site's popularity as it must be: each distinct event's feedback weight
/// at its time, once, decayed with the test origins' half-life.
#[derive(Default)]
pub struct Popularity(std::collections::BTreeMap<String, attune_core::DecayedScore>);

impl Popularity {
    fn half_life() -> attune_core::HalfLife {
        attune_core::HalfLife::from_hours(24.0).unwrap()
    }

    /// Counts a batch's events (call once per distinct batch).
    pub fn add(&mut self, b: &Batch) {
        let weights = attune_core::FeedbackWeights::default();
        for e in &b.events {
            let w = weights.event_weight(e);
            if let (Some(item), true) = (&e.item, w != 0.0) {
                let score = self.0.entry(item.clone()).or_default();
                let point = attune_core::DecayedScore::point(w, e.ts_ms);
                *score = score.merge(point, Self::half_life());
            }
        }
    }

    /// The site's popularity as the origin reads it equals this, item for
    /// item (an event credited twice, or never, would not).
    pub async fn check(&self, origin: &TestOrigin) {
        let stored = origin
            .state
            .store
            .popularity(&origin.site.site_key)
            .await
            .unwrap();
        let now = now_ms();
        let value = |s: &attune_core::DecayedScore| s.value_at(now, Self::half_life());
        let mut items: Vec<&String> = stored.keys().collect();
        items.sort();
        assert_eq!(
            items,
            self.0.keys().collect::<Vec<_>>(),
            "items with popularity"
        );
        // Events count at their server-clock time, which differs from the
        // client's by the clock skew (ms here): ~1e-8 of decay per ms.
        for (item, want) in &self.0 {
            let (got, want) = (value(&stored[item]), value(want));
            assert!(
                (got - want).abs() <= 1e-6 * want.abs().max(1.0),
                "{item}: popularity {got}, want {want}"
            );
        }
    }
}

/// A server of the shared stack stopped (SIGSTOP, as in a network partition
/// or a long GC pause) until this is dropped (SIGCONT), also when an
/// assertion fails. Only for tests alone in their binary: cargo runs test
/// binaries one at a time, so no other test sees the paused server.
pub struct Paused(String);

impl Paused {
    /// Pauses the process whose pid is in the file `pid_file_var` names.
    pub fn pause(pid_file_var: &str) -> Self {
        let pid_file = env(pid_file_var);
        let pid = std::fs::read_to_string(&pid_file)
            .unwrap_or_else(|e| panic!("read {pid_file}: {e}"))
            .trim()
            .to_owned();
        let stopped = std::process::Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap();
        assert!(stopped.success(), "kill -STOP {pid}");
        Paused(pid)
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-CONT", &self.0])
            .status();
    }
}

/// origin/tests/sdk: the third-party clients the tests run (npm-installed
/// by `cargo xtask test`) and the scripts that drive them.
pub fn sdk_dir() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk");
    assert!(
        dir.join("node_modules").exists(),
        "run `cargo xtask test` (it runs npm ci in origin/tests/sdk)"
    );
    dir
}

/// Runs a client process to its end off the runtime's thread (the origin
/// under test serves from that thread meanwhile); its output, once it has
/// succeeded (else the test fails with its stderr).
pub async fn run_client(mut cmd: std::process::Command) -> std::process::Output {
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{:?} failed: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The Python with the tests' requirements (origin/proto/contract/requirements.txt):
/// `ATTUNE_PYTHON`, or the virtualenv `cargo xtask test` makes.
pub fn python() -> std::path::PathBuf {
    let path = std::env::var_os("ATTUNE_PYTHON").map_or_else(
        || std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/python/bin/python"),
        std::path::PathBuf::from,
    );
    assert!(
        path.exists(),
        "no Python at {}: run `cargo xtask test` (it installs origin/proto/contract/requirements.txt \
         into target/python) or set ATTUNE_PYTHON",
        path.display()
    );
    path
}

/// The top items each reader is recommended now.
pub async fn top_items(
    origin: &TestOrigin,
    users: &[String],
) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut out = std::collections::BTreeMap::new();
    for u in users {
        let r = origin
            .get_as_site(&format!("/v1/recommendations?user={u}&k=10"))
            .await;
        let items = r["items"]
            .as_array()
            .unwrap_or_else(|| panic!("{r}"))
            .iter()
            .map(|i| i["item"].as_str().unwrap().to_owned())
            .collect();
        out.insert(u.clone(), items);
    }
    out
}
