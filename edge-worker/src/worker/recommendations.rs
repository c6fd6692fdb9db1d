//! `GET /v1/recommendations?k=…`: the person's cached candidates, reranked
//! with their edge state on every request.

use attune_core::rail::{self, Ranker};
use attune_core::routing::anonymous_user;
use serde::Serialize;
use worker::{Cache, Context, Fetch, Headers, Method, Request, RequestInit, Response, Result};

use super::{error, now_ms, Config};
use crate::candidates::{
    freshness, rerank_for, CachedCandidates, Freshness, OriginRecommendations,
};
use crate::state::{cookie_value, EdgeState};

/// Candidates for a browser the edge has no state for yet.
pub const COLD_USER: &str = "anon:_cold";
/// How long the cache keeps a list at all (stale-if-error beyond TTL + SWR).
const CACHE_MAX_AGE_S: u32 = 86_400;
const MAX_K: usize = 100;

#[derive(Serialize)]
struct Reply {
    user: String,
    source: &'static str,
    /// attune-core's `rail::Ranker`: always `edge` here.
    ranker: &'static str,
    /// This serve's id; the page reports impressions and clicks with it.
    serve_id: String,
    candidates_age_ms: i64,
    stale: bool,
    items: Vec<attune_core::RecommendedItem>,
}

/// 128 bits for a serve id, which needs uniqueness, not secrecy.
fn random_u128() -> u128 {
    (0..4).fold(0, |bits, _| {
        (bits << 32) | (js_sys::Math::random() * 4_294_967_296.0) as u128
    })
}

/// The cached list of `user`, if any.
pub async fn cached(config: &Config, user: &str) -> Option<CachedCandidates> {
    let mut hit = Cache::default()
        .get(config.cache_key(user), false)
        .await
        .ok()??;
    hit.json().await.ok()
}

/// Asks the origin for `user`'s candidates and caches them.
async fn fetch_and_cache(
    origin_url: &str,
    api_key: &str,
    cache_key: String,
    user: &str,
    count: usize,
) -> std::result::Result<CachedCandidates, String> {
    let url = format!("{origin_url}/v1/recommendations?user={user}&k={count}");
    let headers = Headers::new();
    headers
        .set("authorization", &format!("Bearer {api_key}"))
        .map_err(|e| e.to_string())?;
    let mut init = RequestInit::new();
    init.with_method(Method::Get).with_headers(headers);
    let request = Request::new_with_init(&url, &init).map_err(|e| e.to_string())?;
    let mut response = Fetch::Request(request)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if response.status_code() != 200 {
        return Err(format!("the origin answered {}", response.status_code()));
    }
    let origin: OriginRecommendations = response.json().await.map_err(|e| e.to_string())?;
    let list = CachedCandidates {
        fetched_at_ms: now_ms(),
        items: origin.items,
    };
    let entry = Response::from_json(&list)
        .map_err(|e| e.to_string())?
        .with_headers(cache_headers().map_err(|e| e.to_string())?);
    Cache::default()
        .put(cache_key, entry)
        .await
        .map_err(|e| e.to_string())?;
    Ok(list)
}

fn cache_headers() -> Result<Headers> {
    let h = Headers::new();
    h.set("content-type", "application/json")?;
    h.set("cache-control", &format!("max-age={CACHE_MAX_AGE_S}"))?;
    Ok(h)
}

pub async fn handle(req: Request, config: &Config, ctx: &Context) -> Result<Response> {
    let url = req.url()?;
    let k = match url.query_pairs().find(|(name, _)| name == "k") {
        None => 10,
        Some((_, v)) => match v.parse::<usize>() {
            Ok(k) if (1..=MAX_K).contains(&k) => k,
            _ => {
                return error(
                    400,
                    "out_of_range",
                    format!("k must be 1..={MAX_K}"),
                    Some("k".into()),
                )
            }
        },
    };
    let state = req
        .headers()
        .get("cookie")?
        .as_deref()
        .and_then(cookie_value)
        .and_then(|v| EdgeState::open(v, &config.state_secret).ok())
        .filter(|s| s.site == config.site_key);
    let user = state
        .as_ref()
        .map_or_else(|| COLD_USER.to_owned(), |s| anonymous_user(&s.anonymous_id));
    let now = now_ms();
    let key = config.cache_key(&user);
    let fetch = || {
        fetch_and_cache(
            &config.origin_url,
            &config.api_key,
            key.clone(),
            &user,
            config.candidate_count,
        )
    };

    let list = match cached(config, &user).await {
        Some(list) => match freshness(now - list.fetched_at_ms, config.ttl_ms, config.swr_ms) {
            Freshness::Fresh => list,
            Freshness::Stale => {
                let (origin, api_key, key, user, count) = (
                    config.origin_url.clone(),
                    config.api_key.clone(),
                    key.clone(),
                    user.clone(),
                    config.candidate_count,
                );
                ctx.wait_until(async move {
                    let _ = fetch_and_cache(&origin, &api_key, key, &user, count).await;
                });
                list
            }
            // Past stale-while-revalidate: fetch, but an old list beats none.
            Freshness::Expired => fetch().await.unwrap_or(list),
        },
        None => match fetch().await {
            Ok(list) => list,
            Err(e) => {
                let mut resp = error(
                    503,
                    "unavailable",
                    format!("the origin is unreachable ({e}) and no candidates are cached; retry shortly"),
                    None,
                )?;
                resp.headers_mut().set("retry-after", "2")?;
                return Ok(resp);
            }
        },
    };
    // workerd freezes the clock within a request: never report a negative age.
    let age = (now - list.fetched_at_ms).max(0);
    Response::from_json(&Reply {
        user,
        source: "edge",
        ranker: Ranker::Edge.as_str(),
        serve_id: rail::serve_id(Ranker::Edge, random_u128()),
        candidates_age_ms: age,
        stale: age >= config.ttl_ms,
        items: rerank_for(
            &list.items,
            state.as_ref(),
            now,
            config.half_life,
            config.rerank,
            k,
        ),
    })
}
