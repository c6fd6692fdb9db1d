//! The edge's decode path takes arbitrary bytes without panicking: the
//! collect intake (media type, Content-Encoding, decoding, site) and the
//! state cookie, natively with the code the worker runs.

use attune_core::access::mint_token;
use attune_core::codec::{encode_json, encode_msgpack};
use attune_core::{Batch, Event, Interaction, Limits};
use attune_edge::intake::{read_batch, Refusal, Request, SiteRules};
use attune_edge::state::{cookie_value, EdgeState};
use proptest::prelude::*;

const SITE: &str = "news";
const SECRET: &[u8] = b"edge-state-secret-for-tests";
const TOKEN_SECRET: &[u8] = b"token-secret-for-tests";
const NOW_S: u64 = 1_800_000_000;

/// The rules of an edge that knows the site's pages and token secret.
fn strict() -> (Vec<String>, Vec<Vec<u8>>) {
    (
        vec!["https://news.example".into()],
        vec![TOKEN_SECRET.to_vec()],
    )
}

fn read(
    content_type: &str,
    encoding: Option<&str>,
    origin: Option<&str>,
    body: &[u8],
    site: &str,
) -> Result<(Batch, Vec<u8>), Refusal> {
    let (allowed, secrets) = strict();
    let request = Request {
        content_type,
        content_encoding: encoding,
        page_origin: origin,
        body,
    };
    let rules = SiteRules {
        site_key: site,
        allowed_origins: Some(&allowed),
        token_secrets: &secrets,
    };
    read_batch(&request, &rules, &Limits::default(), NOW_S)
}

fn valid_batch() -> Batch {
    let t = 1_800_000_000_000;
    Batch {
        site_key: SITE.into(),
        anonymous_id: "anon-1".into(),
        user_token: None,
        sent_at_ms: t,
        dropped: 0,
        events: vec![Event {
            id: uuid::Builder::from_unix_timestamp_millis(t as u64, &[7; 10]).into_uuid(),
            ts_ms: t,
            interaction: Interaction::Click,
            item: Some("article-1".into()),
            context: None,
            slot: None,
        }],
    }
}

fn content_types() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("application/msgpack".to_owned()),
        Just("application/json; charset=utf-8".to_owned()),
        Just("text/plain".to_owned()),
        ".{0,40}",
    ]
}

fn encodings() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some("gzip".to_owned())),
        Just(Some("GZIP".to_owned())),
        Just(Some("br".to_owned())),
        proptest::option::of(".{0,20}"),
    ]
}

/// Every refusal is one of the origin's client errors, with words.
fn check(result: Result<(Batch, Vec<u8>), Refusal>) {
    match result {
        Ok((batch, _)) => {
            assert_eq!(batch.site_key, SITE);
            assert!(batch.events.len() <= Limits::default().max_events);
        }
        Err(r) => {
            assert!((400..500).contains(&r.status), "{r:?}");
            assert!(!r.message.is_empty(), "{r:?}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bodies_are_read_or_refused(
        content_type in content_types(),
        encoding in encodings(),
        body in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        check(read(&content_type, encoding.as_deref(), None, &body, SITE));
    }

    #[test]
    fn damaged_batches_are_read_or_refused(
        json in any::<bool>(),
        cut in any::<prop::sample::Index>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
    ) {
        let (content_type, mut body) = if json {
            ("application/json", encode_json(&valid_batch()))
        } else {
            ("application/msgpack", encode_msgpack(&valid_batch()))
        };
        for (at, byte) in flips {
            let i = at.index(body.len());
            body[i] ^= byte;
        }
        body.truncate(cut.index(body.len() + 1));
        check(read(content_type, None, Some("https://news.example"), &body, SITE));
    }

    #[test]
    fn arbitrary_cookies_never_open(header in ".{0,3000}") {
        if let Some(value) = cookie_value(&header) {
            prop_assert!(EdgeState::open(value, SECRET).is_err());
        }
        prop_assert!(EdgeState::open(&header, SECRET).is_err());
    }
}

#[test]
fn the_valid_batch_is_read_in_both_encodings_and_for_its_site_only() {
    let msgpack = encode_msgpack(&valid_batch());
    let (batch, forwarded) = read("application/msgpack", None, None, &msgpack, SITE).unwrap();
    assert_eq!(batch, valid_batch());
    assert_eq!(forwarded, msgpack, "forwarded unchanged");
    assert!(read(
        "application/json",
        None,
        None,
        &encode_json(&valid_batch()),
        SITE
    )
    .is_ok());
    assert_eq!(
        read("application/msgpack", None, None, &msgpack, "blog")
            .unwrap_err()
            .status,
        401
    );
    let gzip_label = read("application/msgpack", Some("gzip"), None, &msgpack, SITE);
    assert_eq!(
        gzip_label.unwrap_err().code,
        "unreadable_body",
        "labelled gzip, not gzip"
    );
}

#[test]
fn pages_and_tokens_are_checked_as_the_origin_checks_them() {
    let msgpack = encode_msgpack(&valid_batch());
    assert!(read(
        "application/msgpack",
        None,
        Some("https://news.example"),
        &msgpack,
        SITE
    )
    .is_ok());
    let foreign = read(
        "application/msgpack",
        None,
        Some("https://evil.example"),
        &msgpack,
        SITE,
    )
    .unwrap_err();
    assert_eq!((foreign.status, foreign.code), (403, "forbidden"));
    assert!(
        foreign
            .message
            .contains("https://evil.example may not send events"),
        "{foreign:?}"
    );
    let with_token = |token: String| {
        let mut b = valid_batch();
        b.user_token = Some(token);
        read("application/msgpack", None, None, &encode_msgpack(&b), SITE)
    };
    assert!(with_token(mint_token(SITE, "u1", TOKEN_SECRET, NOW_S + 60)).is_ok());
    for bad in [
        mint_token(SITE, "u1", b"another-secret-value", NOW_S + 60),
        mint_token(SITE, "u1", TOKEN_SECRET, NOW_S - 1),
        mint_token("blog", "u1", TOKEN_SECRET, NOW_S + 60),
        "v1.garbage".to_owned(),
    ] {
        let refused = with_token(bad.clone()).unwrap_err();
        assert_eq!(
            (refused.status, refused.code, refused.field.as_deref()),
            (401, "unauthorized", Some("user_token")),
            "{bad}"
        );
    }
    // Without the secrets, the edge leaves both checks to the origin.
    let request = Request {
        content_type: "application/msgpack",
        content_encoding: None,
        page_origin: Some("https://evil.example"),
        body: &msgpack,
    };
    let lenient = SiteRules {
        site_key: SITE,
        allowed_origins: None,
        token_secrets: &[],
    };
    assert!(read_batch(&request, &lenient, &Limits::default(), NOW_S).is_ok());
}
