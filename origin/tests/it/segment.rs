//! The Segment-compatible API on real Kafka and Redis: Segment-shaped
//! requests, as the SDKs send them (HTTP Basic write key, `messageId`,
//! `originalTimestamp`/`sentAt`), land in the interaction topics and the
//! profiles once, retries included; the limits and the trust rules answer
//! with clear errors.

use std::time::{Duration, Instant};

use attune_core::routing::{partition_key, topic, CUSTOM_EVENTS};
use attune_core::EventKind;
use base64::Engine as _;
use serde_json::{json, Value};

use attune_origin::record::EventRecord;
use attune_origin::segment::custom::CustomEventRecord;
use rdkafka::Message as _;

use crate::common::kafka::{read_topic, setup, setup_with, Consumer};
use crate::common::{env, run_client, sdk_dir, TestOrigin};

fn basic(key: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{key}:"));
    format!("Basic {encoded}")
}

async fn post(
    origin: &TestOrigin,
    path: &str,
    auth: Option<String>,
    body: &Value,
) -> reqwest::Response {
    let mut r = reqwest::Client::new()
        .post(origin.url(path))
        .header("content-type", "application/json");
    if let Some(auth) = auth {
        r = r.header("authorization", auth);
    }
    r.body(body.to_string()).send().await.unwrap()
}

async fn wait_profile(origin: &TestOrigin, user: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let p = origin
            .get_as_site(&format!("/v1/profile?user={user}"))
            .await;
        if check(&p) {
            return p;
        }
        assert!(Instant::now() < deadline, "{user}: {p}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A server SDK's batch (the site's API key as write key): the known user's
/// click and an anonymous page view land in their topics keyed by reader,
/// `identify` sets attributes, a `track` Attune has no interaction for is
/// kept in the custom events topic, a `group` is counted; the SDK's retry
/// of the whole batch adds nothing (the retried custom event keeps its id). Seen failing with event ids drawn
/// fresh per request (the retry counted twice).
#[tokio::test]
async fn a_server_sdks_batch_lands_once_in_the_topics_and_profiles() {
    let (prefix, origin) = setup().await;
    let site = origin.site.site_key.clone();
    origin
        .load_items(
            json!({"items": [{"id": "a1", "tags": ["arts"]}, {"id": "a2", "tags": ["tech"]},
                             {"id": "a3", "tags": ["arts"], "metadata": {"url": "https://news.example/2026/12/a3-slug"}}]}),
        )
        .await;
    let clicks = format!("{prefix}{}", topic(EventKind::Click));
    let body = json!({
        "batch": [
            {"type": "identify", "userId": "u1", "messageId": "id-1", "traits": {"plan": "pro"}},
            {"type": "track", "userId": "u1", "messageId": "node-next-1-x", "event": "Product Clicked",
             "properties": {"product_id": "a1"}, "originalTimestamp": "2026-12-05T10:00:00.000Z",
             "context": {"library": {"name": "analytics-node"}}},
            {"type": "page", "anonymousId": "anon-1", "messageId": "0b5c7c16-3d0c-4e1e-9d0c-3c3a5f0b9a11",
             "name": "Article", "properties": {"item_id": "a2"}},
            {"type": "track", "userId": "u1", "messageId": "m-4", "event": "Signed Up",
             "properties": {"plan": "pro"}},
            {"type": "group", "userId": "u1", "messageId": "m-5", "groupId": "g1"},
            {"type": "page", "anonymousId": "anon-1", "messageId": "m-6",
             "properties": {"url": "https://news.example/2026/12/a3-slug?utm_source=x"}}
        ],
        "sentAt": "2026-12-05T10:00:01.000Z",
        "context": {"userAgent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)"}
    });
    // The client's clock: sentAt one second after the event. The server
    // moves the event to one second before the request's receipt.
    let auth = Some(basic(&origin.site.api_key));
    let unmapped = r#"attune_segment_unmapped_total{reason="unused_type"}"#;
    let kept = "attune_segment_custom_events_total";
    let (unmapped_before, kept_before) = (origin.metric(unmapped).await, origin.metric(kept).await);
    for _ in 0..2 {
        let r = post(&origin, "/v1/batch", auth.clone(), &body).await;
        assert_eq!(r.status(), 200);
        let reply: Value = r.json().await.unwrap();
        assert_eq!(
            reply,
            json!({"success": true, "accepted": 3, "custom": 1, "ignored": 2})
        );
    }
    // The group and "Signed Up", twice each (other tests may add too).
    assert!(origin.metric(unmapped).await >= unmapped_before + 2.0);
    assert!(origin.metric(kept).await >= kept_before + 2.0);
    let custom = format!("{prefix}{CUSTOM_EVENTS}");
    let kept = read_topic(&env("KAFKA_BROKERS"), &custom, 2, Duration::from_secs(10));
    assert_eq!(kept.len(), 2, "the custom event and its retry");
    let records: Vec<CustomEventRecord> = kept
        .iter()
        .map(|m| serde_json::from_slice(m.payload().unwrap()).unwrap())
        .collect();
    assert_eq!(records[0].id, records[1].id, "a retry keeps its id");
    assert_eq!(kept[0].key(), Some(partition_key(&site, "u1").as_bytes()));
    assert_eq!(
        (records[0].name.as_str(), &records[0].properties["plan"]),
        ("Signed Up", &json!("pro"))
    );
    // The test's own topic: every click in it is this test's.
    let found = read_topic(&env("KAFKA_BROKERS"), &clicks, 2, Duration::from_secs(10));
    assert_eq!(
        found.len(),
        2,
        "the click and its retry are both in the log"
    );
    let key = partition_key(&site, "u1");
    assert!(found.iter().all(|m| m.key() == Some(key.as_bytes())));
    let r = EventRecord::decode(found[0].payload().unwrap()).unwrap();
    assert_eq!(
        (r.user_id.as_str(), r.event.item.as_deref()),
        ("u1", Some("a1"))
    );
    assert!(
        (crate::common::now_ms() - 1_000 - r.event.ts_ms).abs() < 5_000,
        "skew corrected: {}",
        r.event.ts_ms
    );
    assert_eq!(r.device.class.map(|c| c.as_str()), Some("mobile"));

    // The page named only by its URL is a view of the catalog item with that URL.
    let views = format!("{prefix}{}", topic(EventKind::PageView));
    let viewed: Vec<Option<String>> =
        read_topic(&env("KAFKA_BROKERS"), &views, 4, Duration::from_secs(10))
            .iter()
            .map(|m| {
                EventRecord::decode(m.payload().unwrap())
                    .unwrap()
                    .event
                    .item
            })
            .collect();
    assert!(viewed.contains(&Some("a3".into())), "{viewed:?}");
    let _consumer = Consumer::start(&prefix, &format!("g-{prefix}"));
    let u1 = wait_profile(&origin, "u1", |p| p["counts"]["click"] == 1).await;
    assert_eq!(u1["attributes"], json!({"plan": "pro"}));
    wait_profile(&origin, "anon:anon-1", |p| p["counts"]["page_view"] == 2).await;
    // Still once each after the consumer has read everything.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let u1 = origin.get_as_site("/v1/profile?user=u1").await;
    assert_eq!(u1["counts"], json!({"click": 1}), "{u1}");
}

/// The trust and the limits: the public site key may not name a `userId`
/// and sets no attributes; unknown keys, other content types, oversized
/// messages and batches are refused, each saying why.
#[tokio::test]
async fn the_segment_api_refuses_what_it_cannot_trust_or_hold() {
    let (_prefix, origin) = setup().await;
    let site = origin.site.site_key.clone();
    let public = Some(basic(&site));
    let spoof = json!({"batch": [{"type": "track", "userId": "u1", "messageId": "m", "event": "Product Clicked", "properties": {"product_id": "a1"}}]});
    let r = post(&origin, "/v1/batch", public.clone(), &spoof).await;
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert_eq!(
        (e["error"].as_str(), e["field"].as_str()),
        (Some("untrusted_user_id"), Some("batch[0].anonymousId"))
    );

    // A browser's single call with the key in the body, and both ids.
    let browser = json!({"writeKey": site, "userId": "u1", "anonymousId": "b-1", "messageId": "m2",
                         "event": "Product Clicked", "properties": {"product_id": "a1"}});
    let r = post(&origin, "/v1/track", None, &browser).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let identify = json!({"writeKey": site, "anonymousId": "b-1", "traits": {"plan": "free"}});
    let r: Value = post(&origin, "/v1/identify", None, &identify)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        r,
        json!({"success": true, "accepted": 0, "custom": 0, "ignored": 1}),
        "no attributes from the public key"
    );

    let r = post(&origin, "/v1/batch", Some(basic("nope")), &spoof).await;
    assert_eq!(r.status(), 401);
    // SDK settings: a site key's name this origin and are never cached for
    // others; an API key (secret) or unknown key has none.
    let settings = |key: String| {
        reqwest::Client::new()
            .get(origin.url(&format!("/v1/projects/{key}/settings")))
            .header("host", "attune.example")
            .send()
    };
    let r = settings(site.clone()).await.unwrap();
    assert_eq!(r.headers()["cache-control"], "no-store");
    let s: Value = r.json().await.unwrap();
    assert_eq!(
        s["integrations"]["Segment.io"]["apiHost"],
        "attune.example/v1"
    );
    for key in [origin.site.api_key.clone(), "nope".into()] {
        assert_eq!(settings(key).await.unwrap().status(), 404);
    }
    // A page the site does not allow, with its public key.
    let r = reqwest::Client::new()
        .post(origin.url("/v1/track"))
        .header("content-type", "application/json")
        .header("origin", "https://elsewhere.example")
        .body(browser.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = post(&origin, "/v1/batch", None, &spoof).await;
    assert_eq!(r.status(), 401);
    let xml = reqwest::Client::new()
        .post(origin.url("/v1/batch"))
        .header("content-type", "application/xml")
        .header("authorization", basic(&site))
        .body(spoof.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(xml.status(), 415);
    let big = json!({"batch": [{"type": "page", "anonymousId": "a", "messageId": "m", "properties": {"pad": "x".repeat(33 * 1024)}}]});
    let r = post(&origin, "/v1/batch", public.clone(), &big).await;
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["field"], "batch[0].");
    let many: Vec<Value> = (0..2_501)
        .map(|i| json!({"type": "page", "anonymousId": "a", "messageId": format!("m{i}")}))
        .collect();
    let r = post(
        &origin,
        "/v1/batch",
        public.clone(),
        &json!({"batch": many}),
    )
    .await;
    assert_eq!(r.status(), 400);
    let r = post(&origin, "/v1/batch", public.clone(), &json!({"batch": [{"type": "track", "anonymousId": "a", "messageId": "m", "timestamp": "soon"}]})).await;
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["field"], "batch[0].timestamp", "{e}");
    let r = post(
        &origin,
        "/v1/batch",
        public,
        &json!({"batch": [{"type": "page", "anonymousId": "a"}]}),
    )
    .await;
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["field"], "batch[0].messageId", "{e}");
}

/// Segment's own SDKs, unmodified, pointed at the origin by their `host`
/// option with the site's API key as write key: analytics-node (npm,
/// origin/tests/sdk) and analytics-python (PyPI, in the tests' Python).
/// Each one's identify, click and page view land in the profiles.
#[tokio::test]
async fn segments_node_and_python_sdks_feed_attune_unchanged() {
    let (prefix, origin) = setup().await;
    origin
        .load_items(json!({"items": [{"id": "a1", "tags": ["arts"]}]}))
        .await;
    let _consumer = Consumer::start(&prefix, &format!("g-{prefix}"));
    let sdk = sdk_dir();
    let base = origin.url("");
    let key = origin.site.api_key.clone();
    let mut cmd = std::process::Command::new("node");
    cmd.arg(sdk.join("segment_node.mjs"))
        .args([base.as_str(), key.as_str(), "u-node", "a1"]);
    run_client(cmd).await;
    let mut cmd = std::process::Command::new(crate::common::python());
    cmd.arg(sdk.join("segment_python.py"))
        .args([base.as_str(), key.as_str(), "u-py", "a1"]);
    run_client(cmd).await;
    for (user, plan) in [("u-node", "node"), ("u-py", "python")] {
        let p = wait_profile(&origin, user, |p| p["counts"]["click"] == 1).await;
        assert_eq!(p["attributes"], json!({"plan": plan}), "{user}");
        let device = format!("anon:{user}-device");
        wait_profile(&origin, &device, |p| p["counts"]["page_view"] == 1).await;
    }
}

/// analytics-next, Segment's browser SDK, unmodified in headless Chromium
/// (origin/tests/sdk/segment_browser.mjs) with the site's public key: its
/// short paths, `text/plain` bodies and CORS preflights (Basic auth) pass;
/// its page() on /articles/a1 is a view of a1 by the site's `item_path`;
/// the click whose acknowledgement was lost (answered 503 after the origin
/// stored it) is resent by the SDK and counted once; an unknown track is
/// kept as a custom event.
#[tokio::test]
async fn analytics_next_in_chromium_feeds_attune_unchanged() {
    let (prefix, origin) = setup_with(
        "allowed_origins = [\"*\"]\n[sites.segment]\nitem_path = \"/articles/{item}\"\n",
    )
    .await;
    origin
        .load_items(json!({"items": [{"id": "a1", "tags": ["arts"]}]}))
        .await;
    let _consumer = Consumer::start(&prefix, &format!("g-{prefix}"));
    let base = origin.url("");
    let key = origin.site.site_key.clone();
    let mut cmd = std::process::Command::new("node");
    cmd.arg(sdk_dir().join("segment_browser.mjs")).args([
        base.trim_end_matches('/'),
        key.as_str(),
        "br-1",
        "a1",
    ]);
    let out = run_client(cmd).await;
    let answers: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        answers,
        json!([
            {"path": "/v1/p", "status": 200},
            {"path": "/v1/t", "status": 503},
            {"path": "/v1/t", "status": 200},
            {"path": "/v1/t", "status": 200},
        ]),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let views = format!("{prefix}{}", topic(EventKind::PageView));
    let view = read_topic(&env("KAFKA_BROKERS"), &views, 1, Duration::from_secs(10));
    let r = EventRecord::decode(view[0].payload().unwrap()).unwrap();
    assert_eq!(
        r.event.item.as_deref(),
        Some("a1"),
        "the page's path names a1"
    );
    let custom = format!("{prefix}{CUSTOM_EVENTS}");
    let kept = read_topic(&env("KAFKA_BROKERS"), &custom, 1, Duration::from_secs(10));
    let c: CustomEventRecord = serde_json::from_slice(kept[0].payload().unwrap()).unwrap();
    assert_eq!(
        (c.user.as_str(), c.name.as_str()),
        ("anon:br-1", "Newsletter Signed Up")
    );
    let p = wait_profile(&origin, "anon:br-1", |p| {
        p["counts"]["click"] == 1 && p["counts"]["page_view"] == 1
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let again = origin.get_as_site("/v1/profile?user=anon:br-1").await;
    assert_eq!(
        again["counts"], p["counts"],
        "the resent click counted once"
    );
}
