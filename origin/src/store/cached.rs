//! A store decorator that keeps each sender's [`IngestContext`] for a second,
//! so a busy user's batches do not each cost a store round trip.
//!
//! Writes through this process invalidate at once; a forget or attribute change
//! made through another origin process is seen within [`CONTEXT_TTL`] (the
//! consumers check the forgotten mark again before applying events).

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use attune_core::{DecayedScore, HalfLife};
use moka::sync::Cache;

use super::{
    Attributes, ConsumerStats, CovisitRows, IngestContext, Item, Profile, RailCounts, Store,
    StoreResult, UserModel,
};
use crate::experiments::definition::Experiment;
use crate::experiments::{Exposure, UnitCounters};
use crate::ledger::{Counts, Minute};

/// How long a sender's context is reused.
pub const CONTEXT_TTL: Duration = Duration::from_secs(1);

/// Caches `ingest_context`; everything else passes through.
pub struct CachedStore {
    inner: Arc<dyn Store>,
    contexts: Cache<(String, String), IngestContext>,
}

impl CachedStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Store>) -> Self {
        CachedStore {
            inner,
            contexts: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(CONTEXT_TTL)
                .build(),
        }
    }

    fn invalidate(&self, site: &str, user: &str) {
        self.contexts
            .invalidate(&(site.to_owned(), user.to_owned()));
    }
}

#[async_trait]
impl Store for CachedStore {
    async fn ping(&self) -> StoreResult<()> {
        self.inner.ping().await
    }

    async fn upsert_items(&self, site: &str, items: &[Item]) -> StoreResult<()> {
        self.inner.upsert_items(site, items).await
    }

    async fn items(&self, site: &str) -> StoreResult<Vec<Item>> {
        self.inner.items(site).await
    }

    async fn popularity(&self, scope: &str) -> StoreResult<HashMap<String, DecayedScore>> {
        self.inner.popularity(scope).await
    }

    async fn set_attributes(&self, site: &str, user: &str, attrs: &Attributes) -> StoreResult<()> {
        self.inner.set_attributes(site, user, attrs).await?;
        self.invalidate(site, user);
        Ok(())
    }

    async fn ingest_context(&self, site: &str, user: &str) -> StoreResult<IngestContext> {
        let key = (site.to_owned(), user.to_owned());
        if let Some(hit) = self.contexts.get(&key) {
            return Ok(hit);
        }
        let context = self.inner.ingest_context(site, user).await?;
        self.contexts.insert(key, context.clone());
        Ok(context)
    }

    async fn profile(&self, site: &str, user: &str, half_life: HalfLife) -> StoreResult<Profile> {
        self.inner.profile(site, user, half_life).await
    }

    async fn user_model(
        &self,
        site: &str,
        user: &str,
        half_life: HalfLife,
    ) -> StoreResult<UserModel> {
        self.inner.user_model(site, user, half_life).await
    }

    async fn item_vectors(&self, site: &str) -> StoreResult<Arc<HashMap<String, Vec<f32>>>> {
        self.inner.item_vectors(site).await
    }

    async fn covisit_norms(&self, site: &str) -> StoreResult<Arc<HashMap<String, f64>>> {
        self.inner.covisit_norms(site).await
    }

    async fn covisit_rows(&self, site: &str, items: &[String]) -> StoreResult<CovisitRows> {
        self.inner.covisit_rows(site, items).await
    }

    async fn forget_user(&self, site: &str, user: &str) -> StoreResult<()> {
        self.inner.forget_user(site, user).await?;
        self.invalidate(site, user);
        Ok(())
    }

    async fn model_registry(&self) -> StoreResult<crate::model::versions::Registry> {
        self.inner.model_registry().await
    }

    async fn set_model_pointer(
        &self,
        registry: &crate::model::versions::Registry,
    ) -> StoreResult<()> {
        self.inner.set_model_pointer(registry).await
    }

    async fn consumer_stats(&self) -> StoreResult<Vec<ConsumerStats>> {
        self.inner.consumer_stats().await
    }

    async fn rail_counts(&self, site: &str) -> StoreResult<RailCounts> {
        self.inner.rail_counts(site).await
    }

    async fn experiments(&self, site: &str) -> StoreResult<Vec<Experiment>> {
        self.inner.experiments(site).await
    }

    async fn put_experiment(&self, site: &str, experiment: &Experiment) -> StoreResult<()> {
        self.inner.put_experiment(site, experiment).await
    }

    async fn record_exposure(&self, exposure: &Exposure) -> StoreResult<bool> {
        self.inner.record_exposure(exposure).await
    }

    async fn exposures(&self, site: &str, key: &str, phase: u32) -> StoreResult<Vec<Exposure>> {
        self.inner.exposures(site, key, phase).await
    }

    async fn unit_counters(&self, site: &str, users: &[String]) -> StoreResult<Vec<UnitCounters>> {
        self.inner.unit_counters(site, users).await
    }

    async fn add_ledger(&self, counts: &Counts) -> StoreResult<()> {
        self.inner.add_ledger(counts).await
    }

    async fn ledger(&self, sites: &[String], minutes: Range<Minute>) -> StoreResult<Counts> {
        self.inner.ledger(sites, minutes).await
    }
}
