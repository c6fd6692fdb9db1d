//! The embedded default (no Kafka, no Redis): the same API on an in-process
//! queue and a redb store, persisted across restarts. Also: arbitrary bytes to
//! the ingest endpoint never crash it.

use std::time::{Duration, Instant};

use crate::common::{batch, event, now_ms, start, Backend, Popularity};
use attune_core::routing::{partition_key, topic};
use attune_core::{EventKind, Interaction};
use attune_origin::event_log::embedded::read_topic;
use attune_origin::record::EventRecord;
use proptest::prelude::*;
use serde_json::Value;

#[tokio::test]
async fn catalog_recommendations_and_forget() {
    let origin = start(Backend::Embedded, |_| {}).await;
    crate::common::catalog_recommendations_and_forget(&origin).await;
}

/// Accepted events are in the embedded log, in their kind's topic, keyed by
/// user; the catalog and the log survive a restart.
#[tokio::test]
async fn accepted_events_and_catalog_survive_a_restart() {
    let origin = start(Backend::Embedded, |_| {}).await;
    let site = origin.site.site_key.clone();
    origin
        .load_items(serde_json::json!({"items": [{"id": "a1", "tags": ["arts"]}]}))
        .await;
    let events = vec![
        event(Interaction::PageView, None, now_ms()),
        event(Interaction::Click, Some("a1"), now_ms()),
        event(
            Interaction::Dwell { visible_ms: 5000 },
            Some("a1"),
            now_ms(),
        ),
    ];
    let b = batch(&site, "anon-e", events);
    assert_eq!(origin.post_batch(&b).await.status(), 202);

    let origin = origin.restart().await;
    let recs: Value = origin.get_as_site("/v1/recommendations?user=x").await;
    assert_eq!(recs["items"][0]["item"], "a1", "catalog kept: {recs}");

    let dir = origin.stop().await;
    let db = reopen(&dir).await;
    for e in &b.events {
        let rows = read_topic(&db, topic(e.kind()), 0).unwrap();
        assert_eq!(rows.len(), 1, "{}", e.kind());
        let (_, key, payload) = &rows[0];
        assert_eq!(key, &partition_key(&site, "anon:anon-e"));
        assert_eq!(&EventRecord::decode(payload).unwrap().event, e);
    }
    assert!(read_topic(&db, topic(EventKind::Scroll), 0)
        .unwrap()
        .is_empty());
}

/// The stopped origin's database, once its process has let go of it.
async fn reopen(dir: &tempfile::TempDir) -> redb::Database {
    let path = dir.path().join("data/attune.redb");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match redb::Database::create(&path) {
            Ok(db) => return db,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("reopen {}: {e}", path.display()),
        }
    }
}

/// Forgetting a user in the embedded mode purges their events from the log
/// too, and only theirs.
#[tokio::test]
async fn forgetting_a_user_purges_their_events_from_the_embedded_log() {
    let origin = start(Backend::Embedded, |_| {}).await;
    let site = origin.site.site_key.clone();
    for anon in ["anon-gone", "anon-kept"] {
        let events = vec![
            event(Interaction::PageView, None, now_ms()),
            event(Interaction::Click, Some("a1"), now_ms()),
        ];
        assert_eq!(
            origin
                .post_batch(&batch(&site, anon, events))
                .await
                .status(),
            202
        );
    }
    let r = origin
        .http
        .delete(origin.url("/v1/users/anon:anon-gone"))
        .bearer_auth(&origin.site.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);

    let dir = origin.stop().await;
    let db = reopen(&dir).await;
    let keys: Vec<String> = [EventKind::PageView, EventKind::Click]
        .iter()
        .flat_map(|k| read_topic(&db, topic(*k), 0).unwrap())
        .map(|(_, key, _)| key)
        .collect();
    let kept = partition_key(&site, "anon:anon-kept");
    assert_eq!(
        keys,
        [kept.clone(), kept],
        "only the kept reader's events remain"
    );
}

/// The embedded consumer (in the origin process) turns the log into profiles:
/// every event once, through duplicate batches and a restart (profiles and
/// popularity); the person's category interest and consumed items then shape
/// their recommendations.
#[tokio::test]
async fn the_embedded_consumer_counts_each_event_once_across_duplicates_and_a_restart() {
    let origin = start(Backend::Embedded, |_| {}).await;
    let site = origin.site.site_key.clone();
    origin
        .load_items(serde_json::json!({"items": [
            {"id": "a1", "tags": ["arts"]}, {"id": "a2", "tags": ["arts"]},
            {"id": "s1", "tags": ["sport"]}, {"id": "s2", "tags": ["sport"]}
        ]}))
        .await;
    let t = now_ms();
    let first = batch(
        &site,
        "reader",
        vec![
            event(Interaction::PageView, None, t),
            event(Interaction::Click, Some("a1"), t),
            event(Interaction::Dwell { visible_ms: 4000 }, Some("a1"), t),
        ],
    );
    for _ in 0..2 {
        assert_eq!(origin.post_batch(&first).await.status(), 202);
    }
    let want = serde_json::json!({"click": 1, "dwell": 1, "page_view": 1});
    let profile = wait_for_counts(&origin, "anon:reader", &want).await;
    assert_eq!(profile["dwell_ms_total"], 4000);
    assert!(
        profile["affinities"]["arts"].as_f64().unwrap() > 0.0,
        "{profile}"
    );
    let recs: Value = origin
        .get_as_site("/v1/recommendations?user=anon:reader&k=4")
        .await;
    let ids: Vec<&str> = recs["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["item"].as_str().unwrap())
        .collect();
    assert_eq!(ids[0], "a2", "the category of interest leads: {recs}");
    assert!(!ids.contains(&"a1"), "a consumed item is left out: {recs}");

    // After a restart: the old batch again (a client retry) and a new one.
    let origin = origin.restart().await;
    let second = batch(
        &site,
        "reader",
        vec![event(Interaction::Click, Some("s1"), now_ms())],
    );
    assert_eq!(origin.post_batch(&first).await.status(), 202);
    assert_eq!(origin.post_batch(&second).await.status(), 202);
    let want = serde_json::json!({"click": 2, "dwell": 1, "page_view": 1});
    wait_for_counts(&origin, "anon:reader", &want).await;
    // And it stays there: nothing was queued to count twice.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let profile: Value = origin.get_as_site("/v1/profile?user=anon:reader").await;
    assert_eq!(profile["counts"], want);
    let mut popularity = Popularity::default();
    popularity.add(&first);
    popularity.add(&second);
    popularity.check(&origin).await;
}

/// The embedded consumer learns co-visitation in the same transaction as the
/// profiles: a reader of x is recommended what other readers of x read next,
/// ahead of a more popular item, and duplicate batches count nothing twice.
#[tokio::test]
async fn the_embedded_consumer_learns_what_readers_read_next() {
    let origin = start(Backend::Embedded, |_| {}).await;
    let site = origin.site.site_key.clone();
    origin
        .load_items(serde_json::json!({"items": [
            {"id": "x", "tags": ["news"]}, {"id": "y", "tags": ["news"]},
            {"id": "z", "tags": ["news"]}, {"id": "w", "tags": ["news"]}
        ]}))
        .await;
    let t = now_ms();
    let click = |item: &str, dt: i64| event(Interaction::Click, Some(item), t + dt);
    for fan in 0..8 {
        let b = batch(&site, &format!("fan{fan}"), vec![click("z", 0)]);
        assert_eq!(origin.post_batch(&b).await.status(), 202);
    }
    for reader in ["r1", "r2"] {
        let b = batch(&site, reader, vec![click("x", 0), click("y", 1)]);
        for _ in 0..2 {
            assert_eq!(origin.post_batch(&b).await.status(), 202);
        }
        wait_for_counts(
            &origin,
            &format!("anon:{reader}"),
            &serde_json::json!({"click": 2}),
        )
        .await;
    }
    let b = batch(&site, "r3", vec![click("x", 2)]);
    assert_eq!(origin.post_batch(&b).await.status(), 202);
    wait_for_counts(&origin, "anon:r3", &serde_json::json!({"click": 1})).await;
    // Popularity is flushed in the background: wait until it ranks z first.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let cold: Value = origin
            .get_as_site("/v1/recommendations?user=anon:newcomer&k=3")
            .await;
        if cold["items"][0]["item"] == "z" {
            break;
        }
        assert!(Instant::now() < deadline, "popularity never led: {cold}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let recs: Value = origin
        .get_as_site("/v1/recommendations?user=anon:r3&k=3")
        .await;
    assert_eq!(recs["items"][0]["item"], "y", "{recs}");
}

/// The embedded consumer trains the online model and validates it live,
/// as the Kafka consumer does: its numbers on the dashboard are exactly an
/// offline prequential run's (`common::learning`), and a learner's rail is
/// ranked by the model.
#[tokio::test]
async fn the_embedded_model_learns_and_its_live_validation_matches_an_offline_run() {
    let origin = start(Backend::Embedded, |_| {}).await;
    crate::common::learning::live_validation_matches_offline(&origin, || async {
        let d = origin.get_as_site("/v1/dashboard").await;
        let v = &d["consumers"][0]["validation"];
        Some((
            v["evaluated"].as_u64()?,
            v["hits"].as_u64()?,
            v["hr10"].as_f64()?,
        ))
    })
    .await;
    let recs: Value = origin
        .get_as_site("/v1/recommendations?user=anon:planted0-0&k=3")
        .await;
    assert_eq!(recs["model"], "covisit+mf+popularity", "{recs}");
}

async fn wait_for_counts(origin: &crate::common::TestOrigin, user: &str, want: &Value) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let profile: Value = origin
            .get_as_site(&format!("/v1/profile?user={user}"))
            .await;
        if &profile["counts"] == want {
            return profile;
        }
        assert!(
            Instant::now() < deadline,
            "counts never became {want}: {profile}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Any bytes, as MessagePack or JSON, plain or "gzip": a 4xx with a JSON
    /// error, never a 5xx or a dropped connection.
    #[test]
    fn arbitrary_bytes_get_a_client_error(
        body in proptest::collection::vec(any::<u8>(), 0..4096),
        json_type in any::<bool>(),
        gzip in any::<bool>(),
    ) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let origin = rt.block_on(fuzz_origin());
        let status = rt.block_on(async {
            let mut req = origin
                .http
                .post(origin.url("/v1/events"))
                .header("content-type", if json_type { "application/json" } else { "application/msgpack" })
                .body(body);
            if gzip {
                req = req.header("content-encoding", "gzip");
            }
            let r = req.send().await.expect("the origin answers");
            let status = r.status().as_u16();
            let body: Value = r.json().await.expect("a JSON error body");
            assert!(body["error"].is_string());
            status
        });
        prop_assert!((400..500).contains(&status), "status {status}");
    }
}

/// One origin for all fuzz cases (started on first use, in its own runtime thread).
async fn fuzz_origin() -> &'static crate::common::TestOrigin {
    static ORIGIN: std::sync::OnceLock<crate::common::TestOrigin> = std::sync::OnceLock::new();
    if let Some(o) = ORIGIN.get() {
        return o;
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let origin = start(Backend::Embedded, |_| {}).await;
            let base = origin.base.clone();
            tx.send(origin).unwrap();
            let _ = base;
            std::future::pending::<()>().await;
        });
    });
    let origin = rx.recv().unwrap();
    ORIGIN.get_or_init(|| origin)
}

/// The embedded consumer counts a served rail's impressions and clicks by
/// ranker and position, each once through a resent batch, like the Kafka
/// consumers; the dashboard reports them.
#[tokio::test]
async fn the_embedded_consumer_counts_served_rails_once() {
    let origin = start(Backend::Embedded, |_| {}).await;
    let site = origin.site.site_key.clone();
    let serve = attune_core::rail::serve_id(attune_core::rail::Ranker::Personal, 7);
    let slotted = |kind, position| {
        let mut e = event(kind, Some("a1"), now_ms());
        e.slot = Some(attune_core::Slot {
            serve_id: serve.clone(),
            position,
        });
        e
    };
    let b = batch(
        &site,
        "anon-rail",
        vec![
            slotted(Interaction::Impression, 4),
            slotted(Interaction::Click, 4),
            slotted(Interaction::Impression, 5),
        ],
    );
    for _ in 0..2 {
        assert_eq!(origin.post_batch(&b).await.status(), 202);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let rails = loop {
        // Both copies through the consumer: three applied, three duplicates.
        let d = origin.get_as_site("/v1/dashboard").await;
        let seen: u64 = d["consumers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                c["events_applied"].as_u64().unwrap() + c["events_duplicate"].as_u64().unwrap()
            })
            .sum();
        if seen >= 6 || Instant::now() > deadline {
            break d["rails"].as_array().cloned().unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let rows: Vec<(&str, &str, u64, u64)> = rails
        .iter()
        .map(|r| {
            (
                r["ranker"].as_str().unwrap(),
                r["position"].as_str().unwrap(),
                r["shown"].as_u64().unwrap(),
                r["clicked"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(rows, [("personal", "4", 1, 1), ("personal", "5", 1, 0)]);
}

/// Model versions in the embedded mode, over the API: a stuck challenger is
/// refused, then (promoted by hand) beaten by a normal retrain, which is
/// promoted; every version goes on learning every event (its count per
/// reader, in the redb file, equals what the reader sent); a rollback and
/// a promotion back restore the rails. Seen failing with the new events
/// taught to the serving version only.
#[tokio::test]
async fn embedded_versions_retrain_promote_roll_back_and_each_learns_every_event() {
    use attune_origin::model::versions::versioned;
    use attune_origin::store::embedded::VERSION_STEPS;
    let origin = start(Backend::Embedded, |_| {}).await;
    let site = origin.site.site_key.clone();
    crate::common::learning::post_planted_turns(&origin).await;
    let readers: Vec<String> = (0..30).map(|r| format!("anon:turns{r}")).collect();
    // Every click applied before retraining (the retrain fits what the consumer has).
    for u in &readers {
        wait_for_counts(&origin, u, &serde_json::json!({"click": 30})).await;
    }
    let api = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        api.post(origin.url(path))
            .bearer_auth(&origin.site.api_key)
            .json(&body)
            .send()
    };
    let worse: Value = post(
        "/v1/models/retrain",
        serde_json::json!({"epochs": [1], "learning_rate": [0.0001]}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(worse["version"], 2, "{worse}");
    assert_eq!(worse["lessons"], 900, "{worse}");
    assert_eq!(worse["comparison"]["better"], false, "{worse}");
    assert_eq!(worse["promoted"], false, "{worse}");
    let bad = post("/v1/models/retrain", serde_json::json!({"epochs": [0]}))
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let promoted: Value = post("/v1/models/2/promote", Value::Null)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(promoted["serving"], 2, "{promoted}");
    let better: Value = post(
        "/v1/models/retrain",
        serde_json::json!({"epochs": [1, 8], "regularization": [0.01]}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(better["version"], 3, "{better}");
    assert_eq!(better["comparison"]["champion"], 2, "{better}");
    assert_eq!(better["promoted"], true, "{better}");

    // Three more clicks per reader after both retrains.
    let t = now_ms();
    for (r, u) in readers.iter().enumerate() {
        let events = (0..3)
            .map(|n| {
                event(
                    Interaction::Click,
                    Some(&format!("k{}-{}", r % 3, 30 + n)),
                    t + n as i64,
                )
            })
            .collect();
        let b = batch(&site, u.strip_prefix("anon:").unwrap(), events);
        assert_eq!(origin.post_batch(&b).await.status(), 202);
    }
    for u in &readers {
        wait_for_counts(&origin, u, &serde_json::json!({"click": 33})).await;
    }

    // The pointer alone decides the rails.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let under_3 = crate::common::top_items(&origin, &readers).await;
    let back: Value = post("/v1/models/rollback", Value::Null)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(back["serving"], 2, "{back}");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_ne!(
        crate::common::top_items(&origin, &readers).await,
        under_3,
        "version 2 ranks differently"
    );
    post("/v1/models/3/promote", Value::Null).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        crate::common::top_items(&origin, &readers).await,
        under_3,
        "version 3's rails again"
    );

    // Every version learned each reader's 33 clicks once.
    let dir = origin.stop().await;
    let db = reopen(&dir).await;
    let tx = db.begin_read().unwrap();
    let steps = tx.open_table(VERSION_STEPS).unwrap();
    for v in 1..=3 {
        let vsite = versioned(&site, v);
        for u in &readers {
            let n = steps
                .get((vsite.as_str(), u.as_str()))
                .unwrap()
                .map(|s| s.value());
            assert_eq!(n, Some(33), "version {v}, {u}");
        }
    }
}
