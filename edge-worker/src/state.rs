//! Per-user state held at the edge: decayed tag affinities and recent clicks,
//! carried by the browser in one HMAC-signed cookie.
//!
//! Why a cookie rather than a Durable Object: the state is small (≤ 16 tags, ≤
//! 8 clicks: well under 1 KiB, see the size test), it arrives with every request
//! at no extra round trip, and it needs no storage or coordination at the edge.
//! The cost is that a person's state is per browser, which is also what the
//! anonymous id is. The signature makes tampered or foreign state detectable:
//! such state is dropped and the person starts fresh, never trusted.

use attune_core::{Affinities, EventKind, HalfLife};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// Cookie name.
pub const COOKIE: &str = "attune_state";
/// Most tags kept (the strongest at the time of the last update).
pub const MAX_TAGS: usize = 16;
/// Most recent clicks kept.
pub const MAX_CLICKS: usize = 8;
/// Largest cookie value accepted.
pub const MAX_COOKIE_BYTES: usize = 3000;

/// What the edge knows about one browser.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EdgeState {
    /// Site the state belongs to.
    pub site: String,
    /// The browser's anonymous id.
    pub anonymous_id: String,
    /// Decayed interest per tag.
    pub affinities: Affinities,
    /// Recently clicked items with their time (edge clock), newest last.
    pub clicks: Vec<(String, i64)>,
}

/// Why a cookie was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateError {
    /// Not `payload.signature`, not base64, too large or not decodable.
    Malformed,
    /// The signature does not match: tampered, or signed with another secret.
    BadSignature,
}

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &[u8], payload: &str) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("any key length");
    mac.update(payload.as_bytes());
    mac
}

impl EdgeState {
    /// A new, empty state.
    pub fn new(site: &str, anonymous_id: &str) -> Self {
        EdgeState {
            site: site.to_owned(),
            anonymous_id: anonymous_id.to_owned(),
            affinities: Affinities::new(),
            clicks: Vec::new(),
        }
    }

    /// Signs and encodes the state as a cookie value.
    pub fn seal(&self, secret: &[u8]) -> String {
        let bytes = rmp_serde::to_vec(self).expect("state serializes");
        let payload = URL_SAFE_NO_PAD.encode(bytes);
        let sig = URL_SAFE_NO_PAD.encode(mac(secret, &payload).finalize().into_bytes());
        format!("{payload}.{sig}")
    }

    /// Verifies and decodes a cookie value.
    pub fn open(value: &str, secret: &[u8]) -> Result<Self, StateError> {
        if value.len() > MAX_COOKIE_BYTES {
            return Err(StateError::Malformed);
        }
        let (payload, sig) = value.split_once('.').ok_or(StateError::Malformed)?;
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| StateError::Malformed)?;
        mac(secret, payload)
            .verify_slice(&sig)
            .map_err(|_| StateError::BadSignature)?;
        let bytes = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| StateError::Malformed)?;
        rmp_serde::from_slice(&bytes).map_err(|_| StateError::Malformed)
    }

    /// Records an interaction with `item` (whose tags are `tags`) at `t_ms`.
    pub fn record(
        &mut self,
        kind: EventKind,
        weight: f64,
        item: &str,
        tags: &[String],
        t_ms: i64,
        half_life: HalfLife,
    ) {
        if weight != 0.0 {
            self.affinities
                .record(tags.iter().map(String::as_str), weight, t_ms, half_life);
        }
        if kind == EventKind::Click {
            self.clicks.retain(|(i, _)| i != item);
            self.clicks.push((item.to_owned(), t_ms));
        }
    }

    /// Bounds the state: the strongest tags at `now_ms` and the latest clicks.
    pub fn prune(&mut self, now_ms: i64, half_life: HalfLife) {
        self.affinities
            .retain_strongest(MAX_TAGS, now_ms, half_life);
        let excess = self.clicks.len().saturating_sub(MAX_CLICKS);
        self.clicks.drain(..excess);
    }

    /// True when `item` was clicked recently.
    pub fn clicked(&self, item: &str) -> bool {
        self.clicks.iter().any(|(i, _)| i == item)
    }
}

/// The value of the `attune_state` cookie in a `Cookie` header.
pub fn cookie_value(header: &str) -> Option<&str> {
    header
        .split(';')
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, v)| v)
}

/// The `Set-Cookie` header for a sealed state.
pub fn set_cookie(sealed: &str) -> String {
    format!("{COOKIE}={sealed}; Path=/; Max-Age=2592000; HttpOnly; Secure; SameSite=Lax")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"edge-state-secret-for-tests";

    fn full_state() -> EdgeState {
        let hl = HalfLife::from_hours(1.0).unwrap();
        let mut s = EdgeState::new("news", "anon-1234567890");
        for i in 0..40 {
            let tags = vec![format!("category-number-{i}"), "shared-tag".to_string()];
            s.record(
                EventKind::Click,
                3.0,
                &format!("article-{i:05}"),
                &tags,
                i * 1000,
                hl,
            );
        }
        s.prune(40_000, hl);
        s
    }

    #[test]
    fn sealed_state_opens_to_itself() {
        let s = full_state();
        assert_eq!(EdgeState::open(&s.seal(SECRET), SECRET), Ok(s));
    }

    #[test]
    fn a_full_state_stays_small() {
        let s = full_state();
        assert_eq!(s.affinities.len(), MAX_TAGS);
        assert_eq!(s.clicks.len(), MAX_CLICKS);
        let cookie = set_cookie(&s.seal(SECRET));
        assert!(cookie.len() < 1500, "cookie is {} bytes", cookie.len());
    }

    #[test]
    fn tampered_or_foreign_state_is_refused() {
        let sealed = full_state().seal(SECRET);
        let (payload, sig) = sealed.split_once('.').unwrap();
        let mut bytes = URL_SAFE_NO_PAD.decode(payload).unwrap();
        bytes[5] ^= 1;
        let forged = format!("{}.{sig}", URL_SAFE_NO_PAD.encode(bytes));
        assert_eq!(
            EdgeState::open(&forged, SECRET),
            Err(StateError::BadSignature)
        );
        assert_eq!(
            EdgeState::open(&sealed, b"another-secret"),
            Err(StateError::BadSignature)
        );
        assert_eq!(
            EdgeState::open("garbage", SECRET),
            Err(StateError::Malformed)
        );
        assert_eq!(
            EdgeState::open(&"a".repeat(5000), SECRET),
            Err(StateError::Malformed)
        );
    }

    #[test]
    fn cookie_is_found_among_others() {
        assert_eq!(
            cookie_value("a=1; attune_state=xyz.sig; b=2"),
            Some("xyz.sig")
        );
        assert_eq!(cookie_value("a=1"), None);
    }
}
