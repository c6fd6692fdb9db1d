//! A recommended item as it travels from the origin's API to the edge and on
//! to the page: what the edge needs to rerank it, and the catalog metadata the
//! page shows. One definition for both tiers' JSON.

use serde::{Deserialize, Serialize};

/// One item of a recommendations reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecommendedItem {
    /// Item id.
    pub item: String,
    /// Score in 0..=1: the origin's ranking, or the edge's blend after rerank.
    pub score: f64,
    /// Categories and tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Publish time, Unix ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_at_ms: Option<i64>,
    /// The item's metadata from the catalog (title, URL…), passed through.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub metadata: serde_json::Value,
}
