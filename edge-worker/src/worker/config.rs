//! The worker's configuration: `[vars]` in wrangler.toml and its secrets.

use attune_core::{FeedbackWeights, HalfLife, Limits, RerankConfig};
use worker::Env;

/// Where a batch goes before the edge answers 202.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardTo {
    /// The origin itself: the 202 is the origin's (`FORWARD = "origin"`, the default).
    Origin,
    /// A Cloudflare Queue, drained into the origin by this worker (`FORWARD = "queue"`).
    Queue,
}

/// Parsed bindings.
pub struct Config {
    /// Where batches go before the 202.
    pub forward: ForwardTo,
    /// Base URL of the origin, e.g. `https://origin.example`.
    pub origin_url: String,
    /// The one site this worker serves.
    pub site_key: String,
    /// The site's API key, for the origin's candidate lists (secret).
    pub api_key: String,
    /// HMAC key of the state cookie (secret).
    pub state_secret: Vec<u8>,
    /// Pages allowed to send for the site (`ALLOWED_ORIGINS`, comma-separated,
    /// as the site's allowed_origins at the origin); `None`: checked by the
    /// origin only.
    pub allowed_origins: Option<Vec<String>>,
    /// The site's user-token secrets (`TOKEN_SECRET`, then any
    /// `RETIRED_TOKEN_SECRETS`, comma-separated); empty: checked by the
    /// origin only.
    pub token_secrets: Vec<Vec<u8>>,
    /// Proves this edge to the origin, which then counts the reader's
    /// address (not the edge's) for its per-IP limit (secret, optional).
    pub origin_edge_secret: Option<String>,
    /// Candidates are fresh this long…
    pub ttl_ms: i64,
    /// …then served stale while refreshed in the background this much longer.
    pub swr_ms: i64,
    /// Half-life of the in-session affinities.
    pub half_life: HalfLife,
    /// What each interaction is worth: `FEEDBACK_WEIGHTS`, JSON with any of
    /// attune-core's `FeedbackWeights` fields — the site's `[sites.weights]`
    /// at the origin, so both tiers weigh alike.
    pub weights: FeedbackWeights,
    /// How much the affinities move the ranking.
    pub rerank: RerankConfig,
    /// Candidates fetched per user.
    pub candidate_count: usize,
    /// Batch limits.
    pub limits: Limits,
    /// Serve `/__attune/…` (golden vectors, rerank timing): tests only.
    pub debug: bool,
}

fn text(env: &Env, name: &str) -> Option<String> {
    env.secret(name)
        .map(|s| s.to_string())
        .or_else(|_| env.var(name).map(|v| v.to_string()))
        .ok()
}

fn required(env: &Env, name: &str) -> Result<String, String> {
    text(env, name).ok_or_else(|| {
        format!("the worker binding {name} is missing: set it in wrangler.toml [vars] or with `wrangler secret put {name}`")
    })
}

/// A comma-separated binding's non-empty entries.
fn list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

fn number(env: &Env, name: &str, default: f64) -> Result<f64, String> {
    match text(env, name) {
        None => Ok(default),
        Some(v) => v
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite() && *n >= 0.0)
            .ok_or_else(|| format!("the worker binding {name}={v} is not a non-negative number")),
    }
}

fn weights(env: &Env) -> Result<FeedbackWeights, String> {
    let Some(json) = text(env, "FEEDBACK_WEIGHTS") else {
        return Ok(FeedbackWeights::default());
    };
    let weights: FeedbackWeights = serde_json::from_str(&json)
        .map_err(|e| format!("the worker binding FEEDBACK_WEIGHTS is not a weights object: {e}"))?;
    weights
        .validate()
        .map_err(|e| format!("the worker binding FEEDBACK_WEIGHTS: {e}"))?;
    Ok(weights)
}

impl Config {
    /// Reads and checks the bindings.
    pub fn from_env(env: &Env) -> Result<Self, String> {
        let origin_url = required(env, "ORIGIN_URL")?
            .trim_end_matches('/')
            .to_owned();
        let forward = match text(env, "FORWARD").as_deref() {
            None | Some("origin") => ForwardTo::Origin,
            Some("queue") => ForwardTo::Queue,
            Some(other) => {
                return Err(format!(
                    "the worker binding FORWARD={other} is not `origin` or `queue`"
                ))
            }
        };
        Ok(Config {
            forward,
            origin_url,
            site_key: required(env, "SITE_KEY")?,
            api_key: required(env, "ORIGIN_API_KEY")?,
            state_secret: required(env, "EDGE_STATE_SECRET")?.into_bytes(),
            origin_edge_secret: text(env, "ORIGIN_EDGE_SECRET"),
            allowed_origins: text(env, "ALLOWED_ORIGINS").map(|v| list(&v)),
            token_secrets: text(env, "TOKEN_SECRET")
                .into_iter()
                .chain(
                    text(env, "RETIRED_TOKEN_SECRETS")
                        .iter()
                        .flat_map(|v| list(v)),
                )
                .map(String::into_bytes)
                .collect(),
            ttl_ms: (number(env, "CANDIDATES_TTL_S", 30.0)? * 1000.0) as i64,
            swr_ms: (number(env, "CANDIDATES_SWR_S", 300.0)? * 1000.0) as i64,
            half_life: HalfLife::from_hours(number(env, "HALF_LIFE_H", 1.0)?)
                .ok_or("HALF_LIFE_H must be positive")?,
            weights: weights(env)?,
            rerank: RerankConfig {
                affinity_blend: number(env, "AFFINITY_BLEND", 0.5)?,
            },
            candidate_count: number(env, "CANDIDATE_COUNT", 200.0)? as usize,
            limits: Limits::default(),
            debug: text(env, "DEBUG_ENDPOINTS").is_some_and(|v| v == "1"),
        })
    }

    /// The cache key of a user's candidate list.
    pub fn cache_key(&self, user: &str) -> String {
        format!(
            "https://attune-edge.cache/candidates/{}/{user}",
            self.site_key
        )
    }
}
