//! The model versions: `GET /v1/models`, `POST /v1/models/{version}/promote`
//! and `POST /v1/models/rollback` (`model::versions`). The versions are the
//! origin's, shared by its sites: with one site its API key may move the
//! pointer; with several only `attune-origin model`, run with access to the
//! store, may — one site's key must not change another's recommendations.

use axum::extract::{Path, State};
use axum::Json;

use crate::auth::Caller;
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
