//! # attune-origin
//!
//! The origin service. Today it answers health and readiness against the real
//! Kafka and Redis it is pointed at; ingest, consumers, the online model and the
//! REST API are the next issues (4 and 5).

pub mod config;
pub mod health;

use axum::routing::get;
use axum::Router;

/// Everything a handler needs, built once at start-up.
#[derive(Clone)]
pub struct AppState {
    /// Where Kafka and Redis are.
    pub config: config::Backends,
}

/// The HTTP API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .with_state(state)
}
