//! `GET /v1/recommendations`: the calling user's top-K candidates, with what
//! the edge needs to rerank them (tags, publish time). The handler gathers
//! what the stores hold and the newcomer's segment popularity (cold start);
//! [`crate::ranking`] ranks.

use std::collections::HashMap;

use attune_core::experiments::{team_draft, Team};
use attune_core::rail::{self, Ranker};
use attune_core::{DecayedScore, RecommendedItem};
use axum::extract::{Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::experiments::definition::{Mode, VariantRanker};
use crate::model::covisit::CovisitConfig;
use crate::ranking::{self, RankWeights, Signals};
use crate::segments;
use crate::AppState;

/// Most candidates one call returns.
pub const MAX_K: usize = 500;

/// Query of `GET /v1/recommendations`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RecommendationsQuery {
    /// How many (1–500, default 20).
    pub k: Option<usize>,
    /// The user (API keys only; a user token reads its own user).
    pub user: Option<String>,
    /// The page's referrer (`document.referrer`): a newcomer is ranked by
    /// what readers who came the same way (search, social, other) read.
    pub referrer: Option<String>,
}

/// The reply.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Recommendations {
    /// The user they are for.
    pub user: String,
    /// Which ranking produced them.
    pub model: String,
    /// What ranked this rail: `personal`, `popularity` or `interleaved`
    /// (attune-core's `rail::Ranker`).
    pub ranker: String,
    /// This serve's id, `<ranker>.<32 hex digits>`. The page reports
    /// impressions and clicks of the items with it and the position each
    /// was shown at (`data-attune-serve` on the rail, `data-attune-pos` on
    /// each item), which attributes them to this rail.
    pub serve_id: String,
    /// The experiment arm that chose the ranking, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment: Option<ServedArm>,
    /// Server time of the ranking, Unix ms.
    pub generated_at_ms: i64,
    /// Best first.
    pub items: Vec<RecommendedItem>,
}

/// The experiment arm a rail was served by.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ServedArm {
    /// The experiment's key.
    pub key: String,
    pub phase: u32,
    /// The variant's name.
    pub variant: String,
    /// The variant's ranker (`production`, `popularity`).
    pub ranker: VariantRanker,
    /// `ab` or `interleave` (the rail merges both variants' rankings).
    pub mode: Mode,
}

/// The ranking weights of an experiment variant's ranker.
fn weights_of(ranker: VariantRanker) -> RankWeights {
    match ranker {
        VariantRanker::Production | VariantRanker::ProductionNoRerank => RankWeights::default(),
        VariantRanker::Popularity => RankWeights::popularity(),
    }
}

/// Two rankings merged by team-draft interleaving, with the ranking (team)
/// that placed each item.
fn interleave(
    a: Vec<RecommendedItem>,
    b: Vec<RecommendedItem>,
    k: usize,
) -> (Vec<RecommendedItem>, Vec<Team>) {
    let ids = |list: &[RecommendedItem]| list.iter().map(|i| i.item.clone()).collect::<Vec<_>>();
    let merged = team_draft(&ids(&a), &ids(&b), k, rand::random());
    let mut pool: HashMap<String, RecommendedItem> = b
        .into_iter()
        .chain(a)
        .map(|i| (i.item.clone(), i))
        .collect();
    merged
        .into_iter()
        .filter_map(|(id, team)| Some((pool.remove(&id)?, team)))
        .unzip()
}

/// Recommendations for the calling user.
#[utoipa::path(get, path = "/v1/recommendations", tag = "api", params(RecommendationsQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = Recommendations),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, description = "A user token naming another user", body = ErrorBody),
    ))]
pub async fn get_recommendations(
    State(state): State<AppState>,
    caller: Caller,
    headers: axum::http::HeaderMap,
    Query(q): Query<RecommendationsQuery>,
) -> Result<Json<Recommendations>, ApiError> {
    let user = caller.user(q.user.as_deref())?;
    let k = q.k.unwrap_or(20);
    if k == 0 || k > MAX_K {
        return Err(
            ApiError::bad_request("out_of_range", format!("k must be 1..={MAX_K}")).field("k"),
        );
    }
    let max_url = state.batch_limits.max_url_len;
    if q.referrer.as_ref().is_some_and(|r| r.len() > max_url) {
        return Err(ApiError::bad_request(
            "too_long",
            format!("referrer is longer than {max_url} bytes: pass the page's document.referrer"),
        )
        .field("referrer"));
    }
    let site = &caller.site().key;
    let (snapshot, user_model) = tokio::try_join!(
        state
            .snapshots
            .get(state.store.as_ref(), site, state.popularity_half_life),
        state
            .store
            .user_model(site, &user, state.affinity_half_life),
    )?;
    let rows = state.store.covisit_rows(site, &user_model.recent).await?;
    let now_ms = crate::clock::now_ms();
    // A newcomer the model does not know: popularity among people like them.
    let newcomer_popularity;
    let popularity = if ranking::is_personal(&user_model) {
        &snapshot.popularity
    } else {
        let device = headers
            .get(axum::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .and_then(|ua| state.user_agents.device(ua).class);
        let attrs = state.store.ingest_context(site, &user).await?.attributes;
        let scopes: Vec<String> =
            segments::of_request(device, q.referrer.as_deref(), &attrs, now_ms)
                .iter()
                .map(|s| segments::scope(site, s))
                .collect();
        let per_segment: Vec<HashMap<String, DecayedScore>> =
            futures::future::try_join_all(scopes.iter().map(|s| state.store.popularity(s))).await?;
        newcomer_popularity = snapshot.popularity.blend(
            &snapshot.catalog,
            &per_segment,
            state.popularity_half_life,
            now_ms,
        );
        &newcomer_popularity
    };
    let served = state.arms.choose(state.store.as_ref(), site, &user).await?;
    let signals = Signals {
        catalog: &snapshot.catalog,
        learned: &snapshot.learned,
        popularity,
        rows: &rows,
        covisit: &CovisitConfig::default(),
        now_ms,
    };
    let rank_by = |v: VariantRanker| ranking::rank(&signals, &user_model, &weights_of(v), k);
    let (ranker, items, serve_id) = match &served {
        Some(s) if s.experiment.mode == Mode::Interleave => {
            let variants = &s.experiment.variants;
            let (items, teams) =
                interleave(rank_by(variants[0].ranker), rank_by(variants[1].ranker), k);
            let id = rail::interleaved_serve_id(&teams, rand::random());
            (Ranker::Interleaved, items, id)
        }
        _ => {
            let variant = served.as_ref().map_or(VariantRanker::Production, |s| {
                s.experiment.variants[s.arm].ranker
            });
            let ranker = variant.serve_ranker(ranking::is_personal(&user_model));
            (
                ranker,
                rank_by(variant),
                rail::serve_id(ranker, rand::random()),
            )
        }
    };
    let model = match ranker {
        Ranker::Personal => "covisit+mf+popularity",
        Ranker::Interleaved => "interleaved",
        _ => "popularity",
    };
    if let Some(served) = &served {
        state
            .arms
            .expose(
                state.store.as_ref(),
                state.log.as_ref(),
                site,
                &user,
                served,
            )
            .await;
    }
    Ok(Json(Recommendations {
        model: model.into(),
        ranker: ranker.as_str().into(),
        serve_id,
        experiment: served.map(|s| ServedArm {
            key: s.experiment.key.clone(),
            phase: s.experiment.phase,
            variant: s.experiment.variants[s.arm].name.clone(),
            ranker: s.experiment.variants[s.arm].ranker,
            mode: s.experiment.mode,
        }),
        user,
        generated_at_ms: now_ms,
        items,
    }))
}
