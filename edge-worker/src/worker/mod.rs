//! The runtime glue: routing, configuration and the handlers (wasm32 only).

mod collect;
mod config;
mod debug;
mod forward;
mod queue;
mod rate_limit;
mod recommendations;

use serde::Serialize;
use worker::{event, Context, Env, Method, Request, Response, Result};

pub use config::{Config, ForwardTo};

/// Every error reply: `{error, message, field?}`, as the origin's.
#[derive(Serialize)]
pub struct ErrorBody<'a> {
    error: &'a str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
}

/// A JSON error reply.
pub fn error(
    status: u16,
    error: &str,
    message: impl Into<String>,
    field: Option<String>,
) -> Result<Response> {
    Ok(Response::from_json(&ErrorBody {
        error,
        message: message.into(),
        field,
    })?
    .with_status(status))
}

/// Edge clock, Unix ms.
pub fn now_ms() -> i64 {
    worker::Date::now().as_millis() as i64
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> Result<Response> {
    let config = match Config::from_env(&env) {
        Ok(c) => c,
        Err(e) => return error(500, "misconfigured", e, None),
    };
    // Routes match at the end of the path, so the worker can sit under a
    // prefix of the site's own domain (e.g. news.example/attune/v1/collect).
    let path = req.path();
    let route = path.rfind("/v1/").map_or(path.as_str(), |i| &path[i..]);
    if route.starts_with("/v1/") {
        if let Some(limited) = rate_limit::check(&req, &env).await? {
            return Ok(limited);
        }
    }
    match (req.method(), route) {
        (Method::Post, "/v1/collect") => collect::handle(req, &config, &env).await,
        (Method::Get, "/v1/recommendations") => recommendations::handle(req, &config, &ctx).await,
        (Method::Get, "/healthz") => Response::ok("ok"),
        (_, p) if config.debug && p.starts_with("/__attune/") => debug::handle(req, &config).await,
        _ => error(404, "not_found", format!("no route for {path}"), None),
    }
}
