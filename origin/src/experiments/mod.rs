//! Experiments: which arm a unit is in comes from attune-core's
//! `experiments` (the same in every tier); this module holds what only the
//! origin needs — the statistics that turn per-unit metrics into results.
//!
//! - [`stats`]: per-arm moments, the sample-ratio-mismatch check, fixed-horizon
//!   and always-valid (safe to peek) intervals, the plain-words decision.

pub mod stats;
