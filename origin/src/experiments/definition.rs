//! What an experiment is and the rules a definition must keep: variants
//! with weights that sum to 1, rankers from a closed set, coverage, an
//! optional namespace (mutually exclusive layers), and phases. A change of
//! who goes where (seed, weights, coverage, namespace, variants) while an
//! experiment exists starts a new phase: units would move between arms, so
//! results restart and earlier phases' exposures stay apart.

use attune_core::experiments::{self, Namespace};
use attune_core::rail::Ranker;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Most variants an experiment may have.
pub const MAX_VARIANTS: usize = 10;
/// Longest experiment key or variant name, bytes.
pub const MAX_NAME_LEN: usize = 64;
/// Most experiments a site may define.
pub const MAX_EXPERIMENTS: usize = 32;

/// What ranks a variant's rails (a closed set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VariantRanker {
    /// The production ranking: personal for a reader the model knows,
    /// segment popularity for a newcomer.
    Production,
    /// Decayed popularity (site and segment) and freshness alone.
    Popularity,
    /// The production ranking without the edge's rerank: the edge serves
    /// the origin's list as it is (what the rerank adds, measured).
    ProductionNoRerank,
}

impl VariantRanker {
    /// Every ranker a variant may name.
    pub const ALL: [VariantRanker; 3] = [
        VariantRanker::Production,
        VariantRanker::Popularity,
        VariantRanker::ProductionNoRerank,
    ];

    /// The name in definitions.
    pub fn as_str(self) -> &'static str {
        match self {
            VariantRanker::Production => "production",
            VariantRanker::Popularity => "popularity",
            VariantRanker::ProductionNoRerank => "production_no_rerank",
        }
    }

    /// The ranker the rail's serve id names, given whether the model knows
    /// the reader.
    pub fn serve_ranker(self, personal: bool) -> Ranker {
        match self {
            VariantRanker::Production | VariantRanker::ProductionNoRerank if personal => {
                Ranker::Personal
            }
            _ => Ranker::Popularity,
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

/// Whether units are being assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Rails are served by arm and exposures logged.
    #[default]
    Running,
    /// Nobody is assigned; results stay readable.
    Stopped,
}

/// How the variants are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Each unit is served by one arm; arms are compared (A/B/n).
    #[default]
    Ab,
    /// Each covered unit gets one rail that merges both variants' rankings
    /// by team-draft interleaving; a click credits the ranking that placed
    /// the item. Exactly two variants; their weights are not used.
    Interleave,
}

/// One arm as a site defines it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VariantSpec {
    /// Its name (`control`, `treatment`…), unique in the experiment.
    pub name: String,
    /// What ranks its rails: `production`, `popularity` or
    /// `production_no_rerank`.
    pub ranker: String,
    /// Its share of the covered units, in (0, 1]; the weights sum to 1.
    pub weight: f64,
}

/// A mutually exclusive layer: experiments in one namespace with ranges
/// that do not overlap never share a unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NamespaceSpec {
    /// The layer's name.
    pub id: String,
    /// This experiment's share of the layer: `[start, end)` within `[0, 1]`.
    pub start: f64,
    /// Its end (exclusive).
    pub end: f64,
}

/// The body of `PUT /v1/experiments/{key}` and an entry of the sites file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExperimentSpec {
    /// Arms, the first one the control (A).
    pub variants: Vec<VariantSpec>,
    /// The share of units that take part, in (0, 1] (default 1).
    #[serde(default = "full_coverage")]
    pub coverage: f64,
    /// The hash seed (default: the experiment's key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<String>,
    /// The layer, if the experiment must not share units with others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<NamespaceSpec>,
    /// `running` (default) or `stopped`.
    #[serde(default)]
    pub status: Status,
    /// `ab` (default) or `interleave`.
    #[serde(default)]
    pub mode: Mode,
}

fn full_coverage() -> f64 {
    1.0
}

/// An arm as stored: its ranker parsed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Variant {
    pub name: String,
    pub ranker: VariantRanker,
    pub weight: f64,
}

/// An experiment as stored and served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Experiment {
    /// Its key (`[A-Za-z0-9_.-]`, 1–64 bytes).
    pub key: String,
    /// Starts at 1; each change of who goes where adds one.
    pub phase: u32,
    /// When the phase started, Unix ms.
    pub phase_started_at_ms: i64,
    pub status: Status,
    #[serde(default)]
    pub mode: Mode,
    pub seed: String,
    pub coverage: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<NamespaceSpec>,
    pub variants: Vec<Variant>,
}

/// Why a definition was refused: the field and what to change.
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid {
    pub field: String,
    pub message: String,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> Invalid {
    Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// Whether `s` is a valid key or name.
fn check_name(field: &str, s: &str) -> Result<(), Invalid> {
    let ok = !s.is_empty()
        && s.len() <= MAX_NAME_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("use 1–{MAX_NAME_LEN} of A–Z, a–z, 0–9, '_', '.', '-'"),
        ))
    }
}

impl Experiment {
    /// The experiment `spec` defines under `key`, given what was stored
    /// before (`previous`), at `now_ms`: phase 1 for a new experiment, the
    /// same phase when only the status changed, the next one when who goes
    /// where changed.
    pub fn define(
        key: &str,
        spec: &ExperimentSpec,
        previous: Option<&Experiment>,
        now_ms: i64,
    ) -> Result<Experiment, Invalid> {
        check_name("key", key)?;
        let n = spec.variants.len();
        if !(2..=MAX_VARIANTS).contains(&n) {
            return Err(invalid(
                "variants",
                format!("an experiment has 2–{MAX_VARIANTS} variants, this one has {n}"),
            ));
        }
        if spec.mode == Mode::Interleave && n != 2 {
            return Err(invalid(
                "variants",
                format!("interleaving merges exactly 2 rankings, this one has {n} variants"),
            ));
        }
        let mut variants = Vec::with_capacity(n);
        for (i, v) in spec.variants.iter().enumerate() {
            check_name(&format!("variants[{i}].name"), &v.name)?;
            if spec.variants[..i].iter().any(|w| w.name == v.name) {
                return Err(invalid(
                    format!("variants[{i}].name"),
                    format!("two variants are named {:?}", v.name),
                ));
            }
            let Some(ranker) = VariantRanker::parse(&v.ranker) else {
                let known: Vec<&str> = VariantRanker::ALL.iter().map(|r| r.as_str()).collect();
                return Err(invalid(
                    format!("variants[{i}].ranker"),
                    format!(
                        "unknown ranker {:?}: use one of {}",
                        v.ranker.chars().take(MAX_NAME_LEN).collect::<String>(),
                        known.join(", ")
                    ),
                ));
            };
            if !(v.weight > 0.0 && v.weight <= 1.0) {
                return Err(invalid(
                    format!("variants[{i}].weight"),
                    "a weight is in (0, 1]",
                ));
            }
            variants.push(Variant {
                name: v.name.clone(),
                ranker,
                weight: v.weight,
            });
        }
        let sum: f64 = variants.iter().map(|v| v.weight).sum();
        if (sum - 1.0).abs() > 1e-6 {
            return Err(invalid(
                "variants",
                format!(
                    "the weights sum to {}; they must sum to 1",
                    (sum * 1e6).round() / 1e6
                ),
            ));
        }
        if !(spec.coverage > 0.0 && spec.coverage <= 1.0) {
            return Err(invalid("coverage", "coverage is in (0, 1]"));
        }
        if let Some(ns) = &spec.namespace {
            check_name("namespace.id", &ns.id)?;
            if !(0.0 <= ns.start && ns.start < ns.end && ns.end <= 1.0) {
                return Err(invalid(
                    "namespace",
                    "a namespace range needs 0 ≤ start < end ≤ 1",
                ));
            }
        }
        let seed = spec.seed.clone().unwrap_or_else(|| key.to_owned());
        check_name("seed", &seed)?;
        let mut next = Experiment {
            key: key.to_owned(),
            phase: 1,
            phase_started_at_ms: now_ms,
            status: spec.status,
            mode: spec.mode,
            seed,
            coverage: spec.coverage,
            namespace: spec.namespace.clone(),
            variants,
        };
        if let Some(prev) = previous {
            let same_allocation = prev.mode == next.mode
                && prev.seed == next.seed
                && prev.coverage == next.coverage
                && prev.namespace == next.namespace
                && prev.variants.len() == next.variants.len()
                && prev
                    .variants
                    .iter()
                    .zip(&next.variants)
                    .all(|(a, b)| a.weight == b.weight && a.ranker == b.ranker);
            if same_allocation {
                next.phase = prev.phase;
                next.phase_started_at_ms = prev.phase_started_at_ms;
            } else {
                next.phase = prev.phase + 1;
            }
        }
        Ok(next)
    }

    /// The arm `unit` is in while the experiment runs (attune-core's
    /// assignment, the same in every tier).
    pub fn arm_of(&self, unit: &str) -> Option<usize> {
        if self.status != Status::Running {
            return None;
        }
        // Interleaving serves every covered unit the one merged rail.
        let weights: Vec<f64> = match self.mode {
            Mode::Ab => self.variants.iter().map(|v| v.weight).collect(),
            Mode::Interleave => vec![1.0],
        };
        let namespace = self.namespace.as_ref().map(|ns| Namespace {
            id: ns.id.clone(),
            start: ns.start,
            end: ns.end,
        });
        experiments::assign(
            &self.seed,
            unit,
            self.coverage,
            &weights,
            namespace.as_ref(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(weights: &[f64]) -> ExperimentSpec {
        ExperimentSpec {
            variants: weights
                .iter()
                .enumerate()
                .map(|(i, w)| VariantSpec {
                    name: format!("v{i}"),
                    ranker: if i == 0 { "production" } else { "popularity" }.into(),
                    weight: *w,
                })
                .collect(),
            coverage: 1.0,
            seed: None,
            namespace: None,
            status: Status::Running,
            mode: Mode::Ab,
        }
    }

    #[test]
    fn bad_definitions_name_their_field() {
        let cases: Vec<(ExperimentSpec, &str, &str)> = vec![
            (spec(&[0.5, 0.4]), "variants", "sum to 0.9"),
            (spec(&[1.0]), "variants", "2–10 variants"),
            (
                {
                    let mut s = spec(&[0.5, 0.5]);
                    s.variants[1].ranker = "magic".into();
                    s
                },
                "variants[1].ranker",
                "unknown ranker \"magic\": use one of production, popularity, production_no_rerank",
            ),
            (
                {
                    let mut s = spec(&[0.5, 0.5]);
                    s.variants[1].name = "v0".into();
                    s
                },
                "variants[1].name",
                "two variants",
            ),
            (
                {
                    let mut s = spec(&[0.5, 0.5]);
                    s.coverage = 0.0;
                    s
                },
                "coverage",
                "(0, 1]",
            ),
            (
                {
                    let mut s = spec(&[0.5, 0.5]);
                    s.namespace = Some(NamespaceSpec {
                        id: "rails".into(),
                        start: 0.6,
                        end: 0.4,
                    });
                    s
                },
                "namespace",
                "start < end",
            ),
        ];
        for (s, field, words) in cases {
            let e = Experiment::define("exp", &s, None, 0).unwrap_err();
            assert_eq!(e.field, field, "{e:?}");
            assert!(e.message.contains(words), "{e:?}");
        }
        let e = Experiment::define("no spaces", &spec(&[0.5, 0.5]), None, 0).unwrap_err();
        assert_eq!(e.field, "key");
        let mut three = spec(&[0.3, 0.3, 0.4]);
        three.mode = Mode::Interleave;
        let e = Experiment::define("exp", &three, None, 0).unwrap_err();
        assert!(e.message.contains("exactly 2 rankings"), "{e:?}");
    }

    #[test]
    fn changing_who_goes_where_starts_a_new_phase_and_stopping_does_not() {
        let first = Experiment::define("exp", &spec(&[0.5, 0.5]), None, 10).unwrap();
        assert_eq!((first.phase, first.phase_started_at_ms), (1, 10));
        let mut stopped = spec(&[0.5, 0.5]);
        stopped.status = Status::Stopped;
        let same = Experiment::define("exp", &stopped, Some(&first), 20).unwrap();
        assert_eq!((same.phase, same.phase_started_at_ms), (1, 10));
        assert_eq!(
            same.arm_of("anyone"),
            None,
            "a stopped experiment assigns no one"
        );
        let moved = Experiment::define("exp", &spec(&[0.3, 0.7]), Some(&same), 30).unwrap();
        assert_eq!((moved.phase, moved.phase_started_at_ms), (2, 30));
        let mut recovered = spec(&[0.3, 0.7]);
        recovered.coverage = 0.5;
        let again = Experiment::define("exp", &recovered, Some(&moved), 40).unwrap();
        assert_eq!(again.phase, 3);
    }

    #[test]
    fn a_running_experiment_assigns_as_attune_core_does() {
        let e = Experiment::define("exp", &spec(&[0.25, 0.75]), None, 0).unwrap();
        for i in 0..500 {
            let unit = format!("u{i}");
            assert_eq!(
                e.arm_of(&unit),
                experiments::assign("exp", &unit, 1.0, &[0.25, 0.75], None)
            );
        }
    }
}
