//! # attune-edge
//!
//! The Cloudflare Worker (workers-rs) that receives tracker batches, keeps
//! per-user decayed interest scores, reranks cached candidate lists per request
//! and forwards events to the origin. Not built yet (issue 6): this crate only
//! fixes its place in the workspace and its one dependency, attune-core, whose
//! decay and rerank it will call.
#![forbid(unsafe_code)]
