//! The server clock, in the Unix milliseconds every record and score uses.

/// Now, Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Now, Unix seconds (token expiries).
pub fn now_s() -> u64 {
    (now_ms() / 1000).max(0) as u64
}
