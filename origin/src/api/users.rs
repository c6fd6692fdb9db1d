//! Users: `DELETE /v1/users/{id}` (forget) and `PUT /v1/users/{id}/attributes`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;

use super::check_id;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::store::Attributes;
use crate::AppState;

const MAX_ATTRIBUTES: usize = 32;
const MAX_ATTRIBUTE_LEN: usize = 128;

/// Forgets a user: everything stored under their id (profile, attributes,
/// factors, window, dedup state; in the embedded mode their logged events)
/// is deleted, and later events for the id are ignored, also those already
/// on their way. What they contributed to site-wide aggregates before
/// (popularity, item factors, co-visitation) stays, as counts without their
/// id; events on Kafka leave with the topics' retention and are never
/// applied. The site's API key, or the user's own token.
#[utoipa::path(delete, path = "/v1/users/{id}", tag = "api",
    params(("id" = String, Path, description = "User id")),
    security(("bearer" = [])),
    responses((status = 204, description = "Forgotten"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn forget_user(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let user = caller.user(Some(&id))?;
    check_id("id", &user)?;
    state.store.forget_user(&caller.site().key, &user).await?;
    state
        .log
        .forget(&caller.site().key, &user)
        .await
        .map_err(|e| {
            ApiError::unavailable(format!("the user's events could not be purged: {e}"))
        })?;
    tracing::info!(site = %caller.site().key, "user forgotten");
    Ok(StatusCode::NO_CONTENT)
}

/// Replaces a user's static attributes (demographics, locale), which ingest
/// copies into each of their events. The site's API key only.
#[utoipa::path(put, path = "/v1/users/{id}/attributes", tag = "api",
    params(("id" = String, Path, description = "User id")),
    request_body = Attributes,
    security(("bearer" = [])),
    responses((status = 204, description = "Stored"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn put_attributes(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(attrs): Json<Attributes>,
) -> Result<StatusCode, ApiError> {
    let site = caller.require_server()?;
    check_id("id", &id)?;
    check_attributes(&attrs)?;
    state.store.set_attributes(&site.key, &id, &attrs).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The attributes' limits: how many, and how long their keys and values.
pub fn check_attributes(attrs: &Attributes) -> Result<(), ApiError> {
    if attrs.len() > MAX_ATTRIBUTES
        || attrs.iter().any(|(k, v)| {
            k.is_empty() || k.len() > MAX_ATTRIBUTE_LEN || v.len() > MAX_ATTRIBUTE_LEN
        })
    {
        return Err(ApiError::bad_request(
            "too_long",
            format!("at most {MAX_ATTRIBUTES} attributes, keys and values up to {MAX_ATTRIBUTE_LEN} bytes"),
        ));
    }
    Ok(())
}
