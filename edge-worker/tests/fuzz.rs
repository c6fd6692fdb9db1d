//! The edge's decode path takes arbitrary bytes without panicking: the
//! collect intake (media type, Content-Encoding, decoding, site) and the
//! state cookie, natively with the code the worker runs.

use attune_core::codec::{encode_json, encode_msgpack};
use attune_core::{Batch, Event, Interaction, Limits};
use attune_edge::intake::read_batch;
use attune_edge::state::{cookie_value, EdgeState};
use proptest::prelude::*;

const SITE: &str = "news";
const SECRET: &[u8] = b"edge-state-secret-for-tests";

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
fn check(result: Result<(Batch, Vec<u8>), attune_edge::intake::Refusal>) {
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
        check(read_batch(&content_type, encoding.as_deref(), &body, &Limits::default(), SITE));
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
        check(read_batch(content_type, None, &body, &Limits::default(), SITE));
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
    let limits = Limits::default();
    let (batch, forwarded) = read_batch(
        "application/msgpack",
        None,
        &encode_msgpack(&valid_batch()),
        &limits,
        SITE,
    )
    .unwrap();
    assert_eq!(batch, valid_batch());
    assert_eq!(
        forwarded,
        encode_msgpack(&valid_batch()),
        "forwarded unchanged"
    );
    assert!(read_batch(
        "application/json",
        None,
        &encode_json(&valid_batch()),
        &limits,
        SITE
    )
    .is_ok());
    let foreign = read_batch(
        "application/msgpack",
        None,
        &encode_msgpack(&valid_batch()),
        &limits,
        "blog",
    );
    assert_eq!(foreign.unwrap_err().status, 403);
    let gzip_label = read_batch(
        "application/msgpack",
        Some("gzip"),
        &encode_msgpack(&valid_batch()),
        &limits,
        SITE,
    );
    assert_eq!(
        gzip_label.unwrap_err().code,
        "unreadable_body",
        "labelled gzip, not gzip"
    );
}
