//! Ingest and the API against the real Kafka and Redis.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::time::Duration;

use crate::common::kafka::{high_watermarks, read_key, setup, Consumer};
use crate::common::{batch, env, event, now_ms, start, Backend};
use attune_core::routing::{partition_key, topic};
use attune_core::{EventKind, Interaction};
use serde_json::{json, Value};

const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1";

fn every_kind(ts: i64) -> Vec<attune_core::Event> {
    vec![
        event(Interaction::PageView, None, ts),
        event(Interaction::Click, Some("article-1"), ts),
        event(Interaction::Scroll { depth_pct: 70 }, Some("article-1"), ts),
        event(
            Interaction::Dwell { visible_ms: 42_000 },
            Some("article-1"),
            ts,
        ),
        event(Interaction::Impression, Some("article-2"), ts),
    ]
}

/// Every accepted event lands in its kind's topic, keyed `site/user`, all of
/// one user's events on one partition, enriched with receipt time, clock skew,
/// the parsed User-Agent and the user's stored attributes.
#[tokio::test]
async fn accepted_events_land_in_their_topics_keyed_and_enriched() {
    let origin = start(Backend::KafkaRedis, |_| {}).await;
    let brokers = env("KAFKA_BROKERS");
    let site = &origin.site.site_key;
    let user = "reader-7";

    let r = origin
        .http
        .put(origin.url(&format!("/v1/users/{user}/attributes")))
        .bearer_auth(&origin.site.api_key)
        .json(&json!({"age_band": "25-34", "locale": "de-DE"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);

    let before: BTreeMap<_, _> = EventKind::ALL
        .iter()
        .map(|k| (*k, high_watermarks(&brokers, topic(*k))))
        .collect();
    // The client clock runs a minute behind the server's.
    let client_now = now_ms() - 60_000;
    let mut b = batch(site, "anon-1", every_kind(client_now - 1000));
    b.sent_at_ms = client_now;
    b.user_token = Some(origin.token(user));
    let sent = now_ms();
    let r = origin
        .http
        .post(origin.url("/v1/events"))
        .header("content-type", "application/msgpack")
        .header("user-agent", IPHONE)
        .body(attune_core::codec::encode_msgpack(&b))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["accepted"], 5);

    let key = partition_key(site, user);
    let mut partitions = BTreeSet::new();
    for e in &b.events {
        let kind = e.kind();
        let found = read_key(
            &brokers,
            topic(kind),
            &before[&kind],
            &key,
            1,
            Duration::from_secs(20),
        );
        assert_eq!(
            found.len(),
            1,
            "{kind}: expected one message with key {key}"
        );
        let (partition, record) = &found[0];
        partitions.insert(*partition);
        assert_eq!(&record.event, e, "{kind}: the event as sent");
        assert_eq!(record.user_id, user);
        assert_eq!(record.anonymous_id, "anon-1");
        assert!(record.received_at_ms >= sent && record.received_at_ms <= now_ms());
        assert!(
            (record.clock_skew_ms - 60_000).abs() < 5_000,
            "skew {}",
            record.clock_skew_ms
        );
        assert_eq!(record.corrected_ts_ms, e.ts_ms + record.clock_skew_ms);
        assert_eq!(record.device.class, Some(attune_core::DeviceClass::Mobile));
        assert_eq!(record.device.os.as_deref(), Some("iPhone"));
        assert_eq!(
            record.attributes.get("locale").map(String::as_str),
            Some("de-DE")
        );
    }
    assert_eq!(partitions.len(), 1, "one user's events share a partition");
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// Every way a batch can be refused gets its status, a stable code and the
/// field at fault; a gzip-encoded batch is accepted.
#[tokio::test]
async fn rejections_name_status_code_and_field() {
    let origin = start(Backend::KafkaRedis, |_| {}).await;
    let site = origin.site.site_key.clone();
    let good = batch(
        &site,
        "anon-2",
        vec![event(Interaction::PageView, None, now_ms())],
    );
    let good_bytes = attune_core::codec::encode_msgpack(&good);
    let mut unknown_site = good.clone();
    unknown_site.site_key = "nope".into();
    let mut bad_token = good.clone();
    bad_token.user_token = Some(format!("v1.{site}.someone.9999999999.AAAA"));
    let unknown_kind = json!({"v": 1, "s": site, "a": "x", "t": now_ms(),
        "e": [{"i": uuid::Uuid::now_v7().to_string(), "k": "hover", "t": now_ms()}]});
    let too_deep = json!({"v": 1, "s": site, "a": "x", "t": now_ms(),
        "e": [{"i": uuid::Uuid::now_v7().to_string(), "k": "scroll", "t": now_ms(), "dp": 130}]});
    // 64 KiB limit: a 1 MiB run of zeros gzips to about 1 KiB.
    let bomb = gzip(&vec![0u8; 1 << 20]);

    const MSGPACK: &str = "application/msgpack";
    const JSON: &str = "application/json";
    // name, Content-Type, Content-Encoding, Origin, body, status, error code, field at fault
    type Case = (
        &'static str,
        &'static str,
        Option<&'static str>,
        Option<&'static str>,
        Vec<u8>,
        u16,
        &'static str,
        Option<&'static str>,
    );
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("gzip batch", MSGPACK, Some("gzip"), None, gzip(&good_bytes), 202, "", None),
        ("allowed origin", MSGPACK, None, Some("https://news.example"), good_bytes.clone(), 202, "", None),
        ("content type", "text/plain", None, None, good_bytes.clone(), 415, "unsupported_media_type", None),
        ("garbage", MSGPACK, None, None, b"\xc1\xff garbage".to_vec(), 400, "malformed", Some(".")),
        ("unknown kind", JSON, None, None, unknown_kind.to_string().into_bytes(), 422, "unknown_kind", Some("events[0].kind")),
        ("scroll over 100", JSON, None, None, too_deep.to_string().into_bytes(), 422, "out_of_range", Some("events[0].depth_pct")),
        ("oversized", MSGPACK, None, None, vec![0x90; 100 * 1024], 413, "too_large", None),
        ("gzip bomb", MSGPACK, Some("gzip"), None, bomb, 413, "too_large", None),
        ("broken gzip", MSGPACK, Some("gzip"), None, b"not gzip at all".to_vec(), 400, "unreadable_body", None),
        ("unknown site", MSGPACK, None, None, attune_core::codec::encode_msgpack(&unknown_site), 401, "unauthorized", Some("site_key")),
        ("forged token", MSGPACK, None, None, attune_core::codec::encode_msgpack(&bad_token), 401, "unauthorized", Some("user_token")),
        ("foreign origin", MSGPACK, None, Some("https://evil.example"), good_bytes.clone(), 403, "forbidden", None),
    ];
    for (name, content_type, encoding, origin_header, body, want, code, field) in cases {
        let mut req = origin
            .http
            .post(origin.url("/v1/events"))
            .header("content-type", content_type)
            .body(body);
        if let Some(e) = encoding {
            req = req.header("content-encoding", e);
        }
        if let Some(o) = origin_header {
            req = req.header("origin", o);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!(status, want, "{name}: {body}");
        if want >= 400 {
            assert_eq!(body["error"], code, "{name}: {body}");
            assert!(
                body["message"].as_str().is_some_and(|m| !m.is_empty()),
                "{name}"
            );
            match field {
                Some(f) => assert_eq!(body["field"], f, "{name}: {body}"),
                None => assert!(body.get("field").is_none(), "{name}: {body}"),
            }
        }
    }
}

/// A user token reads its own user's data and nothing else; API keys read any
/// user of their site; without credentials nothing is read.
#[tokio::test]
async fn users_read_only_their_own_data() {
    let origin = start(Backend::KafkaRedis, |_| {}).await;
    let alice = origin.token("alice");
    let expired = attune_origin::auth::mint_token(
        &origin.site.site_key,
        "alice",
        origin.site.token_secret.as_bytes(),
        1,
    );
    let api = origin.site.api_key.clone();
    let forged = "v1.other-site.alice.9999999999.AAAA".to_string();
    let cases: [(&str, Option<&String>, u16); 9] = [
        ("/v1/profile", Some(&alice), 200),
        ("/v1/profile?user=alice", Some(&alice), 200),
        ("/v1/profile?user=bob", Some(&alice), 403),
        ("/v1/recommendations?user=bob", Some(&alice), 403),
        ("/v1/profile", None, 401),
        ("/v1/profile", Some(&forged), 401),
        ("/v1/profile", Some(&expired), 401),
        ("/v1/profile?user=bob", Some(&api), 200),
        ("/v1/profile", Some(&api), 400),
    ];
    for (path, bearer, status) in cases {
        let mut req = origin.http.get(origin.url(path));
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        let got = req.send().await.unwrap().status().as_u16();
        assert_eq!(got, status, "GET {path} with {bearer:?}");
    }
    // A user token cannot write the catalog or forget someone else.
    let r = origin
        .http
        .post(origin.url("/v1/items"))
        .bearer_auth(&alice)
        .json(&json!({"items": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = origin
        .http
        .delete(origin.url("/v1/users/bob"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

/// Over the per-IP limit, requests get 429 with Retry-After.
#[tokio::test]
async fn rate_limits_answer_429_with_retry_after() {
    let origin = start(Backend::KafkaRedis, |a| a.rate_per_ip = 5).await;
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let r = origin
            .http
            .get(origin.url("/healthz"))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        if status == 429 {
            assert!(r.headers().get("retry-after").is_some());
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["error"], "rate_limited");
        }
        statuses.push(status);
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        5,
        "{statuses:?}"
    );
    assert!(statuses.contains(&429));
}

/// Behind the edge every reader shares the edge's address: the origin counts
/// the client the edge names (X-Forwarded-For) when the edge proves itself
/// with its secret, and ignores the header from anyone else.
#[tokio::test]
async fn the_trusted_edge_names_the_client_for_the_per_ip_limit() {
    let secret = "edge-secret-for-tests";
    let origin = start(Backend::KafkaRedis, |a| {
        a.rate_per_ip = 5;
        a.edge_secret = Some(secret.into());
    })
    .await;
    let statuses = |client: &'static str, with_secret: bool| {
        let origin = &origin;
        async move {
            let mut out = Vec::new();
            for _ in 0..8 {
                let mut req = origin
                    .http
                    .get(origin.url("/healthz"))
                    .header("x-forwarded-for", client);
                if with_secret {
                    req = req.header("x-attune-edge", secret);
                }
                out.push(req.send().await.unwrap().status().as_u16());
            }
            out.iter().filter(|s| **s == 200).count()
        }
    };
    // From the edge: each reader has a bucket of their own.
    assert_eq!(statuses("203.0.113.1", true).await, 5);
    assert_eq!(statuses("203.0.113.2", true).await, 5);
    // Without the secret the header names nobody: one bucket, the peer's.
    assert_eq!(statuses("203.0.113.3", false).await, 5);
    assert_eq!(statuses("203.0.113.4", false).await, 0);
}

/// The catalog feeds recommendations; clicks make an item and its category
/// rise; forgetting a user deletes their data and ignores their later events.
#[tokio::test]
async fn catalog_recommendations_and_forget() {
    let (prefix, origin) = setup().await;
    let _consumer = Consumer::start(&prefix, &format!("g-{prefix}"));
    crate::common::catalog_recommendations_and_forget(&origin).await;
}

/// OpenAPI, Prometheus metrics and readiness.
#[tokio::test]
async fn openapi_metrics_and_readiness() {
    let origin = start(Backend::KafkaRedis, |_| {}).await;
    let doc: Value = origin
        .http
        .get(origin.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in [
        "/v1/events",
        "/v1/recommendations",
        "/v1/profile",
        "/v1/items",
        "/v1/items/{id}",
        "/v1/users/{id}",
        "/v1/experiments",
        "/v1/experiments/{key}",
        "/v1/experiments/{key}/results",
        "/v1/models",
        "/v1/models/{version}/promote",
        "/v1/models/rollback",
        "/v1/models/retrain",
        "/v1/batch",
        "/v1/track",
        "/v1/page",
        "/v1/screen",
        "/v1/identify",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} missing from OpenAPI"
        );
    }
    // The batch's JSON body is typed, for client generators.
    let body = &doc["paths"]["/v1/events"]["post"]["requestBody"]["content"];
    assert_eq!(
        body["application/json"]["schema"]["$ref"], "#/components/schemas/BatchJson",
        "{body}"
    );
    let fields = &doc["components"]["schemas"]["EventJson"]["properties"];
    assert!(fields.get("visible_ms").is_some(), "{fields}");
    let r = origin.http.get(origin.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let b = batch(
        &origin.site.site_key,
        "anon-m",
        vec![event(Interaction::PageView, None, now_ms())],
    );
    assert_eq!(origin.post_batch(&b).await.status(), 202);
    let text = origin.metrics().await;
    for metric in [
        "attune_http_requests_total",
        "attune_http_request_duration_seconds",
        "attune_produce_duration_seconds",
        "attune_producer_queue_depth",
        "attune_events_accepted_total",
    ] {
        assert!(text.contains(metric), "{metric} missing from /metrics");
    }
}

const DESKTOP: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";

/// Cold start: a newcomer gets what people like them (on the same kind of
/// device, with the same stated attributes) take, where the site as a whole
/// is tied.
#[tokio::test]
async fn newcomers_get_what_people_like_them_take() {
    let (prefix, origin) = setup().await;
    let _consumer = Consumer::start(&prefix, &format!("g-{prefix}"));
    let site = origin.site.site_key.clone();
    origin
        .load_items(serde_json::json!({"items": [
            {"id": "m1", "tags": ["x"]}, {"id": "d1", "tags": ["y"]}, {"id": "p1", "tags": ["z"]}
        ]}))
        .await;
    let set_plan = |user: String| {
        let origin = &origin;
        async move {
            let r = origin
                .http
                .put(origin.url(&format!("/v1/users/{user}/attributes")))
                .bearer_auth(&origin.site.api_key)
                .json(&json!({"plan": "pro"}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 204);
        }
    };
    // Readers of p1 say nothing of their device but have stated a plan.
    // Each group reads after the one before, so among the site's equally
    // read items the later ones lead by a hair (decay): p1 least, then m1.
    for (ua, item) in [(None, "p1"), (Some(IPHONE), "m1"), (Some(DESKTOP), "d1")] {
        for u in 0..3 {
            let anon = format!("{item}-user-{u}");
            if ua.is_none() {
                set_plan(format!("anon:{anon}")).await;
            }
            let b = batch(
                &site,
                &anon,
                vec![event(Interaction::Click, Some(item), now_ms())],
            );
            let mut r = origin
                .http
                .post(origin.url("/v1/events"))
                .header("content-type", "application/msgpack");
            if let Some(ua) = ua {
                r = r.header("user-agent", ua);
            }
            let r = r
                .body(attune_core::codec::encode_msgpack(&b))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 202);
        }
    }
    set_plan("anon:pro-newcomer".into()).await;
    for (ua, user, want) in [
        (IPHONE, "newcomer", "m1"),
        (DESKTOP, "newcomer", "d1"),
        ("", "pro-newcomer", "p1"),
    ] {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let recs: Value = origin
                .http
                .get(origin.url(&format!("/v1/recommendations?user=anon:{user}&k=2")))
                .bearer_auth(&origin.site.api_key)
                .header("user-agent", ua)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if recs["items"][0]["item"] == want {
                assert_eq!(recs["model"], "popularity");
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{ua}: {recs}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Labels a client can influence come from closed sets: 40 requests with
/// made-up methods (one of 4 KB) add no series of their own to `/metrics`,
/// and an error quoting a 50 KB value does not echo it back.
#[tokio::test]
async fn hostile_requests_add_no_metric_series_and_get_bounded_errors() {
    let origin = start(Backend::KafkaRedis, |_| {}).await;
    let scrape = async || origin.metrics().await;
    let before = scrape().await.len();
    for i in 0..40 {
        let token = if i == 0 {
            "X".repeat(4096)
        } else {
            format!("PROBE{i}")
        };
        let method = reqwest::Method::from_bytes(token.as_bytes()).unwrap();
        let _ = origin
            .http
            .request(method, origin.url("/v1/events"))
            .send()
            .await;
    }
    let text = scrape().await;
    assert!(
        !text.contains("PROBE") && !text.contains("XXXX"),
        "a client's method became a label"
    );
    assert!(
        text.contains(r#"method="other""#),
        "made-up methods count as `other`"
    );
    assert!(
        text.len() < before + 32 * 1024,
        "/metrics grew {} B after 40 probes",
        text.len() - before
    );

    let huge = "a".repeat(50_000);
    let r = origin
        .http
        .put(origin.url("/v1/items/x"))
        .bearer_auth(&origin.site.api_key)
        .json(&serde_json::json!({ "id": huge }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body = r.text().await.unwrap();
    assert!(body.len() < 1024, "a {} B error body", body.len());
    assert!(body.contains("id_mismatch"), "{body}");
}

/// A test's topics go when it ends, so a developer's stack does not fill up
/// with test topics run after run.
#[tokio::test]
async fn a_tests_own_topics_are_deleted_when_it_ends() {
    use rdkafka::consumer::{BaseConsumer, Consumer as _};
    let prefix = format!("gone{}.", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let listed = |prefix: &str| -> usize {
        let client: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", env("KAFKA_BROKERS"))
            .create()
            .unwrap();
        let metadata = client
            .fetch_metadata(None, Duration::from_secs(10))
            .unwrap();
        metadata
            .topics()
            .iter()
            .filter(|t| t.name().starts_with(prefix))
            .count()
    };
    let topics = crate::common::kafka::create_topics(&prefix).await;
    assert!(listed(&prefix) > 0, "created");
    drop(topics);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while listed(&prefix) > 0 {
        assert!(std::time::Instant::now() < deadline, "still listed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A round-robin TCP balancer in front of `backends` (`http://host:port`),
/// as a Kubernetes Service or any L4 load balancer: each connection goes to
/// the next backend. Counts the connections each got.
struct RoundRobin {
    addr: std::net::SocketAddr,
    counts: std::sync::Arc<Vec<std::sync::atomic::AtomicUsize>>,
}

impl RoundRobin {
    async fn start(backends: &[&str]) -> RoundRobin {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let backends: Vec<String> = backends
            .iter()
            .map(|b| b.trim_start_matches("http://").to_owned())
            .collect();
        let counts: std::sync::Arc<Vec<AtomicUsize>> =
            std::sync::Arc::new(backends.iter().map(|_| AtomicUsize::new(0)).collect());
        let served = counts.clone();
        tokio::spawn(async move {
            for n in 0.. {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                let i = n % backends.len();
                served[i].fetch_add(1, Ordering::SeqCst);
                let backend = backends[i].clone();
                tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(backend).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        RoundRobin { addr, counts }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A client that opens a connection per request, so the balancer
    /// alternates.
    fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap()
    }

    fn counts(&self) -> Vec<usize> {
        self.counts
            .iter()
            .map(|c| c.load(std::sync::atomic::Ordering::SeqCst))
            .collect()
    }
}

/// Two origins behind one address take the batches between them, and three
/// consumers in the group apply every event once, whichever origin took it.
#[tokio::test]
async fn two_origins_behind_one_address_and_three_consumers_apply_each_event_once() {
    let (prefix, a) = setup().await;
    let b = a.twin().await;
    let balancer = RoundRobin::start(&[&a.base, &b.base]).await;
    let http = RoundRobin::client();
    const READERS: usize = 40;
    for r in 0..READERS {
        let body = batch(
            &a.site.site_key,
            &format!("lb-{r}"),
            vec![event(Interaction::Click, Some("article-1"), now_ms())],
        );
        let answer = http
            .post(balancer.url("/v1/events"))
            .header("content-type", "application/msgpack")
            .body(attune_core::codec::encode_msgpack(&body))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 202, "reader {r}");
    }
    assert_eq!(balancer.counts(), [READERS / 2, READERS / 2]);

    let group = format!("g-{prefix}");
    let consumers: Vec<Consumer> = (0..3).map(|_| Consumer::start(&prefix, &group)).collect();
    let applied = || async {
        let mut sum = 0.0;
        for c in &consumers {
            sum += c.applied().await;
        }
        sum
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let applied = applied().await;
        if applied >= READERS as f64 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the consumers applied {applied} of {READERS} events"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for r in 0..READERS {
        let profile = a
            .get_as_site(&format!("/v1/profile?user=anon:lb-{r}"))
            .await;
        assert_eq!(profile["counts"]["click"], 1, "reader lb-{r}");
    }
    assert_eq!(
        applied().await,
        READERS as f64,
        "applied once each, over the group"
    );
}

/// Rate limits are each origin's own: behind two origins, an address gets
/// twice one origin's per-IP rate (the arithmetic deploy/README.md gives).
#[tokio::test]
async fn behind_two_origins_an_address_gets_each_origins_rate() {
    let a = start(Backend::KafkaRedis, |a| a.rate_per_ip = 5).await;
    let b = a.twin().await;
    let balancer = RoundRobin::start(&[&a.base, &b.base]).await;
    let http = RoundRobin::client();
    let mut ok = 0;
    for _ in 0..24 {
        let r = http.get(balancer.url("/healthz")).send().await.unwrap();
        ok += usize::from(r.status() == 200);
    }
    assert_eq!(ok, 10, "5 from each origin");
}
