//! `GET /v1/recommendations?k=…`: the person's cached candidates, reranked
//! with their edge state on every request.

use attune_core::rail::{self, Ranker};
use attune_core::routing::anonymous_user;
use serde::Serialize;
use worker::{Cache, Context, Fetch, Headers, Method, Request, RequestInit, Response, Result};

use super::{error, now_ms, Config};
use crate::candidates::{
    cold_list, freshness, rerank_for, CachedCandidates, ColdList, Freshness, OriginRecommendations,
};
use crate::state::{cookie_value, EdgeState};

/// How long the cache keeps a list at all (stale-if-error beyond TTL + SWR).
const CACHE_MAX_AGE_S: u32 = 86_400;
const MAX_K: usize = 100;

#[derive(Serialize)]
struct Reply {
    user: String,
    source: &'static str,
    /// attune-core's `rail::Ranker`: `edge`, or the origin's for a rail an
    /// experiment arm serves unchanged.
    ranker: String,
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

/// The cached list named `name` (a reader's user, or a cold list's
/// [`ColdList::cache_name`]), if any.
pub async fn cached(config: &Config, name: &str) -> Option<CachedCandidates> {
    let mut hit = Cache::default()
        .get(config.cache_key(name), false)
        .await
        .ok()??;
    hit.json().await.ok()
}

/// One fetch of a list from the origin, with what it needs to rank a
/// newcomer: the reader's User-Agent (device class) and page referrer.
struct ListFetch {
    origin_url: String,
    api_key: String,
    count: usize,
    /// The edge cache key it is stored under.
    cache_key: String,
    /// The origin's user: a reader, or the cold list's.
    user: String,
    user_agent: Option<String>,
    referrer: Option<String>,
}

impl ListFetch {
    /// Asks the origin for the list and caches it.
    async fn run(self) -> std::result::Result<CachedCandidates, String> {
        let mut url = worker::Url::parse(&format!("{}/v1/recommendations", self.origin_url))
            .map_err(|e| e.to_string())?;
        url.query_pairs_mut()
            .append_pair("user", &self.user)
            .append_pair("k", &self.count.to_string());
        if let Some(referrer) = &self.referrer {
            url.query_pairs_mut().append_pair("referrer", referrer);
        }
        let headers = Headers::new();
        headers
            .set("authorization", &format!("Bearer {}", self.api_key))
            .map_err(|e| e.to_string())?;
        if let Some(ua) = &self.user_agent {
            headers.set("user-agent", ua).map_err(|e| e.to_string())?;
        }
        let mut init = RequestInit::new();
        init.with_method(Method::Get).with_headers(headers);
        let request = Request::new_with_init(url.as_str(), &init).map_err(|e| e.to_string())?;
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
            as_served: origin.as_served(),
            items: origin.items,
        };
        let entry = Response::from_json(&list)
            .map_err(|e| e.to_string())?
            .with_headers(cache_headers().map_err(|e| e.to_string())?);
        Cache::default()
            .put(self.cache_key, entry)
            .await
            .map_err(|e| e.to_string())?;
        Ok(list)
    }
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
    // The page's own referrer: the request's Referer header is the page.
    let referrer = url
        .query_pairs()
        .find(|(name, _)| name == "referrer")
        .map(|(_, v)| v.into_owned())
        .filter(|r| !r.is_empty());
    if referrer
        .as_ref()
        .is_some_and(|r| r.len() > config.limits.max_url_len)
    {
        return error(
            400,
            "too_long",
            format!(
                "referrer is longer than {} bytes: pass the page's document.referrer",
                config.limits.max_url_len
            ),
            Some("referrer".into()),
        );
    }
    let user_agent = req.headers().get("user-agent")?;
    let state = req
        .headers()
        .get("cookie")?
        .as_deref()
        .and_then(cookie_value)
        .and_then(|v| EdgeState::open(v, &config.state_secret).ok())
        .filter(|s| s.site == config.site_key);
    let now = now_ms();
    // A reader with state has a list of their own; a newcomer shares one
    // with the readers of their segments.
    let (user, name) = match &state {
        Some(s) => {
            let user = anonymous_user(&s.anonymous_id);
            (user.clone(), user)
        }
        None => (
            ColdList::USER.to_owned(),
            cold_list(user_agent.as_deref(), referrer.as_deref(), now).cache_name(),
        ),
    };
    let fetch = ListFetch {
        origin_url: config.origin_url.clone(),
        api_key: config.api_key.clone(),
        count: config.candidate_count,
        cache_key: config.cache_key(&name),
        user: user.clone(),
        user_agent,
        referrer,
    };

    let list = match cached(config, &name).await {
        Some(list) => match freshness(now - list.fetched_at_ms, config.ttl_ms, config.swr_ms) {
            Freshness::Fresh => list,
            Freshness::Stale => {
                ctx.wait_until(async move {
                    let _ = fetch.run().await;
                });
                list
            }
            // Past stale-while-revalidate: fetch, but an old list beats none.
            Freshness::Expired => fetch.run().await.unwrap_or(list),
        },
        None => match fetch.run().await {
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
    // An experiment arm that is not the production ranking is served as the
    // origin ranked it, under the origin's serve id.
    let (ranker, serve_id, items) = match list.as_served {
        Some(served) => (
            served.ranker,
            served.serve_id,
            list.items.into_iter().take(k).collect(),
        ),
        None => (
            Ranker::Edge.as_str().to_owned(),
            rail::serve_id(Ranker::Edge, random_u128()),
            rerank_for(
                &list.items,
                state.as_ref(),
                now,
                config.half_life,
                config.rerank,
                k,
            ),
        ),
    };
    Response::from_json(&Reply {
        user,
        source: "edge",
        ranker,
        serve_id,
        candidates_age_ms: age,
        stale: age >= config.ttl_ms,
        items,
    })
}
