//! The REST API for mobile clients, site back ends and the edge. Handlers are
//! plain functions; `Caller` (in `auth`) decides whose data they may touch.

pub mod experiments;
pub mod items;
pub mod models;
pub mod profile;
pub mod recommendations;
pub mod users;

use crate::error::ApiError;

/// Ids of items and users: printable ASCII without spaces or `/`, ≤ 128 bytes
/// (the same rule attune-core applies to ids in batches).
pub fn check_id(field: &str, id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_graphic() && b != b'/') {
        return Err(ApiError::bad_request(
            "invalid_id",
            format!("`{field}` must be 1–128 printable ASCII characters without spaces or `/`"),
        )
        .field(field));
    }
    Ok(())
}
