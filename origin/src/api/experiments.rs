//! Experiments, with the site's API key: `GET /v1/experiments`,
//! `GET|PUT /v1/experiments/{key}` and `GET /v1/experiments/{key}/results`.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::experiments::definition::{Experiment, ExperimentSpec, MAX_EXPERIMENTS};
use crate::experiments::results::{self, ExperimentResults, Unit};
use crate::experiments::stats::Settings;
use crate::AppState;

/// Every experiment of the site.
#[utoipa::path(get, path = "/v1/experiments", tag = "experiments",
    security(("bearer" = [])),
    responses((status = 200, body = [Experiment]), (status = 401, body = ErrorBody), (status = 403, description = "Needs the API key", body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<Experiment>>, ApiError> {
    let site = caller.require_server()?;
    Ok(Json(state.store.experiments(&site.key).await?))
}

async fn find(state: &AppState, site: &str, key: &str) -> Result<Experiment, ApiError> {
    state
        .store
        .experiments(site)
        .await?
        .into_iter()
        .find(|e| e.key == key)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no experiment has this key: create it with PUT /v1/experiments/{key}",
            )
            .field("key")
        })
}

/// One experiment.
#[utoipa::path(get, path = "/v1/experiments/{key}", tag = "experiments",
    params(("key" = String, Path, description = "Experiment key")),
    security(("bearer" = [])),
    responses((status = 200, body = Experiment), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
) -> Result<Json<Experiment>, ApiError> {
    let site = caller.require_server()?;
    Ok(Json(find(&state, &site.key, &key).await?))
}

/// Creates or changes an experiment. A change of who goes where (seed,
/// weights, coverage, namespace, variants' rankers) starts a new phase:
/// results restart, as units would otherwise move between arms mid-run.
/// Stopping or restarting keeps the phase.
#[utoipa::path(put, path = "/v1/experiments/{key}", tag = "experiments", request_body = ExperimentSpec,
    params(("key" = String, Path, description = "Experiment key")),
    security(("bearer" = [])),
    responses((status = 200, body = Experiment), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn put(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
    Json(spec): Json<ExperimentSpec>,
) -> Result<Json<Experiment>, ApiError> {
    let site = caller.require_server()?;
    let all = state.store.experiments(&site.key).await?;
    let previous = all.iter().find(|e| e.key == key);
    if previous.is_none() && all.len() >= MAX_EXPERIMENTS {
        return Err(ApiError::bad_request(
            "too_many",
            format!("a site has at most {MAX_EXPERIMENTS} experiments: change or reuse one"),
        ));
    }
    let experiment = Experiment::define(&key, &spec, previous, crate::clock::now_ms())
        .map_err(|e| ApiError::bad_request("invalid_experiment", e.message).field(e.field))?;
    state.store.put_experiment(&site.key, &experiment).await?;
    state.arms.invalidate(&site.key).await;
    Ok(Json(experiment))
}

/// Query of the results.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ResultsQuery {
    /// Adjust the mean metrics by each unit's pre-exposure period (CUPED).
    #[serde(default)]
    pub cuped: bool,
    /// An earlier phase (default: the current one).
    pub phase: Option<u32>,
}

/// The experiment's results: arms, units, each metric with its intervals
/// and lift, the sample-ratio-mismatch flag and a plain-words decision.
#[utoipa::path(get, path = "/v1/experiments/{key}/results", tag = "experiments",
    params(("key" = String, Path, description = "Experiment key"), ResultsQuery),
    security(("bearer" = [])),
    responses((status = 200, body = ExperimentResults), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn results(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
    Query(q): Query<ResultsQuery>,
) -> Result<Json<ExperimentResults>, ApiError> {
    let site = caller.require_server()?;
    let mut experiment = find(&state, &site.key, &key).await?;
    if let Some(phase) = q.phase {
        if phase == 0 || phase > experiment.phase {
            return Err(ApiError::bad_request(
                "out_of_range",
                format!("phase must be 1..={}", experiment.phase),
            )
            .field("phase"));
        }
        experiment.phase = phase;
    }
    let exposures = state
        .store
        .exposures(&site.key, &key, experiment.phase)
        .await?;
    let users: Vec<String> = exposures.iter().map(|e| e.unit.clone()).collect();
    let now = state.store.unit_counters(&site.key, &users).await?;
    let units: Vec<Unit> = exposures
        .iter()
        .zip(now)
        .map(|(exposure, now)| Unit { exposure, now })
        .collect();
    Ok(Json(results::results(
        &experiment,
        &units,
        q.cuped,
        &Settings::default(),
    )))
}
