//! Who may send for a site, checked alike by the origin and the edge: the
//! pages allowed to call from browsers, and user tokens.
//!
//! A user token is `v1.<site>.<user>.<expiry_unix_s>.<signature>`, the
//! signature `base64url_nopad(HMAC-SHA256(token_secret, "v1.<site>.<user>.<expiry>"))`
//! (the origin's `auth.rs` says why this format). Site keys cannot contain
//! `.`; user ids may.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Whether a page at `origin` may call for a site allowing `allowed` (`*`: any).
pub fn origin_allowed(allowed: &[String], origin: &str) -> bool {
    allowed.iter().any(|o| o == "*" || o == origin)
}

/// The words of a refusal of a page's origin.
pub fn origin_refused(origin: &str, site: &str) -> String {
    format!(
        "pages on {origin} may not send events for site `{site}`: add it to the site's allowed_origins"
    )
}

/// Why a user token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not `v1.site.user.expiry.signature`.
    #[error("the user token is malformed (expected v1.<site>.<user>.<expiry>.<signature>)")]
    Malformed,
    /// Signed for another site.
    #[error("the user token belongs to another site")]
    OtherSite,
    /// Signed with none of the site's secrets.
    #[error("the user token's signature does not match: mint it with this site's token secret")]
    BadSignature,
    /// Past its expiry.
    #[error("the user token has expired: mint a new one")]
    Expired,
}

fn signed_part(site: &str, user: &str, exp: u64) -> String {
    format!("v1.{site}.{user}.{exp}")
}

fn split_token(token: &str) -> Option<(&str, &str, u64, &str)> {
    let rest = token.strip_prefix("v1.")?;
    let (site, rest) = rest.split_once('.')?;
    let (rest, sig) = rest.rsplit_once('.')?;
    let (user, exp) = rest.rsplit_once('.')?;
    if site.is_empty() || user.is_empty() {
        return None;
    }
    Some((site, user, exp.parse().ok()?, sig))
}

/// The site a well-formed user token names (to find its secrets).
pub fn token_site(token: &str) -> Option<&str> {
    split_token(token).map(|(site, ..)| site)
}

/// Checks a user token of `site`, signed with any of `secrets` (the current
/// one and those retired but still honoured), at `now_s`; its user id.
pub fn verify_token<S: AsRef<[u8]>>(
    token: &str,
    site: &str,
    secrets: &[S],
    now_s: u64,
) -> Result<String, TokenError> {
    let (token_site, user, exp, sig) = split_token(token).ok_or(TokenError::Malformed)?;
    if token_site != site {
        return Err(TokenError::OtherSite);
    }
    let sig = URL_SAFE_NO_PAD
        .decode(sig)
        .map_err(|_| TokenError::Malformed)?;
    let payload = signed_part(site, user, exp);
    // Constant time per secret (`verify_slice`).
    let signed_by = |secret: &S| {
        let mut mac = HmacSha256::new_from_slice(secret.as_ref()).expect("any key length");
        mac.update(payload.as_bytes());
        mac.verify_slice(&sig).is_ok()
    };
    if !secrets.iter().any(signed_by) {
        return Err(TokenError::BadSignature);
    }
    if exp < now_s {
        return Err(TokenError::Expired);
    }
    Ok(user.to_owned())
}

/// Mints a user token (what a site's back end does).
pub fn mint_token(site: &str, user: &str, secret: &[u8], exp_s: u64) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("any key length");
    let payload = signed_part(site, user, exp_s);
    mac.update(payload.as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{payload}.{sig}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRETS: &[&[u8]] = &[b"0123456789abcdef"];

    #[test]
    fn minted_tokens_verify_until_they_expire() {
        let t = mint_token("news", "u.1", SECRETS[0], 1000);
        assert_eq!(verify_token(&t, "news", SECRETS, 999), Ok("u.1".into()));
        assert_eq!(
            verify_token(&t, "news", SECRETS, 1001),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn tampered_and_foreign_tokens_are_refused() {
        let t = mint_token("news", "u1", SECRETS[0], 1000);
        let forged = t.replace(".u1.", ".u2.");
        assert_eq!(
            verify_token(&forged, "news", SECRETS, 0),
            Err(TokenError::BadSignature)
        );
        let other = mint_token("news", "u1", b"another-secret-value", 1000);
        assert_eq!(
            verify_token(&other, "news", SECRETS, 0),
            Err(TokenError::BadSignature)
        );
        let other_site = mint_token("blog", "u1", SECRETS[0], 1000);
        assert_eq!(
            verify_token(&other_site, "news", SECRETS, 0),
            Err(TokenError::OtherSite)
        );
        assert_eq!(
            verify_token("v1.news", "news", SECRETS, 0),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn origins_are_checked_against_the_list() {
        let allowed = vec!["https://news.example".to_owned()];
        assert!(origin_allowed(&allowed, "https://news.example"));
        assert!(!origin_allowed(&allowed, "https://evil.example"));
        assert!(origin_allowed(&["*".to_owned()], "https://any.example"));
    }
}
