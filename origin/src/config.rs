//! Command-line flags, environment variables and the optional config file.
//!
//! Every flag has an env var (`--kafka-brokers` / `KAFKA_BROKERS`, …). Sites
//! (keys, token secrets, CORS origins) come from the TOML file given with
//! `--config` / `ATTUNE_CONFIG`; without one the origin serves a built-in
//! `demo` site with development secrets and says so at start-up.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use attune_core::FeedbackWeights;
use clap::{Args, Parser, Subcommand};
use std::collections::BTreeMap;

use serde::Deserialize;

use crate::experiments::definition::ExperimentSpec;

/// Attune's origin service.
#[derive(Debug, Parser)]
#[command(name = "attune-origin", version, about)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The origin's processes.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API.
    Serve(Box<ServeArgs>),
    /// Mint a signed user token, as a site's back end would.
    MintToken(MintTokenArgs),
    /// Consume the interaction topics into Redis profiles, exactly once
    /// (scale out by starting more processes with the same group).
    Consume(ConsumeArgs),
    /// Reconcile the tiers per minute, site and kind: what ingest
    /// acknowledged, what Kafka holds, what the consumers applied. Exits 1
    /// when it finds a gap.
    Audit(AuditArgs),
    /// Simulated readers with known tastes reading a running origin's
    /// rails: traffic for the demo and for trying a site's setup.
    Simulate(SimulateArgs),
    /// Fit a challenger model from the retained Kafka log, compare it with
    /// the serving version on a time-ordered holdout, and promote it only
    /// when it is better beyond chance.
    Retrain(RetrainArgs),
    /// List the model versions, or move the serving pointer.
    Model(ModelArgs),
}

/// Flags of `attune-origin retrain`.
#[derive(Debug, Clone, Args)]
pub struct RetrainArgs {
    /// Kafka bootstrap servers.
    #[arg(long, env = "KAFKA_BROKERS")]
    pub kafka_brokers: String,
    /// Redis URL: one node (redis://host:6379), or a Redis Cluster's seed nodes, comma-separated.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: String,
    /// Prefix of the interaction topics.
    #[arg(long, env = "ATTUNE_TOPIC_PREFIX", default_value = "")]
    pub topic_prefix: String,
    /// The sites file, for each site's feedback weights (as the consumers read it).
    #[arg(long, env = "ATTUNE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Regularization values to try.
    #[arg(long, value_delimiter = ',', default_value = RETRAIN_REGULARIZATION)]
    pub regularization: Vec<f32>,
    /// Passes over the training events to try.
    #[arg(long, value_delimiter = ',', default_value = RETRAIN_EPOCHS)]
    pub epochs: Vec<u32>,
    /// SGD step sizes to try.
    #[arg(long, value_delimiter = ',', default_value = RETRAIN_LEARNING_RATE)]
    pub learning_rate: Vec<f32>,
    /// How much better (HR@10, absolute) the challenger's 95 % interval
    /// must lie above the champion's for promotion.
    #[arg(long, default_value_t = 0.0)]
    pub margin: f64,
    /// Register the challenger without promoting it, whatever the comparison says.
    #[arg(long)]
    pub no_promote: bool,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The retrain's default grid: regularization values.
pub const RETRAIN_REGULARIZATION: &str = "0.001,0.01,0.03,0.1";
/// Epochs.
pub const RETRAIN_EPOCHS: &str = "1,3,10";
/// Step sizes.
pub const RETRAIN_LEARNING_RATE: &str = "0.05";

/// A comma-separated list's values that parse.
fn list<T: std::str::FromStr>(s: &str) -> Vec<T> {
    s.split(',').filter_map(|v| v.parse().ok()).collect()
}

impl RetrainArgs {
    /// The default grid, promoting, with no deployment named yet.
    pub fn defaults() -> Self {
        RetrainArgs {
            kafka_brokers: String::new(),
            redis_url: String::new(),
            topic_prefix: String::new(),
            config: None,
            regularization: list(RETRAIN_REGULARIZATION),
            epochs: list(RETRAIN_EPOCHS),
            learning_rate: list(RETRAIN_LEARNING_RATE),
            margin: 0.0,
            no_promote: false,
            json: false,
        }
    }

    /// A retrain of the consumers' deployment with the default grid, as
    /// their schedule runs it.
    pub fn of(consume: &ConsumeArgs) -> Self {
        RetrainArgs {
            kafka_brokers: consume.kafka_brokers.clone(),
            redis_url: consume.redis_url.clone(),
            topic_prefix: consume.topic_prefix.clone(),
            config: consume.config.clone(),
            ..RetrainArgs::defaults()
        }
    }
}

/// Flags of `attune-origin model`.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// Redis URL: one node (redis://host:6379), or a Redis Cluster's seed nodes, comma-separated.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: String,
    /// Prefix of the interaction topics: the deployment whose versions these are.
    #[arg(long, env = "ATTUNE_TOPIC_PREFIX", default_value = "")]
    pub topic_prefix: String,
    /// What to do.
    #[command(subcommand)]
    pub action: ModelAction,
}

/// `attune-origin model` actions.
#[derive(Debug, Clone, Subcommand)]
pub enum ModelAction {
    /// The versions, their recipes and comparisons, and which one serves.
    List {
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Serve a version (the consumers catch it up from where it stopped).
    Promote {
        /// The version.
        version: u32,
    },
    /// Serve the version that served before the current one.
    Rollback,
}

/// Flags of `attune-origin simulate`.
#[derive(Debug, Clone, Args)]
pub struct SimulateArgs {
    /// The origin's base URL.
    #[arg(
        long,
        env = "ATTUNE_SIMULATE_ORIGIN",
        default_value = "http://127.0.0.1:8080"
    )]
    pub origin: String,
    /// The site's public key (its events are sent with it).
    #[arg(long, env = "ATTUNE_SITE_KEY", default_value = "demo")]
    pub site_key: String,
    /// The site's API key (reads the catalog and the readers' rails).
    #[arg(long, env = "ATTUNE_API_KEY", default_value = "demo-secret-api-key")]
    pub api_key: String,
    /// Simulated readers.
    #[arg(long, default_value_t = 50)]
    pub readers: usize,
    /// Visits per second, over all readers.
    #[arg(long, default_value_t = 5.0)]
    pub visits_per_second: f64,
    /// Seed of the readers' tastes and choices.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Stop after this many visits (0: until stopped).
    #[arg(long, default_value_t = 0)]
    pub visits: u64,
}

/// Flags of `attune-origin audit`.
#[derive(Debug, Clone, Args)]
pub struct AuditArgs {
    /// Kafka bootstrap servers.
    #[arg(long, env = "KAFKA_BROKERS")]
    pub kafka_brokers: String,
    /// Redis URL: one node (redis://host:6379), or a Redis Cluster's seed nodes, comma-separated.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: String,
    /// Prefix of the interaction topics.
    #[arg(long, env = "ATTUNE_TOPIC_PREFIX", default_value = "")]
    pub topic_prefix: String,
    /// The sites file whose sites are audited (default: the built-in `demo` site).
    #[arg(long, env = "ATTUNE_CONFIG")]
    pub config: Option<PathBuf>,
    /// How many whole minutes to audit.
    #[arg(long, default_value_t = 60)]
    pub minutes: i64,
    /// Audit the minutes up to the one this long ago (younger events may
    /// still be on their way to the consumers).
    #[arg(long, default_value_t = 180)]
    pub settle_s: i64,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Flags of `attune-origin consume`.
#[derive(Debug, Clone, Args)]
pub struct ConsumeArgs {
    /// Kafka bootstrap servers.
    #[arg(long, env = "KAFKA_BROKERS")]
    pub kafka_brokers: String,
    /// Redis URL: one node (redis://host:6379), or a Redis Cluster's seed nodes, comma-separated.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: String,
    /// Consumer group; processes of one group share the partitions.
    #[arg(long, env = "ATTUNE_CONSUMER_GROUP", default_value = "attune-profiles")]
    pub group: String,
    /// The sites file, for each site's feedback weights (the origin's own;
    /// without it every site gets the defaults).
    #[arg(long, env = "ATTUNE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Prefix of the interaction topics.
    #[arg(long, env = "ATTUNE_TOPIC_PREFIX", default_value = "")]
    pub topic_prefix: String,
    /// Most events applied per transaction.
    #[arg(long, env = "ATTUNE_CONSUMER_BATCH", default_value_t = 500)]
    pub batch: usize,
    /// Half-life of profile affinities, in hours.
    #[arg(long, env = "ATTUNE_AFFINITY_HALF_LIFE_H", default_value_t = 24.0)]
    pub affinity_half_life_h: f64,
    /// Half-life of item popularity, in hours (as `serve` reads it).
    #[arg(long, env = "ATTUNE_POPULARITY_HALF_LIFE_H", default_value_t = 24.0)]
    pub popularity_half_life_h: f64,
    /// Where to serve /metrics and /healthz.
    #[arg(long, env = "ATTUNE_CONSUMER_LISTEN", default_value = "127.0.0.1:9464")]
    pub listen: SocketAddr,
    /// How long a dead consumer's open transaction holds its partitions
    /// before the broker aborts it (a round must finish within it). Brokers
    /// check on `transaction.abort.timed.out.transaction.cleanup.interval.ms`:
    /// set that to 1000 (default 10,000) for failover within seconds.
    #[arg(long, env = "ATTUNE_CONSUMER_TX_TIMEOUT_MS", default_value_t = 5000)]
    pub transaction_timeout_ms: u64,
    /// A stable name for this consumer process, unique among the group's
    /// live members (a StatefulSet pod's name, a systemd instance). A
    /// restart under the same name fences the previous incarnation, aborts
    /// its open transaction at once and takes its partitions back without a
    /// rebalance. Without it, a restarted process is a new member and a dead
    /// one's partitions wait for its session and transaction timeouts.
    #[arg(long, env = "ATTUNE_CONSUMER_INSTANCE")]
    pub instance: Option<String>,
    /// Share of engagements on which the online model is validated live
    /// before it learns them (HR@10 / NDCG@10 on /metrics and the dashboard);
    /// each costs one pass over the site's item factors. 0 turns it off.
    #[arg(long, env = "ATTUNE_VALIDATION_SAMPLE", default_value_t = 0.25, value_parser = share)]
    pub validation_sample: f64,
    /// Retrain the model (as `attune-origin retrain`) this often, in
    /// seconds, and sooner — after a quarter of it — while live validation
    /// says degraded; one consumer of the deployment at a time. 0: never.
    #[arg(long, env = "ATTUNE_RETRAIN_EVERY_S", default_value_t = 0)]
    pub retrain_every_s: u64,
}

/// Flags of `attune-origin serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "ATTUNE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// TOML file with the sites (keys, token secrets, CORS origins).
    #[arg(long, env = "ATTUNE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Kafka bootstrap servers. With REDIS_URL, selects the production backends;
    /// without both, the origin runs embedded (queue and store under --data-dir).
    #[arg(long, env = "KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,
    /// Redis URL: one node (redis://127.0.0.1:16379), or a Redis Cluster's seed nodes,
    /// comma-separated (redis://10.0.0.1:7000,redis://10.0.0.2:7000).
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,
    /// Where the embedded mode keeps its data.
    #[arg(long, env = "ATTUNE_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Largest request body, after gzip decompression.
    #[arg(long, env = "ATTUNE_MAX_BODY_BYTES", default_value_t = 256 * 1024)]
    pub max_body_bytes: usize,
    /// Requests per second allowed per key (site key, API key or user).
    #[arg(long, env = "ATTUNE_RATE_PER_KEY", default_value_t = 1000)]
    pub rate_per_key: u32,
    /// Requests per second allowed per client IP.
    #[arg(long, env = "ATTUNE_RATE_PER_IP", default_value_t = 200)]
    pub rate_per_ip: u32,
    /// How long a client may take to send a request's headers (also how long
    /// a silent or idle keep-alive connection stays open).
    #[arg(long, env = "ATTUNE_HEADER_TIMEOUT_MS", default_value_t = 10_000)]
    pub header_timeout_ms: u64,
    /// How long a client may take to send a request's body.
    #[arg(long, env = "ATTUNE_BODY_TIMEOUT_MS", default_value_t = 30_000)]
    pub body_timeout_ms: u64,
    /// Most connections open at once; more wait in the listen backlog.
    #[arg(long, env = "ATTUNE_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    /// The secret the site's edge sends in `X-Attune-Edge` (its
    /// ORIGIN_EDGE_SECRET binding): from it, the client address in
    /// `X-Forwarded-For` counts for the per-IP limit; from anyone else that
    /// header is ignored. Unset: no edge is trusted.
    #[arg(long, env = "ATTUNE_EDGE_SECRET")]
    pub edge_secret: Option<String>,
    /// How often the continuous audit compares ingest with the consumers
    /// (`attune_audit_gap_events`; Kafka only).
    #[arg(long, env = "ATTUNE_AUDIT_EVERY_MS", default_value_t = 30_000)]
    pub audit_every_ms: u64,
    /// The continuous audit covers the minutes up to the one this long ago
    /// (younger events may still be on their way to the consumers).
    #[arg(long, env = "ATTUNE_AUDIT_SETTLE_S", default_value_t = 180)]
    pub audit_settle_s: i64,
    /// How long ingest waits for the store (forgotten users, stated
    /// attributes) before it appends without them; Kafka keeps taking events
    /// while the store is slow or down.
    #[arg(long, env = "ATTUNE_STORE_TIMEOUT_MS", default_value_t = 100)]
    pub store_timeout_ms: u64,
    /// How long ingest waits for Kafka to acknowledge a batch before answering 503.
    #[arg(long, env = "ATTUNE_PRODUCE_TIMEOUT_MS", default_value_t = 5000)]
    pub produce_timeout_ms: u64,
    /// How long the Kafka producer waits to fill a batch (librdkafka `linger.ms`):
    /// higher means fewer, larger produce requests and less broker CPU per event.
    #[arg(long, env = "ATTUNE_KAFKA_LINGER_MS", default_value_t = 1)]
    pub kafka_linger_ms: u64,
    /// Half-life of item popularity, in hours (as the consumers credit it).
    #[arg(long, env = "ATTUNE_POPULARITY_HALF_LIFE_H", default_value_t = 24.0)]
    pub popularity_half_life_h: f64,
    /// Prefix of the interaction topics (several deployments on one cluster).
    #[arg(long, env = "ATTUNE_TOPIC_PREFIX", default_value = "")]
    pub topic_prefix: String,
    /// Half-life of profile affinities, in hours (as `consume` writes them).
    #[arg(long, env = "ATTUNE_AFFINITY_HALF_LIFE_H", default_value_t = 24.0)]
    pub affinity_half_life_h: f64,
    /// The consumers' group, whose lag this origin measures and reports.
    #[arg(long, env = "ATTUNE_CONSUMER_GROUP", default_value = "attune-profiles")]
    pub consumer_group: String,
    /// Share of engagements (embedded mode) on which the online model is validated live
    /// before it learns them (HR@10 / NDCG@10 on /metrics and the dashboard);
    /// each costs one pass over the site's item factors. 0 turns it off.
    #[arg(long, env = "ATTUNE_VALIDATION_SAMPLE", default_value_t = 0.25, value_parser = share)]
    pub validation_sample: f64,
    /// Embedded mode: retrain the model this often, in seconds (sooner while
    /// live validation says degraded). 0: never. With Kafka + Redis the
    /// consumers' flag of the same name schedules it.
    #[arg(long, env = "ATTUNE_RETRAIN_EVERY_S", default_value_t = 0)]
    pub retrain_every_s: u64,
}

/// A share: a number from 0 to 1.
fn share(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if (0.0..=1.0).contains(&x) => Ok(x),
        _ => Err(format!(
            "{s:?} is not a share from 0 to 1 (0.25 validates a quarter)"
        )),
    }
}

/// Which backends to use.
#[derive(Debug, Clone)]
pub enum Backends {
    /// Kafka for the event log, Redis for the store.
    KafkaRedis {
        /// Bootstrap servers.
        brokers: String,
        /// Redis URL.
        redis_url: String,
    },
    /// In-process queue and an embedded store in this directory.
    Embedded {
        /// Data directory.
        dir: PathBuf,
    },
}

impl ServeArgs {
    /// Both Kafka and Redis, or neither (embedded).
    pub fn backends(&self) -> Result<Backends> {
        match (&self.kafka_brokers, &self.redis_url) {
            (Some(brokers), Some(redis_url)) => Ok(Backends::KafkaRedis {
                brokers: brokers.clone(),
                redis_url: redis_url.clone(),
            }),
            (None, None) => Ok(Backends::Embedded {
                dir: self.data_dir.clone(),
            }),
            _ => bail!(
                "set both KAFKA_BROKERS and REDIS_URL (production) or neither (embedded mode)"
            ),
        }
    }

    /// The sites from `--config`, or the built-in demo site.
    pub fn sites(&self) -> Result<Vec<SiteConfig>> {
        if self.config.is_none() {
            tracing::warn!(
                "no --config: serving the built-in `demo` site with development secrets; \
                 do not expose this origin"
            );
        }
        load_sites(self.config.as_deref())
    }
}

/// The sites of a sites file, or without one the built-in demo site.
pub fn load_sites(config: Option<&std::path::Path>) -> Result<Vec<SiteConfig>> {
    match config {
        None => Ok(vec![SiteConfig::demo()]),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config file {}", path.display()))?;
            let file: ConfigFile = toml::from_str(&text)
                .with_context(|| format!("invalid config file {}", path.display()))?;
            if file.sites.is_empty() {
                bail!("{} lists no [[sites]]", path.display());
            }
            for site in &file.sites {
                for (key, spec) in &site.experiments {
                    if let Err(e) =
                        crate::experiments::definition::Experiment::define(key, spec, None, 0)
                    {
                        bail!(
                            "{}: site `{}`'s experiment `{key}`: {}: {}",
                            path.display(),
                            site.site_key,
                            e.field,
                            e.message
                        );
                    }
                }
                site.weights.validate().with_context(|| {
                    format!(
                        "{}: site `{}`'s [sites.weights]",
                        path.display(),
                        site.site_key
                    )
                })?;
            }
            Ok(file.sites)
        }
    }
}

/// The config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// One entry per site.
    #[serde(default)]
    pub sites: Vec<SiteConfig>,
}

/// One site: its public key, its secrets and where its pages live.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    /// Public, write-only key the tracker sends.
    pub site_key: String,
    /// Secret key for server-to-server calls (catalog, any user's data).
    pub api_key: String,
    /// HMAC secret for the site's user tokens (new tokens are signed with it).
    pub token_secret: String,
    /// Earlier token secrets whose tokens still verify, during a rotation:
    /// remove one to revoke every token signed with it.
    #[serde(default)]
    pub retired_token_secrets: Vec<String>,
    /// Origins allowed to call from browsers (`*` allows any).
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// How much each interaction says about interest (`[sites.weights]`,
    /// any of attune-core's `FeedbackWeights` fields; the rest default).
    #[serde(default)]
    pub weights: FeedbackWeights,
    /// Experiments by key (`[sites.experiments.<key>]`, the body of
    /// `PUT /v1/experiments/{key}`), defined at start: the file wins over
    /// changes made through the API to the same key.
    #[serde(default)]
    pub experiments: BTreeMap<String, ExperimentSpec>,
    /// How the site's Segment messages map (`[sites.segment]`): its own
    /// `track` names per interaction, besides Segment's semantic ones, and
    /// its pages' `item_path` (docs/segment.md).
    #[serde(default)]
    pub segment: SegmentMapping,
}

/// How a site's Segment messages map to interactions: its own `track`
/// event names per interaction (matched without regard to case), and where
/// its pages' paths name the item.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentMapping {
    /// A page's path with `{item}` where the item id stands, such as
    /// `/articles/{item}`: the item of a `page` that names none in its
    /// properties.
    #[serde(default)]
    pub item_path: Option<ItemPath>,
    /// Clicks on the item.
    #[serde(default)]
    pub click: Vec<String>,
    /// Views of the item (page views).
    #[serde(default)]
    pub view: Vec<String>,
    /// Impressions of the item.
    #[serde(default)]
    pub impression: Vec<String>,
    /// Reading time (`properties.visible_ms`).
    #[serde(default)]
    pub dwell: Vec<String>,
    /// Scroll depth (`properties.depth_pct`).
    #[serde(default)]
    pub scroll: Vec<String>,
}

/// A path pattern with one `{item}`: what comes before and after it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct ItemPath {
    prefix: String,
    suffix: String,
}

impl TryFrom<String> for ItemPath {
    type Error = String;

    fn try_from(pattern: String) -> Result<Self, String> {
        match pattern.split_once("{item}") {
            Some((prefix, suffix)) if !suffix.contains("{item}") && prefix.starts_with('/') => {
                Ok(ItemPath {
                    prefix: prefix.to_owned(),
                    suffix: suffix.to_owned(),
                })
            }
            _ => Err(format!(
                "item_path {pattern:?} must start with `/` and hold `{{item}}` once, \
                 as in \"/articles/{{item}}\""
            )),
        }
    }
}

impl ItemPath {
    /// The item id `path` names, if it matches: one non-empty path segment.
    pub fn item(&self, path: &str) -> Option<String> {
        let id = path
            .strip_prefix(&self.prefix)?
            .strip_suffix(&self.suffix)?;
        (!id.is_empty() && !id.contains('/')).then(|| id.to_owned())
    }
}

impl SiteConfig {
    /// The development site `cargo xtask demo` uses.
    pub fn demo() -> Self {
        SiteConfig {
            site_key: "demo".into(),
            api_key: "demo-secret-api-key".into(),
            token_secret: "demo-token-secret".into(),
            retired_token_secrets: Vec::new(),
            allowed_origins: vec!["*".into()],
            weights: FeedbackWeights::default(),
            experiments: BTreeMap::new(),
            segment: SegmentMapping::default(),
        }
    }
}

/// Flags of `attune-origin mint-token`.
#[derive(Debug, Args)]
pub struct MintTokenArgs {
    /// Site key.
    #[arg(long)]
    pub site: String,
    /// User id.
    #[arg(long)]
    pub user: String,
    /// The site's token secret.
    #[arg(long, env = "ATTUNE_TOKEN_SECRET")]
    pub secret: String,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    pub ttl_s: u64,
}

/// Each site's feedback weights; sites not configured get the defaults.
#[derive(Debug, Clone, Default)]
pub struct SiteWeights {
    by_site: std::collections::HashMap<String, FeedbackWeights>,
    default: FeedbackWeights,
}

impl SiteWeights {
    /// The weights of `sites`.
    pub fn of_sites(sites: &[SiteConfig]) -> Self {
        SiteWeights {
            by_site: sites
                .iter()
                .map(|s| (s.site_key.clone(), s.weights.clone()))
                .collect(),
            default: FeedbackWeights::default(),
        }
    }

    /// The same weights for every site.
    pub fn uniform(weights: FeedbackWeights) -> Self {
        SiteWeights {
            by_site: Default::default(),
            default: weights,
        }
    }

    /// The weights of `site`.
    pub fn of(&self, site: &str) -> &FeedbackWeights {
        self.by_site.get(site).unwrap_or(&self.default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(weights: &str) -> Result<Vec<SiteConfig>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("attune.toml");
        std::fs::write(
            &path,
            format!(
                "[[sites]]\nsite_key = \"s\"\napi_key = \"k\"\ntoken_secret = \"t\"\n{weights}"
            ),
        )?;
        load_sites(Some(&path))
    }

    #[test]
    fn a_sites_weights_override_the_defaults_and_bad_ones_are_refused() {
        let sites = load("[sites.weights]\nclick = 5.0\n").unwrap();
        let weights = SiteWeights::of_sites(&sites);
        assert_eq!(weights.of("s").click, 5.0);
        assert_eq!(
            weights.of("s").dwell_long,
            FeedbackWeights::default().dwell_long
        );
        assert_eq!(weights.of("other"), &FeedbackWeights::default());

        let nan = load("[sites.weights]\nclick = nan\n").unwrap_err();
        assert!(
            format!("{nan:#}").contains("site `s`'s [sites.weights]"),
            "{nan:#}"
        );
        let typo = load("[sites.weights]\nclik = 5.0\n").unwrap_err();
        assert!(format!("{typo:#}").contains("clik"), "{typo:#}");
    }

    #[test]
    fn a_sites_segment_names_are_read_and_typos_refused() {
        let sites = load("[sites.segment]\nclick = [\"Article Opened\"]\n").unwrap();
        assert_eq!(sites[0].segment.click, ["Article Opened"]);
        assert!(sites[0].segment.view.is_empty());
        let typo = load("[sites.segment]\nclicks = [\"x\"]\n").unwrap_err();
        assert!(format!("{typo:#}").contains("clicks"), "{typo:#}");
    }
}
