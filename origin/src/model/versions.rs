//! Model versions: each version's factors live under their own keys, one
//! pointer says which version serves and which the consumers train, and a
//! history of that pointer makes rollback one step.
//!
//! Version 1 is the online model every store starts with (its keys are the
//! unversioned ones, so a store from before versions keeps its factors).
//! `attune-origin retrain` adds versions 2, 3, … fitted from the log up to
//! its offsets ([`VersionInfo::trained_through`]). A version's online
//! updates are guarded by its own watermarks, and its consumers record how
//! far it has learned each partition, so a version that starts serving —
//! new, or back after a rollback — catches up by replay from where it
//! stopped: nothing lost, nothing learned twice.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::MfConfig;

/// The version every store starts with.
pub const FIRST: u32 = 1;

/// How a version was fitted (and how it learns online once it serves).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Recipe {
    /// Passes over the training events, in time order (1 = the online model).
    pub epochs: u32,
    /// L2 regularization of every step, chosen on a holdout for retrained versions.
    pub regularization: f32,
    /// SGD step size.
    pub learning_rate: f32,
}

impl Recipe {
    /// The online model's recipe: one pass, the default hyper-parameters.
    pub fn online() -> Self {
        let cfg = MfConfig::default();
        Recipe {
            epochs: 1,
            regularization: cfg.regularization,
            learning_rate: cfg.learning_rate,
        }
    }

    /// The step configuration of this recipe.
    pub fn config(&self) -> MfConfig {
        MfConfig {
            regularization: self.regularization,
            learning_rate: self.learning_rate,
            ..MfConfig::default()
        }
    }
}

/// How a retrained version compared with the champion on the holdout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Comparison {
    /// The version it was compared with.
    pub champion: u32,
    /// Holdout engagements both were checked on.
    pub checks: u64,
    /// HR@10 of the champion's recipe on them.
    pub champion_hr10: f64,
    /// HR@10 of this version on them.
    pub challenger_hr10: f64,
    /// The lower end of the 95 % interval of the paired difference
    /// (challenger − champion).
    pub diff_low: f64,
    /// The upper end of that interval.
    pub diff_high: f64,
    /// Whether the interval clears the required margin.
    pub better: bool,
}

/// What the registry knows of one version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VersionInfo {
    /// Its number.
    pub version: u32,
    /// When it was made, Unix ms.
    pub created_ms: i64,
    /// How it was fitted.
    pub recipe: Recipe,
    /// `topic:partition` → the first offset it did not learn in its fit: the
    /// consumers teach it only from there. Empty for version 1.
    #[serde(default)]
    pub trained_through: BTreeMap<String, i64>,
    /// Events its fit learned.
    #[serde(default)]
    pub fitted_events: u64,
    /// The comparison that decided on it (retrained versions).
    #[serde(default)]
    pub comparison: Option<Comparison>,
}

impl VersionInfo {
    /// Version 1 as every store starts: the online model from the first event.
    pub fn first() -> Self {
        VersionInfo {
            version: FIRST,
            created_ms: 0,
            recipe: Recipe::online(),
            trained_through: BTreeMap::new(),
            fitted_events: 0,
            comparison: None,
        }
    }

    /// Whether the consumers teach this version the record at `offset` of
    /// `tp`: not if its fit already learned it.
    pub fn teaches(&self, tp: &str, offset: i64) -> bool {
        self.trained_through.get(tp).is_none_or(|&o| offset >= o)
    }
}

/// The key of `base` for `version` (version 1 keeps the unversioned keys).
pub fn versioned(base: &str, version: u32) -> String {
    if version == FIRST {
        base.to_owned()
    } else {
        format!("{base}:v{version}")
    }
}

/// The version serving before the current one, from the pointer's history
/// (oldest first, current last): what a rollback goes back to.
pub fn previous(history: &[u32]) -> Option<u32> {
    let current = *history.last()?;
    history.iter().rev().copied().find(|&v| v != current)
}

/// The versions, which one serves, and the pointer's history: the
/// `attune:model` hash in Redis, one record in the embedded store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Registry {
    /// The version that serves and that the consumers train.
    pub serving: u32,
    /// The versions that served, oldest first, the current one last.
    pub history: Vec<u32>,
    /// Every version, by number.
    pub versions: Vec<VersionInfo>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            serving: FIRST,
            history: vec![FIRST],
            versions: vec![VersionInfo::first()],
        }
    }
}

/// Field names of the registry hash.
pub const SERVING_FIELD: &str = "serving";
/// The pointer's history (JSON list).
pub const HISTORY_FIELD: &str = "history";

/// The hash field of a version's [`VersionInfo`].
pub fn info_field(version: u32) -> String {
    format!("v{version}")
}

impl Registry {
    /// Read from the registry hash's fields (an empty hash: a store that
    /// only ever had version 1).
    pub fn from_fields(fields: &std::collections::HashMap<String, String>) -> Self {
        let mut r = Registry::default();
        if let Some(v) = fields.get(SERVING_FIELD).and_then(|v| v.parse().ok()) {
            r.serving = v;
        }
        if let Some(h) = fields
            .get(HISTORY_FIELD)
            .and_then(|h| serde_json::from_str(h).ok())
        {
            r.history = h;
        }
        let mut versions: BTreeMap<u32, VersionInfo> = fields
            .iter()
            .filter(|(k, _)| k.starts_with('v'))
            .filter_map(|(_, json)| serde_json::from_str::<VersionInfo>(json).ok())
            .map(|v| (v.version, v))
            .collect();
        versions.entry(FIRST).or_insert_with(VersionInfo::first);
        r.versions = versions.into_values().collect();
        r
    }

    /// A version's record.
    pub fn get(&self, version: u32) -> Option<&VersionInfo> {
        self.versions.iter().find(|v| v.version == version)
    }

    /// The serving version's record.
    pub fn serving_info(&self) -> VersionInfo {
        self.get(self.serving)
            .cloned()
            .unwrap_or_else(VersionInfo::first)
    }

    /// The registry after `version` starts serving, or why it cannot.
    pub fn promote(&self, version: u32) -> Result<Registry, String> {
        if self.get(version).is_none() {
            return Err(format!(
                "there is no model version {version}: `attune-origin model list` shows them"
            ));
        }
        let mut next = self.clone();
        next.serving = version;
        if next.history.last() != Some(&version) {
            next.history.push(version);
        }
        Ok(next)
    }

    /// The registry after going back to the version that served before.
    pub fn rollback(&self) -> Result<Registry, String> {
        let to = previous(&self.history)
            .ok_or("no version served before this one: nothing to roll back to")?;
        self.promote(to)
    }

    /// The pointer's fields to write after [`Self::promote`] or [`Self::rollback`].
    pub fn pointer_fields(&self) -> [(String, String); 2] {
        [
            (SERVING_FIELD.to_owned(), self.serving.to_string()),
            (
                HISTORY_FIELD.to_owned(),
                serde_json::to_string(&self.history).expect("serializes"),
            ),
        ]
    }

    /// The number the next version gets.
    pub fn next_version(&self) -> u32 {
        self.versions
            .iter()
            .map(|v| v.version)
            .max()
            .unwrap_or(FIRST)
            + 1
    }
}

/// The registry as a table for `attune-origin model list`.
pub fn render(r: &Registry) -> String {
    use std::fmt::Write as _;
    let mut s = String::from(
        "   version  recipe                     fitted events  holdout HR@10 (champion → this)\n",
    );
    for v in &r.versions {
        let mark = if v.version == r.serving { "*" } else { " " };
        let recipe = format!(
            "{} epochs, reg {}",
            v.recipe.epochs, v.recipe.regularization
        );
        let holdout = v.comparison.as_ref().map_or_else(
            || "-".to_owned(),
            |c| {
                format!(
                    "v{} {:.3} → {:.3} ({} checks{})",
                    c.champion,
                    c.champion_hr10,
                    c.challenger_hr10,
                    c.checks,
                    if c.better { ", better" } else { ", not better" }
                )
            },
        );
        let _ = writeln!(
            s,
            "{mark} {:>8}  {recipe:<25}  {:>13}  {holdout}",
            v.version, v.fitted_events
        );
    }
    let _ = writeln!(s, "* serves; history: {:?}", r.history);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_promotes_rolls_back_and_reads_back() {
        let empty = Registry::from_fields(&Default::default());
        assert_eq!(empty, Registry::default());
        assert!(empty.rollback().is_err());
        assert!(empty.promote(2).unwrap_err().contains("no model version 2"));
        let mut fields: std::collections::HashMap<String, String> = Default::default();
        let two = VersionInfo {
            version: 2,
            ..VersionInfo::first()
        };
        fields.insert(info_field(2), serde_json::to_string(&two).unwrap());
        let r = Registry::from_fields(&fields);
        assert_eq!(r.next_version(), 3);
        let promoted = r.promote(2).unwrap();
        assert_eq!((promoted.serving, &promoted.history[..]), (2, &[1, 2][..]));
        fields.extend(promoted.pointer_fields());
        let read = Registry::from_fields(&fields);
        assert_eq!(read.serving_info(), two);
        let back = read.rollback().unwrap();
        assert_eq!((back.serving, &back.history[..]), (1, &[1, 2, 1][..]));
    }

    #[test]
    fn version_one_keeps_the_unversioned_keys() {
        assert_eq!(versioned("vector", 1), "vector");
        assert_eq!(versioned("vector", 3), "vector:v3");
    }

    #[test]
    fn rollback_goes_to_the_last_different_version() {
        assert_eq!(previous(&[]), None);
        assert_eq!(previous(&[1]), None);
        assert_eq!(previous(&[1, 2]), Some(1));
        assert_eq!(previous(&[1, 2, 3, 2]), Some(3));
        assert_eq!(previous(&[1, 2, 2]), Some(1));
    }

    #[test]
    fn a_version_is_taught_only_past_its_fit() {
        let mut v = VersionInfo::first();
        assert!(v.teaches("t:0", 0));
        v.trained_through.insert("t:0".into(), 10);
        assert!(!v.teaches("t:0", 9));
        assert!(v.teaches("t:0", 10));
        assert!(v.teaches("t:1", 0), "a partition the fit never saw");
    }
}
