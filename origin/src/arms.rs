//! Which experiment arm serves a reader's rail, and its exposure.
//!
//! The first running experiment (by key) that assigns the reader decides
//! the rail; experiments meant to run side by side share a namespace with
//! ranges that do not overlap, so a reader is in one at most. The decision
//! is attune-core's assignment, so the edge and the tracker can make it too.
//!
//! An exposure is logged where the decision takes effect: here, when the
//! rail is served, once per (unit, experiment, phase) per process — on the
//! `attune.exposures` topic with Kafka (the consumers keep the first per
//! unit and phase, so copies from other processes or a retry change
//! nothing), in the store directly in embedded mode (its redb commit is the
//! log). It carries the reader's counters before it: the baseline their
//! metrics are counted from, and CUPED's pre-period.

use std::sync::Arc;
use std::time::Duration;

use attune_core::routing::{partition_key, COLD_LIST_USER, EXPOSURES};
use bytes::Bytes;
use moka::future::Cache;

use crate::clock::now_ms;
use crate::event_log::{EventLog, LogRecord};
use crate::experiments::definition::Experiment;
use crate::experiments::{Exposure, EXPOSURE_VERSION};
use crate::store::{Store, StoreError, StoreResult};

/// How long a site's definitions are reused before they are read again.
pub const DEFINITIONS_TTL: Duration = Duration::from_secs(1);

/// The arm that serves a rail.
#[derive(Debug, Clone)]
pub struct Served {
    pub experiment: Arc<Experiment>,
    pub arm: usize,
}

/// Where exposures go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExposureSink {
    /// The `attune.exposures` topic (Kafka mode).
    Log,
    /// The store directly (embedded mode).
    Store,
}

/// Definitions cached per site, and which exposures this process has logged.
pub struct Arms {
    sink: ExposureSink,
    definitions: Cache<String, Arc<Vec<Arc<Experiment>>>>,
    logged: Cache<(String, String, u32, String), ()>,
}

impl Arms {
    pub fn new(sink: ExposureSink) -> Self {
        Arms {
            sink,
            definitions: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(DEFINITIONS_TTL)
                .build(),
            logged: Cache::builder().max_capacity(1_000_000).build(),
        }
    }

    /// Drops a site's cached definitions (after a change through this process).
    pub async fn invalidate(&self, site: &str) {
        self.definitions.invalidate(site).await;
    }

    /// The arm that serves `unit`'s rail on `site`, if any experiment runs
    /// and assigns it.
    pub async fn choose(
        &self,
        store: &dyn Store,
        site: &str,
        unit: &str,
    ) -> StoreResult<Option<Served>> {
        if unit == COLD_LIST_USER {
            return Ok(None);
        }
        let definitions = self
            .definitions
            .try_get_with(site.to_owned(), async {
                let all = store.experiments(site).await?;
                Ok::<_, StoreError>(Arc::new(all.into_iter().map(Arc::new).collect()))
            })
            .await
            .map_err(|e: Arc<StoreError>| StoreError(e.0.clone()))?;
        Ok(definitions.iter().find_map(|e| {
            Some(Served {
                experiment: e.clone(),
                arm: e.arm_of(unit)?,
            })
        }))
    }

    /// Logs `unit`'s exposure to `served` unless this process already has.
    /// A failure does not fail the serve: the reader gets the rail, the next
    /// serve tries again, and a lasting loss shows as a sample-ratio
    /// mismatch in the results.
    pub async fn expose(
        &self,
        store: &dyn Store,
        log: &dyn EventLog,
        site: &str,
        unit: &str,
        served: &Served,
    ) {
        let e = &served.experiment;
        let id = (site.to_owned(), e.key.clone(), e.phase, unit.to_owned());
        if self.logged.contains_key(&id) {
            return;
        }
        let outcome = match self.log_exposure(store, log, site, unit, served).await {
            Ok(()) => {
                self.logged.insert(id, ()).await;
                "logged"
            }
            Err(err) => {
                tracing::warn!(experiment = %e.key, "exposure not logged: {err}");
                "failed"
            }
        };
        metrics::counter!("attune_experiment_exposures_total", "outcome" => outcome).increment(1);
    }

    async fn log_exposure(
        &self,
        store: &dyn Store,
        log: &dyn EventLog,
        site: &str,
        unit: &str,
        served: &Served,
    ) -> Result<(), String> {
        let baseline = store
            .unit_counters(site, &[unit.to_owned()])
            .await
            .map_err(|e| e.to_string())?
            .pop()
            .unwrap_or_default();
        let exposure = Exposure {
            v: EXPOSURE_VERSION,
            site: site.to_owned(),
            experiment: served.experiment.key.clone(),
            phase: served.experiment.phase,
            unit: unit.to_owned(),
            arm: served.arm as u32,
            at_ms: now_ms(),
            baseline,
        };
        match self.sink {
            ExposureSink::Store => store
                .record_exposure(&exposure)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            ExposureSink::Log => {
                let payload = serde_json::to_vec(&exposure).map_err(|e| e.to_string())?;
                let record = LogRecord {
                    topic: EXPOSURES,
                    key: partition_key(site, unit).into(),
                    payload: Bytes::from(payload),
                };
                log.append(vec![record])
                    .await
                    .pop()
                    .unwrap_or(Err(crate::event_log::AppendError::Unavailable(
                        "no acknowledgement".into(),
                    )))
                    .map_err(|e| e.to_string())
            }
        }
    }
}
