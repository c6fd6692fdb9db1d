//! `GET /openapi.json`, generated from the handlers' annotations.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(title = "Attune origin", description = "Ingest, recommendations, profiles, catalog, experiments. Auth: `Authorization: Bearer <user token | API key>`; see the auth module for the token format."),
    paths(
        crate::ingest::post_events,
        crate::segment::batch,
        crate::segment::track,
        crate::segment::page,
        crate::segment::screen,
        crate::segment::identify,
        crate::segment::group,
        crate::segment::alias,
        crate::segment::settings::get,
        crate::api::recommendations::get_recommendations,
        crate::api::profile::get_profile,
        crate::api::items::get_items,
        crate::api::items::post_items,
        crate::api::items::put_item,
        crate::api::users::forget_user,
        crate::api::users::put_attributes,
        crate::api::experiments::list,
        crate::api::experiments::get,
        crate::api::experiments::put,
        crate::api::experiments::results,
        crate::api::models::list,
        crate::api::models::promote,
        crate::api::models::rollback,
        crate::api::models::retrain,
        crate::dashboard::get_dashboard,
        crate::health::healthz,
        crate::health::readyz,
        crate::metrics::render,
    ),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// `GET /openapi.json`.
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
