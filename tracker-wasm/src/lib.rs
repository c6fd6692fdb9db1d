//! # attune-tracker
//!
//! The browser tracker, compiled to WebAssembly and wrapped by the npm package
//! in `js/`. It will capture page views, clicks, scroll depth, visible dwell and
//! impressions and deliver them as attune-core MessagePack batches; capture and
//! delivery are not built yet (issue 3). What exists is the build path: this
//! crate compiles for `wasm32-unknown-unknown` with wasm-bindgen against
//! attune-core, and exports the schema version it speaks.

use wasm_bindgen::prelude::wasm_bindgen;

/// The wire schema version this tracker writes.
#[wasm_bindgen(js_name = schemaVersion)]
pub fn schema_version() -> u8 {
    attune_core::SCHEMA_VERSION
}
