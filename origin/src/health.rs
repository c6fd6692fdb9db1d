//! Liveness and readiness. Ready means Kafka and Redis both answered just now.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use serde::Serialize;

use crate::AppState;

const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /healthz`: the process is up.
pub async fn healthz() -> &'static str {
    "ok"
}

/// Readiness of each backend; `null` means it answered.
#[derive(Debug, Serialize)]
pub struct Readiness {
    /// Kafka's error, if any.
    pub kafka: Option<String>,
    /// Redis's error, if any.
    pub redis: Option<String>,
}

/// `GET /readyz`: 200 when Kafka and Redis answer, 503 naming what does not.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let brokers = state.config.kafka_brokers.clone();
    let kafka = tokio::task::spawn_blocking(move || kafka_answers(&brokers))
        .await
        .unwrap_or_else(|e| Err(format!("probe task failed: {e}")))
        .err();
    let redis = redis_answers(&state.config.redis_url).await.err();
    let status = if kafka.is_none() && redis.is_none() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(Readiness { kafka, redis }))
}

/// Fetches cluster metadata (a blocking librdkafka call).
pub fn kafka_answers(brokers: &str) -> Result<(), String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .map_err(|e| format!("cannot create a Kafka client for {brokers}: {e}"))?;
    consumer
        .fetch_metadata(None, PROBE_TIMEOUT)
        .map(|_| ())
        .map_err(|e| format!("Kafka at {brokers} did not answer: {e}"))
}

/// Sends PING.
pub async fn redis_answers(url: &str) -> Result<(), String> {
    let client = redis::Client::open(url).map_err(|e| format!("bad REDIS_URL {url}: {e}"))?;
    let ping = async {
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await
    };
    match tokio::time::timeout(PROBE_TIMEOUT, ping).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("Redis at {url} did not answer: {e}")),
        Err(_) => Err(format!(
            "Redis at {url} did not answer within {PROBE_TIMEOUT:?}"
        )),
    }
}
