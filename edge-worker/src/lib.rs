//! # attune-edge
//!
//! The Cloudflare Worker (workers-rs) in front of the origin:
//!
//! - `POST /v1/collect` decodes the tracker's batch with attune-core, hands
//!   the untouched batch to the origin and answers with the origin's answer —
//!   a 202 only once the events are stored; with it, the person's decayed tag
//!   affinities move on (in a signed cookie, see [`state`]).
//! - `GET /v1/recommendations` takes the person's candidate list from the
//!   origin, cached at the edge ([`candidates::freshness`]: TTL, then
//!   stale-while-revalidate, then stale-if-error), reranks it per request with
//!   attune-core's rerank and the cookie's affinities, and answers top-K.
//!
//! [`intake`], [`state`] and [`candidates`] are plain Rust, tested natively
//! (the intake and the cookie fuzzed with arbitrary bytes); the
//! runtime glue in `worker/` builds only for wasm32.
#![forbid(unsafe_code)]

pub mod candidates;
pub mod fixture;
pub mod intake;
pub mod state;

#[cfg(target_arch = "wasm32")]
mod worker;
