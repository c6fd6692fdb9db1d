//! `GET /v1/projects/{write_key}/settings`: the settings Segment's
//! client SDKs fetch from their CDN host before they send anything. Served
//! here, so pointing an SDK's CDN host (analytics.js's `cdnURL`, the mobile
//! SDKs' `cdnHost`) at the origin is all the setup it needs: the settings
//! name this origin as the `Segment.io` destination's `apiHost` and turn
//! off the SDK's own metrics reports to Segment.
//!
//! Only a site key (the public write key) has settings: an API key is a
//! server's and servers' SDKs fetch none.
//!
//! The `apiHost` is the address the request came by (`X-Forwarded-Host` and
//! `X-Forwarded-Proto` from a proxy, else `Host` and plain HTTP). Those are
//! the client's to set, so the answer is `Cache-Control: no-store`: no
//! shared cache keeps one client's view for the others.

use axum::extract::{Path, State};
use axum::http::header::{CACHE_CONTROL, HOST};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::error::{ApiError, ErrorBody};
use crate::AppState;

/// The SDK settings of a site key.
#[utoipa::path(get, path = "/v1/projects/{write_key}/settings", tag = "segment",
    params(("write_key" = String, Path, description = "The site key")),
    responses(
        (status = 200, description = "Segment's settings shape: `integrations.Segment.io.apiHost` is this origin", body = Object),
        (status = 404, description = "Not a site key", body = ErrorBody),
    ))]
pub async fn get(
    State(state): State<AppState>,
    Path(write_key): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if state.sites.by_key(&write_key).is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no site has this write key: use the site key of the sites file",
        ));
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    // The address the SDK reached this origin by, through any proxy.
    let host = header("x-forwarded-host")
        .or_else(|| header(HOST.as_str()))
        .unwrap_or_default();
    let protocol = header("x-forwarded-proto").unwrap_or_else(|| "http".into());
    let settings: Value = json!({
        "integrations": {
            "Segment.io": {
                "apiKey": write_key,
                "apiHost": format!("{host}/v1"),
                "protocol": protocol,
            }
        },
        "plan": {},
        "metrics": {"sampleRate": 0},
    });
    let mut response = Json(settings).into_response();
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
