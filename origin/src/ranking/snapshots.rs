//! Each site's [`Catalog`], [`Learned`] and [`Popularity`], read from the
//! store at most once per [`SNAPSHOT_TTL`] and shared by every request in
//! that time: catalog, factors, norms and popularity matter in aggregate, so
//! a second's lag costs nothing, while reading and indexing 10,000 items per
//! request would cost more than ranking them. A request still reads its own
//! user (profile, window rows) fresh.

use std::sync::Arc;
use std::time::Duration;

use attune_core::HalfLife;
use moka::future::Cache;

use super::{Catalog, Learned, Popularity};
use crate::store::{Store, StoreError, StoreResult};

/// How long a site's snapshot serves. Item changes made through this process
/// are seen at once (see [`Snapshots::invalidate`]); through another, within this.
pub const SNAPSHOT_TTL: Duration = Duration::from_secs(1);

/// One site's ranking inputs at one moment.
#[derive(Debug)]
pub struct Snapshot {
    /// The catalog.
    pub catalog: Catalog,
    /// Factors and co-visit norms.
    pub learned: Learned,
    /// The site's popularity.
    pub popularity: Popularity,
}

/// Snapshots per site; concurrent misses of one site share one read.
pub struct Snapshots {
    cache: Cache<String, Arc<Snapshot>>,
}

impl Default for Snapshots {
    fn default() -> Self {
        Snapshots {
            cache: Cache::builder()
                .max_capacity(1_000)
                .time_to_live(SNAPSHOT_TTL)
                .build(),
        }
    }
}

impl Snapshots {
    /// The site's snapshot, read from `store` when none is fresh.
    pub async fn get(
        &self,
        store: &dyn Store,
        site: &str,
        popularity_half_life: HalfLife,
    ) -> StoreResult<Arc<Snapshot>> {
        self.cache
            .try_get_with_by_ref(site, read(store, site, popularity_half_life))
            .await
            .map_err(|e: Arc<StoreError>| StoreError(e.0.clone()))
    }

    /// Drops the site's snapshot (its catalog changed).
    pub async fn invalidate(&self, site: &str) {
        self.cache.invalidate(site).await;
    }
}

async fn read(store: &dyn Store, site: &str, half_life: HalfLife) -> StoreResult<Arc<Snapshot>> {
    let (items, popularity, vectors, norms) = tokio::try_join!(
        store.items(site),
        store.popularity(site),
        store.item_vectors(site),
        store.covisit_norms(site),
    )?;
    let catalog = Catalog::new(items);
    let learned = Learned::new(&catalog, &vectors, norms);
    let popularity = Popularity::new(&catalog, &popularity, half_life, crate::clock::now_ms());
    Ok(Arc::new(Snapshot {
        catalog,
        learned,
        popularity,
    }))
}
