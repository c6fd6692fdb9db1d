//! # attune-origin
//!
//! The origin service: `POST /v1/events` validates tracker batches with
//! attune-core, enriches them and appends them to the event log (Kafka, or the
//! embedded log), answering 202 only once they are durable; the REST API serves
//! recommendations, profiles, the catalog and user deletion.
//!
//! - [`config`]: flags, env vars, config file, which backends.
//! - [`auth`]: site keys, API keys, signed user tokens; the [`auth::Caller`] extractor.
//! - [`ingest`]: `POST /v1/events`. [`api`]: the read and admin endpoints.
//! - [`event_log`] and [`store`]: the two backend traits, each with a Kafka/Redis
//!   and an embedded implementation.
//! - [`ratelimit`], [`metrics`]: tower middleware. [`openapi`]: `/openapi.json`.

pub mod api;
pub mod arms;
pub mod audit;
pub mod auth;
pub mod clock;
pub mod config;
pub mod consume;
pub mod dashboard;
pub mod encoding;
pub mod error;
pub mod event_log;
pub mod experiments;
pub mod health;
pub mod ingest;
pub mod ledger;
pub mod metrics;
pub mod model;
pub mod openapi;
pub mod ranking;
pub mod ratelimit;
pub mod record;
pub mod segment;
pub mod segments;
pub mod server;
pub mod simulate;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use attune_core::{HalfLife, Limits};
use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderName, HeaderValue, Method};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{delete, get, post, put};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::decompression::RequestDecompressionLayer;
use tower_http::timeout::RequestBodyTimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::auth::Sites;
use crate::config::{Backends, ServeArgs};
use crate::event_log::EventLog;
use crate::ratelimit::RateLimits;
use crate::store::Store;

/// The text of the User-Agents remembered parsed (a few thousand browsers).
const USER_AGENT_CACHE_BYTES: u64 = 4 << 20;

/// Everything a handler needs, built once at start-up. axum clones the state
/// for every layer and handler of every request, so it is one shared
/// reference: a clone is one count, not one per part (the counts of a dozen
/// parts bounced between the cores on each request).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The parts of [`AppState`].
pub struct Shared {
    /// Configured sites.
    pub sites: Arc<Sites>,
    /// The event log.
    pub log: Arc<dyn EventLog>,
    /// Profiles, catalog, popularity and the model, behind [`store::cached::CachedStore`].
    pub store: Arc<dyn Store>,
    /// Requests per API key, user and IP.
    pub rate_limits: Arc<RateLimits>,
    /// The trusted edge's secret ([`ratelimit::forwarded_client`]).
    pub edge_secret: Option<Vec<u8>>,
    /// Ingest's bounded lookup of a sender in the store.
    pub context_lookup: ingest::context::ContextLookup,
    /// What a batch may hold (events, sizes), checked while decoding.
    pub batch_limits: Limits,
    /// Half-life of item popularity.
    pub popularity_half_life: HalfLife,
    /// Half-life of profile affinities (as the consumers write them).
    pub affinity_half_life: HalfLife,
    /// Parsed User-Agents.
    pub user_agents: ingest::enrich::UserAgents,
    /// What this process accepted, for the dashboard.
    pub activity: dashboard::activity::Activity,
    /// Prometheus.
    pub metrics: PrometheusHandle,
    /// Largest body after decompression.
    pub max_body_bytes: usize,
    /// Each site's ranking inputs, shared by its requests for a second.
    pub snapshots: ranking::snapshots::Snapshots,
    /// Header deadline and connection cap of the server loop.
    pub connection_limits: server::ConnectionLimits,
    /// How long a request's body may take to arrive.
    pub body_timeout: Duration,
    /// The consumer group's lag, measured here (Kafka only).
    pub consumer_lag: Option<event_log::lag::LagProbe>,
    /// Ingest's reconciliation counts, on their way to the store.
    pub ledger: Arc<ingest::ledger::IngestLedger>,
    /// Experiment definitions and exposures ([`arms`]).
    pub arms: arms::Arms,
    /// Retrains the model for `POST /v1/models/retrain`.
    pub retrainer: api::models::Retrainer,
}

impl AppState {
    /// Connects the backends the flags select, for the sites of `--config`.
    pub async fn from_args(args: &ServeArgs) -> anyhow::Result<Self> {
        Self::with_sites(args, &args.sites()?).await
    }

    /// Connects the backends the flags select, for the given sites.
    pub async fn with_sites(
        args: &ServeArgs,
        sites: &[config::SiteConfig],
    ) -> anyhow::Result<Self> {
        let sites_config = sites;
        let site_keys: Vec<String> = sites.iter().map(|s| s.site_key.clone()).collect();
        let weights = config::SiteWeights::of_sites(sites);
        if args.edge_secret.as_ref().is_some_and(|s| s.len() < 16) {
            anyhow::bail!(
                "ATTUNE_EDGE_SECRET must be at least 16 characters (the edge's ORIGIN_EDGE_SECRET)"
            );
        }
        let sites = Sites::new(sites)?;
        let mut consumer_lag = None;
        let mut exposures = arms::ExposureSink::Store;
        let mut retrainer = api::models::Retrainer::Kafka(config::RetrainArgs {
            kafka_brokers: args.kafka_brokers.clone().unwrap_or_default(),
            redis_url: args.redis_url.clone().unwrap_or_default(),
            topic_prefix: args.topic_prefix.clone(),
            config: args.config.clone(),
            ..config::RetrainArgs::defaults()
        });
        let (log, store): (Arc<dyn EventLog>, Arc<dyn Store>) = match args.backends()? {
            Backends::KafkaRedis { brokers, redis_url } => {
                let topics = attune_core::routing::topics()
                    .map(|t| format!("{}{t}", args.topic_prefix))
                    .collect();
                consumer_lag = Some(
                    event_log::lag::LagProbe::spawn(&brokers, &args.consumer_group, topics)
                        .context("start measuring the consumer lag")?,
                );
                let log = event_log::kafka::KafkaLog::new(
                    &brokers,
                    Duration::from_millis(args.kafka_linger_ms),
                    Duration::from_millis(args.produce_timeout_ms),
                    &args.topic_prefix,
                )?;
                let store = store::redis::RedisStore::connect(&redis_url)
                    .await
                    .with_context(|| format!("cannot reach Redis at {redis_url}"))?
                    .with_topic_prefix(&args.topic_prefix);
                audit::spawn_continuous(
                    Arc::new(store.clone()),
                    site_keys,
                    Duration::from_millis(args.audit_every_ms.max(100)),
                    Duration::from_secs(args.audit_settle_s.max(0) as u64),
                );
                exposures = arms::ExposureSink::Log;
                tracing::info!(%brokers, %redis_url, "backends: Kafka + Redis");
                (Arc::new(log), Arc::new(store))
            }
            Backends::Embedded { dir } => {
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("cannot create the data dir {}", dir.display()))?;
                let path = dir.join("attune.redb");
                let db = Arc::new(redb::Database::create(&path).with_context(|| {
                    format!(
                        "cannot open {} (is another origin using it?)",
                        path.display()
                    )
                })?);
                tracing::info!(path = %path.display(), "backends: embedded");
                let log = event_log::embedded::EmbeddedLog::new(db.clone())?;
                let store = store::embedded::EmbeddedStore::new(db.clone())?;
                // Profiles from the log, in this process (what `consume` does on Kafka).
                let half_lives = consume::embedded::HalfLives {
                    affinity: HalfLife::from_hours(args.affinity_half_life_h).context(
                        "ATTUNE_AFFINITY_HALF_LIFE_H must be a positive number of hours",
                    )?,
                    popularity: HalfLife::from_hours(args.popularity_half_life_h).context(
                        "ATTUNE_POPULARITY_HALF_LIFE_H must be a positive number of hours",
                    )?,
                };
                let learner = consume::embedded::Learner::new(
                    model::MfConfig::default(),
                    args.validation_sample,
                );
                let model = consume::embedded::spawn(
                    db,
                    log.subscribe(),
                    half_lives,
                    weights,
                    learner,
                    args.retrain_every_s,
                );
                retrainer = api::models::Retrainer::Embedded(model);
                (Arc::new(log), Arc::new(store))
            }
        };
        let popularity_half_life = HalfLife::from_hours(args.popularity_half_life_h)
            .context("ATTUNE_POPULARITY_HALF_LIFE_H must be a positive number of hours")?;
        let batch_limits = Limits {
            max_batch_bytes: args.max_body_bytes,
            ..Limits::default()
        };
        define_file_experiments(store.as_ref(), sites_config)
            .await
            .context("define the sites file's experiments")?;
        let store: Arc<dyn Store> = Arc::new(store::cached::CachedStore::new(store));
        let ledger = Arc::new(ingest::ledger::IngestLedger::default());
        ledger.spawn_flusher(store.clone());
        let affinity_half_life = HalfLife::from_hours(args.affinity_half_life_h)
            .context("ATTUNE_AFFINITY_HALF_LIFE_H must be a positive number of hours")?;
        Ok(AppState(Arc::new(Shared {
            affinity_half_life,
            sites: Arc::new(sites),
            log,
            store,
            rate_limits: Arc::new(RateLimits::new(args.rate_per_key, args.rate_per_ip)),
            batch_limits,
            edge_secret: args.edge_secret.clone().map(String::into_bytes),
            context_lookup: ingest::context::ContextLookup::new(Duration::from_millis(
                args.store_timeout_ms,
            )),
            popularity_half_life,
            user_agents: ingest::enrich::UserAgents::new(USER_AGENT_CACHE_BYTES),
            activity: Default::default(),
            metrics: metrics::handle(),
            max_body_bytes: args.max_body_bytes,
            snapshots: Default::default(),
            connection_limits: server::ConnectionLimits {
                header_timeout: Duration::from_millis(args.header_timeout_ms),
                max_connections: args.max_connections,
            },
            body_timeout: Duration::from_millis(args.body_timeout_ms),
            ledger,
            consumer_lag,
            arms: arms::Arms::new(exposures),
            retrainer,
        })))
    }
}

/// CORS: preflights pass for any origin some site allows; each request is
/// then checked against its own site (ingest) or needs a bearer credential.
/// Stores each experiment the sites file defines, as a `PUT` would, where
/// it differs from what is stored (a change of who goes where starts a new
/// phase; the same definition again changes nothing).
async fn define_file_experiments(
    store: &dyn Store,
    sites: &[config::SiteConfig],
) -> anyhow::Result<()> {
    for site in sites.iter().filter(|s| !s.experiments.is_empty()) {
        let stored = store.experiments(&site.site_key).await?;
        for (key, spec) in &site.experiments {
            let previous = stored.iter().find(|e| &e.key == key);
            let next =
                experiments::definition::Experiment::define(key, spec, previous, clock::now_ms())
                    .map_err(|e| anyhow::anyhow!("{key}: {}: {}", e.field, e.message))?;
            if previous != Some(&next) {
                store.put_experiment(&site.site_key, &next).await?;
            }
        }
    }
    Ok(())
}

fn cors(sites: Arc<Sites>) -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(move |origin: &HeaderValue, _| {
            origin.to_str().is_ok_and(|o| sites.any_allows_origin(o))
        }))
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
        .allow_headers([
            header::CONTENT_TYPE,
            header::CONTENT_ENCODING,
            header::AUTHORIZATION,
            // analytics.js marks its retries.
            HeaderName::from_static("x-retry-count"),
        ])
        .max_age(Duration::from_secs(3600))
}

/// The Segment-compatible API, with Segment's request limit.
fn segment_routes() -> Router<AppState> {
    Router::new()
        .route("/v1/batch", post(segment::batch))
        .route("/v1/track", post(segment::track))
        .route("/v1/page", post(segment::page))
        .route("/v1/screen", post(segment::screen))
        .route("/v1/identify", post(segment::identify))
        .route("/v1/group", post(segment::group))
        .route("/v1/alias", post(segment::alias))
        // analytics.js's short paths.
        .route("/v1/b", post(segment::batch))
        .route("/v1/t", post(segment::track))
        .route("/v1/p", post(segment::page))
        .route("/v1/s", post(segment::screen))
        .route("/v1/i", post(segment::identify))
        .route("/v1/g", post(segment::group))
        .route("/v1/a", post(segment::alias))
        // What the client SDKs fetch from their CDN host first.
        .route(
            "/v1/projects/{write_key}/settings",
            get(segment::settings::get),
        )
        .layer(DefaultBodyLimit::max(segment::MAX_REQUEST_BYTES))
}

/// The HTTP API with its layers: tracing, metrics, per-IP rate limit, CORS,
/// a deadline for reading the body, attune-core's Content-Encoding rule, gzip
/// request decompression, body limit
/// (applied after decompression).
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/events", post(ingest::post_events))
        .merge(segment_routes())
        .route(
            "/v1/recommendations",
            get(api::recommendations::get_recommendations),
        )
        .route("/v1/profile", get(api::profile::get_profile))
        .route(
            "/v1/items",
            get(api::items::get_items).post(api::items::post_items),
        )
        .route("/v1/items/{id}", put(api::items::put_item))
        .route("/v1/users/{id}", delete(api::users::forget_user))
        .route("/v1/users/{id}/attributes", put(api::users::put_attributes))
        .route("/v1/experiments", get(api::experiments::list))
        .route(
            "/v1/experiments/{key}",
            get(api::experiments::get).put(api::experiments::put),
        )
        .route(
            "/v1/experiments/{key}/results",
            get(api::experiments::results),
        )
        .route("/v1/models", get(api::models::list))
        .route("/v1/models/rollback", post(api::models::rollback))
        .route("/v1/models/retrain", post(api::models::retrain))
        .route("/v1/models/{version}/promote", post(api::models::promote))
        .route("/v1/dashboard", get(dashboard::get_dashboard))
        .route("/dashboard", get(dashboard::page))
        .route("/openapi.json", get(openapi::document))
        .route("/metrics", get(metrics::render))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .layer(DefaultBodyLimit::max(state.max_body_bytes))
        .layer(RequestDecompressionLayer::new())
        .layer(from_fn(encoding::normalise))
        .layer(RequestBodyTimeoutLayer::new(state.body_timeout))
        .layer(cors(state.sites.clone()))
        .layer(from_fn_with_state(state.clone(), ratelimit::per_ip))
        .layer(from_fn(metrics::track))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Serves until `shutdown` resolves; idle rate-limit keys are dropped each
/// minute.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let rate_limits = state.rate_limits.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            rate_limits.forget_idle();
        }
    });
    let connection_limits = state.connection_limits;
    let (ledger, store) = (state.ledger.clone(), state.store.clone());
    server::run(listener, router(state), connection_limits, shutdown).await;
    // What the last second acknowledged.
    ledger.flush(&*store).await;
    Ok(())
}
