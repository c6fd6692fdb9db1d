//! The catalog: `GET /v1/items`, `POST /v1/items` (bulk upsert) and
//! `PUT /v1/items/{id}`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::check_id;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::store::Item;
use crate::AppState;

/// Most items per `POST /v1/items`.
pub const MAX_ITEMS_PER_CALL: usize = 1000;
const MAX_TAGS: usize = 32;
const MAX_TAG_LEN: usize = 64;
const MAX_METADATA_BYTES: usize = 4096;

/// Body of `POST /v1/items`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ItemsRequest {
    /// Items to insert or replace.
    pub items: Vec<Item>,
}

/// Reply of the catalog calls.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Upserted {
    /// Items written.
    pub upserted: usize,
}

fn validate(item: &Item, at: &str) -> Result<(), ApiError> {
    check_id(&format!("{at}.id"), &item.id)?;
    if item.tags.len() > MAX_TAGS {
        return Err(ApiError::bad_request(
            "too_many",
            format!("an item has at most {MAX_TAGS} tags"),
        )
        .field(format!("{at}.tags")));
    }
    for (i, tag) in item.tags.iter().enumerate() {
        if tag.is_empty() || tag.len() > MAX_TAG_LEN {
            return Err(ApiError::bad_request(
                "too_long",
                format!("tags are 1–{MAX_TAG_LEN} bytes"),
            )
            .field(format!("{at}.tags[{i}]")));
        }
    }
    if serde_json::to_vec(&item.metadata).map_or(0, |v| v.len()) > MAX_METADATA_BYTES {
        return Err(ApiError::bad_request(
            "too_long",
            format!("metadata is at most {MAX_METADATA_BYTES} bytes of JSON"),
        )
        .field(format!("{at}.metadata")));
    }
    Ok(())
}

/// Reply of `GET /v1/items`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Catalog {
    /// Every item of the site, by id.
    pub items: Vec<Item>,
}

/// The site's catalog, by id.
#[utoipa::path(get, path = "/v1/items", tag = "catalog", security(("bearer" = [])),
    responses((status = 200, body = Catalog), (status = 401, body = ErrorBody), (status = 403, description = "Needs the API key", body = ErrorBody)))]
pub async fn get_items(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Catalog>, ApiError> {
    let site = caller.require_server()?;
    let mut items = state.store.items(&site.key).await?;
    items.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(Json(Catalog { items }))
}

/// Inserts or replaces up to 1000 items.
#[utoipa::path(post, path = "/v1/items", tag = "catalog", request_body = ItemsRequest,
    security(("bearer" = [])),
    responses((status = 200, body = Upserted), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, description = "Needs the API key", body = ErrorBody)))]
pub async fn post_items(
    State(state): State<AppState>,
    caller: Caller,
    Json(req): Json<ItemsRequest>,
) -> Result<Json<Upserted>, ApiError> {
    let site = caller.require_server()?;
    if req.items.len() > MAX_ITEMS_PER_CALL {
        return Err(ApiError::bad_request(
            "too_many",
            format!("send at most {MAX_ITEMS_PER_CALL} items per call"),
        )
        .field("items"));
    }
    for (i, item) in req.items.iter().enumerate() {
        validate(item, &format!("items[{i}]"))?;
    }
    state.store.upsert_items(&site.key, &req.items).await?;
    state.snapshots.invalidate(&site.key).await;
    Ok(Json(Upserted {
        upserted: req.items.len(),
    }))
}

/// Inserts or replaces one item; the body's `id` must match the path.
#[utoipa::path(put, path = "/v1/items/{id}", tag = "catalog", request_body = Item,
    params(("id" = String, Path, description = "Item id")),
    security(("bearer" = [])),
    responses((status = 200, body = Upserted), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn put_item(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(item): Json<Item>,
) -> Result<(StatusCode, Json<Upserted>), ApiError> {
    let site = caller.require_server()?;
    if item.id != id {
        return Err(ApiError::bad_request(
            "id_mismatch",
            format!("the body's id `{}` differs from the path's `{id}`", item.id),
        )
        .field("id"));
    }
    validate(&item, "item")?;
    state
        .store
        .upsert_items(&site.key, std::slice::from_ref(&item))
        .await?;
    state.snapshots.invalidate(&site.key).await;
    Ok((StatusCode::OK, Json(Upserted { upserted: 1 })))
}
