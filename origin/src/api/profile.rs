//! `GET /v1/profile`: what the origin knows about the calling user.

use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::store::Profile;
use crate::AppState;

/// Query of `GET /v1/profile`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProfileQuery {
    /// The user (API keys only; a user token reads its own user).
    pub user: Option<String>,
}

/// The calling user's profile.
#[utoipa::path(get, path = "/v1/profile", tag = "api", params(ProfileQuery),
    security(("bearer" = [])),
    responses((status = 200, body = Profile), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn get_profile(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ProfileQuery>,
) -> Result<Json<Profile>, ApiError> {
    let user = caller.user(q.user.as_deref())?;
    Ok(Json(
        state
            .store
            .profile(&caller.site().key, &user, state.affinity_half_life)
            .await?,
    ))
}
