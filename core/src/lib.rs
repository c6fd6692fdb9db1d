//! # attune-core
//!
//! The one definition of Attune's protocol and scoring math, compiled into every
//! tier: the browser tracker (wasm32), the edge worker (wasm32 in workerd) and the
//! origin (native). Nothing here does I/O, so the same inputs give the same bytes
//! and the same scores everywhere; `testdata/golden.json` pins both.
//!
//! - [`event`]: what a person did ([`Event`], [`Batch`]) in typed form.
//! - [`codec`]: MessagePack (compact, the tracker's format) and JSON (debugging,
//!   mobile clients) with explicit [`Limits`] and errors that name the field.
//! - [`weights`]: how much each interaction says about interest.
//! - [`decay`]: exponentially decayed scores that merge in any order.
//! - [`rerank`]: blends a candidate's base score with decayed tag affinities.
//! - [`routing`]: Kafka topics per kind and the per-user partition key.
//! - [`rail`]: serve ids, the rankers they name, position buckets.
//! - `segment` (feature `segments`): the cold-start segments a newcomer is
//!   ranked by (device class, time of day, referrer kind, attributes).
//! - [`recommended`]: the recommended item shared by the origin's and the
//!   edge's replies.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod access;
pub mod codec;
pub mod decay;
pub mod event;
pub mod experiments;
pub mod limits;
pub mod rail;
pub mod recommended;
pub mod rerank;
pub mod routing;
#[cfg(feature = "segments")]
pub mod segment;
pub mod weights;

pub use codec::{DecodeError, Problem};
pub use decay::{Affinities, DecayedScore, HalfLife};
pub use event::{Batch, Context, DeviceClass, Event, EventKind, Interaction, Slot, Viewport};
pub use limits::Limits;
pub use recommended::RecommendedItem;
pub use rerank::{rerank, Candidate, Ranked, RerankConfig};
pub use weights::FeedbackWeights;

/// The wire schema version this build writes and reads.
pub const SCHEMA_VERSION: u8 = 1;
