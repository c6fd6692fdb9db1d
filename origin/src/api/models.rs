//! The model versions: `GET /v1/models`, `POST /v1/models/{version}/promote`
//! and `POST /v1/models/rollback` (`model::versions`). The versions are the
//! origin's, shared by its sites: with one site its API key may move the
//! pointer; with several only `attune-origin model`, run with access to the
//! store, may — one site's key must not change another's recommendations.

use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::config::RetrainArgs;
use crate::consume::embedded::EmbeddedModel;
use crate::consume::retrain::{Outcome, Search};
use crate::error::{ApiError, ErrorBody};
use crate::model::versions::Registry;
use crate::store::Store;
use crate::AppState;

/// Where the pointer goes.
#[derive(Debug, Clone, Copy)]
pub enum Move {
    /// To this version.
    Promote(u32),
    /// Back to the version that served before.
    Rollback,
}

/// Moves the serving pointer; the registry after the move. The consumers
/// see it within a round and catch the version up from its positions.
pub async fn move_pointer(store: &dyn Store, to: Move) -> Result<Registry, ApiError> {
    let registry = store.model_registry().await?;
    let next = match to {
        Move::Promote(v) => registry.promote(v),
        Move::Rollback => registry.rollback(),
    }
    .map_err(|why| ApiError::bad_request("no_such_version", why))?;
    store.set_model_pointer(&next).await?;
    tracing::info!(
        from = registry.serving,
        to = next.serving,
        "model pointer moved"
    );
    metrics::counter!("attune_model_pointer_moves_total").increment(1);
    Ok(next)
}

/// What retrains for this origin: `attune-origin retrain`'s work on the
/// Kafka log and Redis, or the embedded consumer's between its rounds.
pub enum Retrainer {
    /// The deployment's log and store.
    Kafka(RetrainArgs),
    /// The embedded mode's.
    Embedded(EmbeddedModel),
}

impl Retrainer {
    /// Retrains (blocking).
    pub fn run(&self, search: &Search) -> anyhow::Result<Outcome> {
        match self {
            Retrainer::Kafka(args) => crate::consume::retrain::run_with(args, search),
            Retrainer::Embedded(model) => model.retrain(search),
        }
    }
}

/// Body of `POST /v1/models/retrain`: the search (the CLI's defaults for
/// what is left out).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetrainRequest {
    /// Passes over the training events to try (1–100 each).
    pub epochs: Option<Vec<u32>>,
    /// Regularization values to try (0–10 each).
    pub regularization: Option<Vec<f32>>,
    /// SGD step sizes to try (above 0, up to 1).
    pub learning_rate: Option<Vec<f32>>,
    /// HR@10 the challenger's 95 % interval must clear over the champion's.
    pub margin: Option<f64>,
    /// Promote a better challenger (default true).
    pub promote: Option<bool>,
}

/// Most candidates one retrain may fit.
pub const MAX_GRID: usize = 60;

impl RetrainRequest {
    /// The search it asks for, or why it cannot be run.
    pub fn search(self) -> Result<Search, ApiError> {
        let d = RetrainArgs::defaults();
        let epochs = self.epochs.unwrap_or(d.epochs);
        let regularization = self.regularization.unwrap_or(d.regularization);
        let learning_rate = self.learning_rate.unwrap_or(d.learning_rate);
        let margin = self.margin.unwrap_or(d.margin);
        let bad = |field: &'static str, why: &str| {
            Err(ApiError::bad_request("invalid_search", why.to_owned()).field(field))
        };
        if epochs.is_empty() || epochs.iter().any(|e| !(1..=100).contains(e)) {
            return bad("epochs", "epochs: 1 to 100 each, at least one");
        }
        if regularization.is_empty() || regularization.iter().any(|r| !(0.0..=10.0).contains(r)) {
            return bad(
                "regularization",
                "regularization: 0 to 10 each, at least one",
            );
        }
        if learning_rate.is_empty() || learning_rate.iter().any(|r| !(*r > 0.0 && *r <= 1.0)) {
            return bad(
                "learning_rate",
                "learning_rate: above 0 and up to 1 each, at least one",
            );
        }
        if !(0.0..=1.0).contains(&margin) {
            return bad("margin", "margin: an HR@10 difference from 0 to 1");
        }
        if epochs.len() * regularization.len() * learning_rate.len() > MAX_GRID {
            return bad(
                "epochs",
                &format!("at most {MAX_GRID} candidates per retrain"),
            );
        }
        Ok(Search {
            promote: self.promote.unwrap_or(true),
            ..Search::of(&epochs, &regularization, &learning_rate, margin)
        })
    }
}

/// Fits a challenger, compares it with the serving version on the
/// time-ordered holdout, and promotes it when it is better beyond chance:
/// `attune-origin retrain` over the API. It answers when done.
#[utoipa::path(post, path = "/v1/models/retrain", tag = "model", security(("bearer" = [])),
    request_body(content = RetrainRequest, content_type = "application/json"),
    responses((status = 200, body = Outcome), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, description = "Needs the API key of the origin's only site", body = ErrorBody)))]
pub async fn retrain(
    State(state): State<AppState>,
    caller: Caller,
    body: Option<Json<RetrainRequest>>,
) -> Result<Json<Outcome>, ApiError> {
    may_move(&state, &caller)?;
    let search = body.map(|Json(b)| b).unwrap_or_default().search()?;
    let state2 = state.clone();
    let outcome = tokio::task::spawn_blocking(move || state2.retrainer.run(&search))
        .await
        .map_err(|e| ApiError::internal("retrain", e))?
        .map_err(|e| ApiError::internal("retrain", format!("{e:#}")))?;
    Ok(Json(outcome))
}

/// The versions, their recipes and holdout comparisons, and which one serves.
#[utoipa::path(get, path = "/v1/models", tag = "model", security(("bearer" = [])),
    responses((status = 200, body = Registry), (status = 401, body = ErrorBody), (status = 403, description = "Needs the API key", body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Registry>, ApiError> {
    caller.require_server()?;
    Ok(Json(state.store.model_registry().await?))
}

/// Serves `version`.
#[utoipa::path(post, path = "/v1/models/{version}/promote", tag = "model", security(("bearer" = [])),
    params(("version" = u32, Path, description = "The version to serve")),
    responses((status = 200, body = Registry), (status = 400, description = "No such version", body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, description = "Needs the API key of the origin's only site", body = ErrorBody)))]
pub async fn promote(
    State(state): State<AppState>,
    caller: Caller,
    Path(version): Path<u32>,
) -> Result<Json<Registry>, ApiError> {
    may_move(&state, &caller)?;
    Ok(Json(
        move_pointer(state.store.as_ref(), Move::Promote(version)).await?,
    ))
}

/// Serves the version that served before the current one.
#[utoipa::path(post, path = "/v1/models/rollback", tag = "model", security(("bearer" = [])),
    responses((status = 200, body = Registry), (status = 400, description = "Nothing to roll back to", body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, description = "Needs the API key of the origin's only site", body = ErrorBody)))]
pub async fn rollback(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Registry>, ApiError> {
    may_move(&state, &caller)?;
    Ok(Json(
        move_pointer(state.store.as_ref(), Move::Rollback).await?,
    ))
}

fn may_move(state: &AppState, caller: &Caller) -> Result<(), ApiError> {
    caller.require_server()?;
    let sites = state.sites.keys().count();
    if sites > 1 {
        return Err(ApiError::forbidden(format!(
            "the model versions are shared by this origin's {sites} sites: move the pointer with \
             `attune-origin model promote|rollback` where the store is reachable"
        )));
    }
    Ok(())
}
