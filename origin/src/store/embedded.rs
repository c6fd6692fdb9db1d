//! The embedded store: one redb file under `--data-dir`, for a single machine
//! with nothing else installed. Same behaviour as the Redis store.
// redb's error type is large; it only travels to the edge of this module.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use attune_core::{DecayedScore, HalfLife};
use redb::{Database, ReadableTable, TableDefinition};

use super::{
    Attributes, ConsumerStats, IngestContext, Item, Profile, Store, StoreError, StoreResult,
    UserModel,
};

/// (site, item) → item JSON.
const ITEMS: TableDefinition<(&str, &str), &str> = TableDefinition::new("items");
/// (site, item) → (value, at_ms).
const POPULARITY: TableDefinition<(&str, &str), (f64, i64)> = TableDefinition::new("popularity");
/// (site, user) → attributes JSON.
const ATTRIBUTES: TableDefinition<(&str, &str), &str> = TableDefinition::new("attributes");
/// (site, user) → profile JSON (written by the consumers).
pub const PROFILES: TableDefinition<(&str, &str), &str> = TableDefinition::new("profiles");
/// (site, user) → ().
const FORGOTTEN: TableDefinition<(&str, &str), ()> = TableDefinition::new("forgotten");

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(format!("embedded store: {e}"))
}

/// redb behind `spawn_blocking` (its calls block on disk).
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
}

impl EmbeddedStore {
    /// Uses an open database (shared with the embedded event log).
    pub fn new(db: Arc<Database>) -> StoreResult<Self> {
        let tx = db.begin_write().map_err(err)?;
        // Create the tables so that reads before the first write succeed.
        tx.open_table(ITEMS).map_err(err)?;
        tx.open_table(POPULARITY).map_err(err)?;
        tx.open_table(ATTRIBUTES).map_err(err)?;
        tx.open_table(PROFILES).map_err(err)?;
        tx.open_table(FORGOTTEN).map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(EmbeddedStore { db })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, redb::Error> + Send + 'static,
    ) -> StoreResult<T> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(err)?
            .map_err(err)
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn ping(&self) -> StoreResult<()> {
        self.blocking(|db| db.begin_read().map(|_| ()).map_err(Into::into))
            .await
    }

    async fn upsert_items(&self, site: &str, items: &[Item]) -> StoreResult<()> {
        let site = site.to_owned();
        let rows: Vec<(String, String)> = items
            .iter()
            .map(|i| {
                (
                    i.id.clone(),
                    serde_json::to_string(i).expect("items serialize"),
                )
            })
            .collect();
        self.blocking(move |db| {
            let tx = db.begin_write()?;
            {
                let mut t = tx.open_table(ITEMS)?;
                for (id, json) in &rows {
                    t.insert((site.as_str(), id.as_str()), json.as_str())?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn items(&self, site: &str) -> StoreResult<Vec<Item>> {
        let site = site.to_owned();
        let rows = self
            .blocking(move |db| {
                let t = db.begin_read()?.open_table(ITEMS)?;
                let mut out = Vec::new();
                for row in t.range((site.as_str(), "")..)? {
                    let (k, v) = row?;
                    if k.value().0 != site {
                        break;
                    }
                    out.push(v.value().to_owned());
                }
                Ok(out)
            })
            .await?;
        rows.iter()
            .map(|json| serde_json::from_str(json).map_err(err))
            .collect()
    }

    async fn add_popularity(
        &self,
        site: &str,
        contributions: &[(String, f64, i64)],
        half_life: HalfLife,
    ) -> StoreResult<()> {
        let site = site.to_owned();
        let contributions = contributions.to_vec();
        self.blocking(move |db| {
            let tx = db.begin_write()?;
            {
                let mut t = tx.open_table(POPULARITY)?;
                for (item, w, at) in &contributions {
                    let key = (site.as_str(), item.as_str());
                    let current = t.get(key)?.map(|v| {
                        let (value, at_ms) = v.value();
                        DecayedScore { value, at_ms }
                    });
                    let mut score = current.unwrap_or_default();
                    score.add(*w, *at, half_life);
                    t.insert(key, (score.value, score.at_ms))?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn popularity(&self, site: &str) -> StoreResult<HashMap<String, DecayedScore>> {
        let site = site.to_owned();
        self.blocking(move |db| {
            let t = db.begin_read()?.open_table(POPULARITY)?;
            let mut out = HashMap::new();
            for row in t.range((site.as_str(), "")..)? {
                let (k, v) = row?;
                let (row_site, item) = k.value();
                if row_site != site {
                    break;
                }
                let (value, at_ms) = v.value();
                out.insert(item.to_owned(), DecayedScore { value, at_ms });
            }
            Ok(out)
        })
        .await
    }

    async fn set_attributes(&self, site: &str, user: &str, attrs: &Attributes) -> StoreResult<()> {
        let (site, user) = (site.to_owned(), user.to_owned());
        let json = serde_json::to_string(attrs).expect("attributes serialize");
        self.blocking(move |db| {
            let tx = db.begin_write()?;
            tx.open_table(ATTRIBUTES)?
                .insert((site.as_str(), user.as_str()), json.as_str())?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn ingest_context(&self, site: &str, user: &str) -> StoreResult<IngestContext> {
        let (site, user) = (site.to_owned(), user.to_owned());
        let (forgotten, attrs) = self
            .blocking(move |db| {
                let tx = db.begin_read()?;
                let key = (site.as_str(), user.as_str());
                let forgotten = tx.open_table(FORGOTTEN)?.get(key)?.is_some();
                let attrs = tx
                    .open_table(ATTRIBUTES)?
                    .get(key)?
                    .map(|v| v.value().to_owned());
                Ok((forgotten, attrs))
            })
            .await?;
        Ok(IngestContext {
            forgotten,
            attributes: match attrs {
                Some(json) => serde_json::from_str(&json).map_err(err)?,
                None => Attributes::new(),
            },
        })
    }

    async fn profile(&self, site: &str, user: &str, _half_life: HalfLife) -> StoreResult<Profile> {
        let (site, user) = (site.to_owned(), user.to_owned());
        let (attrs, profile) = self
            .blocking(move |db| {
                let tx = db.begin_read()?;
                let key = (site.as_str(), user.as_str());
                let attrs = tx
                    .open_table(ATTRIBUTES)?
                    .get(key)?
                    .map(|v| v.value().to_owned());
                let profile = tx
                    .open_table(PROFILES)?
                    .get(key)?
                    .map(|v| v.value().to_owned());
                Ok((attrs, profile))
            })
            .await?;
        let mut p: Profile = match profile {
            Some(json) => serde_json::from_str(&json).map_err(err)?,
            None => Profile::default(),
        };
        if let Some(json) = attrs {
            p.attributes = serde_json::from_str(&json).map_err(err)?;
        }
        Ok(p)
    }

    /// The embedded mode has no consumers, hence no model: popularity ranks.
    async fn user_model(
        &self,
        _site: &str,
        _user: &str,
        _half_life: HalfLife,
    ) -> StoreResult<UserModel> {
        Ok(UserModel::default())
    }

    async fn item_vectors(&self, _site: &str) -> StoreResult<Arc<HashMap<String, Vec<f32>>>> {
        Ok(Arc::default())
    }

    async fn forget_user(&self, site: &str, user: &str) -> StoreResult<()> {
        let (site, user) = (site.to_owned(), user.to_owned());
        self.blocking(move |db| {
            let tx = db.begin_write()?;
            let key = (site.as_str(), user.as_str());
            tx.open_table(FORGOTTEN)?.insert(key, ())?;
            tx.open_table(ATTRIBUTES)?.remove(key)?;
            tx.open_table(PROFILES)?.remove(key)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn consumer_stats(&self) -> StoreResult<Vec<ConsumerStats>> {
        Ok(Vec::new())
    }
}
