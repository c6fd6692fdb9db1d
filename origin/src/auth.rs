//! Who may do what.
//!
//! - **Site keys** are public and write-only: a batch names its site, and the
//!   site's CORS allowlist limits which pages may send it.
//! - **API keys** are secret, for a site's servers, mobile back ends and the
//!   edge: catalog writes and any user's data of that site.
//! - **User tokens** let a browser or app read its own user's data only. A site's
//!   back end mints them (or runs `attune-origin mint-token`):
//!
//!   ```text
//!   token = "v1." + site_key + "." + user_id + "." + expiry_unix_seconds + "." + signature
//!   signature = base64url_nopad(HMAC-SHA256(token_secret, "v1." + site_key + "." + user_id + "." + expiry))
//!   ```
//!
//!   Site keys cannot contain `.`; user ids may (they are what lies between the
//!   site and the expiry). Anonymous visitors are the user `anon:<anonymous_id>`.
//!
//!   Revocation is by expiry and rotation: tokens are short-lived (the back
//!   end mints one per session), and a site rotates its secret by moving the
//!   old one to `retired_token_secrets` (its tokens still verify) and
//!   removing it once their expiry has passed — or at once, to revoke every
//!   token it signed (a leak). Forgetting a user (`DELETE /v1/users/…`)
//!   removes their data whatever tokens remain.
//!
//!   Why not a JWT or PASETO: the format is the site's to implement in its
//!   own back end, in any language, and this one is one HMAC call with no
//!   header to parse, so no algorithm can be chosen by the token (JWT's
//!   `alg` confusions); the crypto is the `hmac` and `sha2` crates, checked
//!   in constant time (`verify_slice`), in `attune_core::access` so that the
//!   edge checks tokens exactly as the origin does. An HS256 JWT of the same claims
//!   (`iss`, `sub`, `exp`) is 1.8× the bytes: 189 against 104 for an
//!   anonymous id, on every request that carries it.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{bail, Result};
use attune_core::access;
pub use attune_core::access::{mint_token, TokenError};
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};

use crate::clock::now_s;
use crate::config::SiteConfig;
use crate::error::ApiError;
use crate::AppState;

pub use attune_core::routing::anonymous_user;

/// A configured site.
#[derive(Debug)]
pub struct Site {
    /// Public key.
    pub key: String,
    /// The current secret first, then retired ones still honoured.
    token_secrets: Vec<Vec<u8>>,
    allowed_origins: Vec<String>,
    /// Its own Segment `track` names (`config::SegmentMapping`).
    pub segment: crate::config::SegmentMapping,
}

impl Site {
    /// True when a browser page at `origin` may call for this site.
    pub fn allows_origin(&self, origin: &str) -> bool {
        access::origin_allowed(&self.allowed_origins, origin)
    }

    /// Checks a user token of this site and returns its user id.
    pub fn verify_token(&self, token: &str, now_s: u64) -> Result<String, TokenError> {
        access::verify_token(token, &self.key, &self.token_secrets, now_s)
    }
}

/// Every configured site, by public key and by (hashed) API key.
#[derive(Debug, Default)]
pub struct Sites {
    by_key: HashMap<String, Arc<Site>>,
    by_api_key_hash: HashMap<[u8; 32], Arc<Site>>,
}

fn api_key_hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

impl Sites {
    /// Checks and indexes the configured sites.
    pub fn new(configs: &[SiteConfig]) -> Result<Self> {
        let mut sites = Sites::default();
        for c in configs {
            if c.site_key.is_empty()
                || !c
                    .site_key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                bail!(
                    "site key `{}` must be non-empty letters, digits, `-` or `_`",
                    c.site_key
                );
            }
            let secrets = std::iter::once(&c.token_secret).chain(&c.retired_token_secrets);
            if c.api_key.len() < 16 || secrets.clone().any(|s| s.len() < 16) {
                bail!(
                    "site `{}`: api_key, token_secret and retired_token_secrets need at least \
                     16 characters each",
                    c.site_key
                );
            }
            let site = Arc::new(Site {
                key: c.site_key.clone(),
                token_secrets: secrets.map(|s| s.as_bytes().to_vec()).collect(),
                allowed_origins: c.allowed_origins.clone(),
                segment: c.segment.clone(),
            });
            if sites
                .by_key
                .insert(c.site_key.clone(), site.clone())
                .is_some()
            {
                bail!("site `{}` is configured twice", c.site_key);
            }
            sites.by_api_key_hash.insert(api_key_hash(&c.api_key), site);
        }
        Ok(sites)
    }

    /// Every configured site key.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.by_key.keys().map(String::as_str)
    }

    /// The site with this public key.
    pub fn by_key(&self, key: &str) -> Option<&Arc<Site>> {
        self.by_key.get(key)
    }

    /// The site whose API key this is.
    pub fn by_api_key(&self, key: &str) -> Option<&Arc<Site>> {
        self.by_api_key_hash.get(&api_key_hash(key))
    }

    /// True when any site allows browser calls from `origin` (for CORS preflight;
    /// each request is then checked against its own site).
    pub fn any_allows_origin(&self, origin: &str) -> bool {
        self.by_key.values().any(|s| s.allows_origin(origin))
    }
}

/// An authenticated caller of a read or admin endpoint.
#[derive(Debug, Clone)]
pub enum Caller {
    /// A browser or app holding one user's token.
    User {
        /// The user's site.
        site: Arc<Site>,
        /// The user.
        user: String,
    },
    /// A server holding the site's API key.
    Server {
        /// The site.
        site: Arc<Site>,
    },
}

impl Caller {
    /// The caller's site.
    pub fn site(&self) -> &Arc<Site> {
        match self {
            Caller::User { site, .. } | Caller::Server { site } => site,
        }
    }

    /// The user whose data is read: a token reads its own user (and may name
    /// no other); an API key must name one.
    pub fn user(&self, requested: Option<&str>) -> Result<String, ApiError> {
        match (self, requested) {
            (Caller::User { user, .. }, None) => Ok(user.clone()),
            (Caller::User { user, .. }, Some(r)) if r == user => Ok(user.clone()),
            (Caller::User { .. }, Some(_)) => Err(ApiError::forbidden(
                "a user token reads only its own user's data",
            )),
            (Caller::Server { .. }, Some(r)) => Ok(r.to_owned()),
            (Caller::Server { .. }, None) => Err(ApiError::bad_request(
                "missing_user",
                "with an API key, name the user: ?user=<id>",
            )
            .field("user")),
        }
    }

    /// Fails unless the caller holds the site's API key.
    pub fn require_server(&self) -> Result<&Arc<Site>, ApiError> {
        match self {
            Caller::Server { site } => Ok(site),
            Caller::User { .. } => Err(ApiError::forbidden(
                "this endpoint needs the site's API key, not a user token",
            )),
        }
    }

    /// The rate-limit key: the user, or the API key's site.
    pub fn rate_key(&self) -> String {
        match self {
            Caller::User { site, user } => format!("user:{}/{user}", site.key),
            Caller::Server { site } => format!("api:{}", site.key),
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let bearer = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                ApiError::unauthorized("send `Authorization: Bearer <user token or API key>`")
            })?;
        let caller = if bearer.starts_with("v1.") {
            let site_key = access::token_site(bearer)
                .ok_or_else(|| ApiError::unauthorized(TokenError::Malformed.to_string()))?;
            let site = state
                .sites
                .by_key(site_key)
                .ok_or_else(|| ApiError::unauthorized("the user token names an unknown site"))?;
            let user = site
                .verify_token(bearer, now_s())
                .map_err(|e| ApiError::unauthorized(e.to_string()))?;
            Caller::User {
                site: site.clone(),
                user,
            }
        } else {
            let site = state
                .sites
                .by_api_key_hash
                .get(&api_key_hash(bearer))
                .ok_or_else(|| ApiError::unauthorized("unknown API key"))?;
            Caller::Server { site: site.clone() }
        };
        state.rate_limits.check_key(&caller.rate_key())?;
        Ok(caller)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rotation_keeps_old_tokens_until_their_secret_is_removed() {
        let config = |retired: Vec<String>| SiteConfig {
            site_key: "news".into(),
            api_key: "an-api-key-of-16-chars".into(),
            token_secret: "the-new-secret-value".into(),
            retired_token_secrets: retired,
            allowed_origins: Vec::new(),
            weights: Default::default(),
            experiments: Default::default(),
            segment: Default::default(),
        };
        let old = mint_token("news", "u1", b"the-old-secret-value", 1000);
        let new = mint_token("news", "u1", b"the-new-secret-value", 1000);
        let rotating = Sites::new(&[config(vec!["the-old-secret-value".into()])]).unwrap();
        let site = rotating.by_key("news").unwrap();
        assert_eq!(site.verify_token(&old, 0), Ok("u1".into()));
        assert_eq!(site.verify_token(&new, 0), Ok("u1".into()));
        let rotated = Sites::new(&[config(Vec::new())]).unwrap();
        let site = rotated.by_key("news").unwrap();
        assert_eq!(site.verify_token(&old, 0), Err(TokenError::BadSignature));
        assert_eq!(site.verify_token(&new, 0), Ok("u1".into()));
        let short = Sites::new(&[config(vec!["short".into()])]).unwrap_err();
        assert!(short.to_string().contains("16 characters"), "{short}");
    }
}
