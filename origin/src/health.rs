//! Liveness and readiness. Ready means the event log and the store both
//! answered just now.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;

/// `GET /healthz`: the process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = String)))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// Readiness of each backend; `null` means it answered.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// The event log's error, if any.
    pub event_log: Option<String>,
    /// The store's error, if any.
    pub store: Option<String>,
}

/// `GET /readyz`: 200 when the log and the store answer, 503 naming what does not.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = Readiness), (status = 503, body = Readiness)))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let (log, store) = tokio::join!(state.log.ping(), state.store.ping());
    let readiness = Readiness {
        event_log: log.err(),
        store: store.err().map(|e| e.to_string()),
    };
    let status = if readiness.event_log.is_none() && readiness.store.is_none() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(readiness))
}
