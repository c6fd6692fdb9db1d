//! Experiments end to end: definitions through the API with clear errors,
//! rails served by the arm attune-core assigns, one exposure per (unit,
//! experiment, phase) through Kafka into Redis (the first kept), metrics per
//! arm counted from each unit's exposure on, forget, and phases. The same
//! definitions, serving and results on the embedded default.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::common::kafka::{read_topic, setup, Consumer};
use crate::common::{batch, env, event, now_ms, start, Backend, TestOrigin};
use attune_core::routing::EXPOSURES;
use attune_core::{Interaction, Slot};
use attune_origin::experiments::definition::{Experiment, ExperimentSpec};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use rdkafka::Message;
use serde_json::{json, Value};

const KEY: &str = "rail-test";

fn definition(weights: [f64; 2]) -> Value {
    json!({"variants": [
        {"name": "control", "ranker": "production", "weight": weights[0]},
        {"name": "treatment", "ranker": "popularity", "weight": weights[1]},
    ]})
}

async fn put(origin: &TestOrigin, key: &str, body: &Value) -> (u16, Value) {
    let r = origin
        .http
        .put(origin.url(&format!("/v1/experiments/{key}")))
        .bearer_auth(&origin.site.api_key)
        .json(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn serve(origin: &TestOrigin, user: &str) -> Value {
    origin
        .get_as_site(&format!("/v1/recommendations?user={user}&k=3"))
        .await
}

/// Waits until the results count `units` exposed units.
async fn results_with(origin: &TestOrigin, query: &str, units: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = origin
            .get_as_site(&format!("/v1/experiments/{KEY}/results{query}"))
            .await;
        if r["units"] == units {
            return r;
        }
        assert!(Instant::now() < deadline, "never {units} units: {r}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The origin's count of exposures it logged (this process, every site).
async fn exposures_logged(origin: &TestOrigin) -> f64 {
    let prefix = "attune_experiment_exposures_total{outcome=\"logged\"} ";
    origin
        .metrics()
        .await
        .lines()
        .filter_map(|l| l.strip_prefix(prefix)?.trim().parse::<f64>().ok())
        .sum()
}

fn metric<'a>(results: &'a Value, name: &str) -> &'a Value {
    results["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("{name} in {results}"))
}

/// Bad definitions are refused with the field and what to do.
async fn definitions_are_checked(origin: &TestOrigin) {
    let (status, body) = put(origin, KEY, &definition([0.5, 0.4])).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["field"], "variants");
    assert!(
        body["message"].as_str().unwrap().contains("must sum to 1"),
        "{body}"
    );
    let mut unknown = definition([0.5, 0.5]);
    unknown["variants"][1]["ranker"] = json!("magic");
    let (status, body) = put(origin, KEY, &unknown).await;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("variants[1].ranker"))
    );
    let user = origin
        .http
        .put(origin.url(&format!("/v1/experiments/{KEY}")))
        .bearer_auth(origin.token("u"))
        .json(&definition([0.5, 0.5]))
        .send()
        .await
        .unwrap();
    assert_eq!(user.status(), 403, "a user token cannot define experiments");
}

/// Serves `users` and checks each rail against attune-core's assignment;
/// returns each user's arm.
async fn serve_all(origin: &TestOrigin, users: &[String]) -> BTreeMap<String, usize> {
    let stored: Vec<Experiment> =
        serde_json::from_value(origin.get_as_site("/v1/experiments").await).unwrap();
    let experiment = stored.iter().find(|e| e.key == KEY).expect("listed");
    let mut arms = BTreeMap::new();
    for user in users {
        let rail = serve(origin, user).await;
        let arm = experiment
            .arm_of(user)
            .expect("full coverage assigns everyone");
        assert_eq!(rail["experiment"]["key"], KEY, "{rail}");
        assert_eq!(
            rail["experiment"]["variant"],
            experiment.variants[arm].name.as_str()
        );
        if arm == 1 {
            assert_eq!(rail["ranker"], "popularity", "{rail}");
        }
        // A second serve logs nothing new.
        serve(origin, user).await;
        arms.insert(user.clone(), arm);
    }
    assert!(arms.values().any(|a| *a == 0) && arms.values().any(|a| *a == 1));
    arms
}

/// Each user: `impressions` rail impressions and `clicks` rail clicks,
/// `ago_ms` before now; long ago, the clicks are on items past the rail
/// (`i4`, `i5`…), so later clicks on the rail's are new reads.
async fn engage_at(
    origin: &TestOrigin,
    user: &str,
    impressions: usize,
    clicks: usize,
    ago_ms: i64,
) {
    let t = now_ms() - ago_ms;
    let slotted = |kind, i: usize| {
        let mut e = event(kind, Some(&format!("i{i}")), t);
        e.slot = Some(Slot {
            serve_id: "popularity.0123456789abcdef0123456789abcdef".into(),
            position: i as u8,
        });
        e
    };
    let mut events: Vec<_> = (0..impressions)
        .map(|i| slotted(Interaction::Impression, i))
        .collect();
    let first = if ago_ms > 0 { 4 } else { 0 };
    events.extend((first..first + clicks).map(|i| slotted(Interaction::Click, i)));
    let anon = user.strip_prefix("anon:").unwrap();
    let b = batch(&origin.site.site_key, anon, events);
    assert_eq!(origin.post_batch(&b).await.status(), 202);
}

async fn engage(origin: &TestOrigin, user: &str, impressions: usize, clicks: usize) {
    engage_at(origin, user, impressions, clicks, 0).await;
}

/// Waits until `user`'s profile counts `clicks` clicks and `impressions`
/// impressions.
async fn wait_for_counts(origin: &TestOrigin, user: &str, clicks: u64, impressions: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let p = origin
            .get_as_site(&format!("/v1/profile?user={user}"))
            .await;
        let count = |kind: &str| p["counts"][kind].as_u64().unwrap_or(0);
        if (count("click"), count("impression")) == (clicks, impressions) {
            return;
        }
        assert!(Instant::now() < deadline, "{user}: {p}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn load_catalog(origin: &TestOrigin) {
    let items: Vec<Value> = (0..6)
        .map(|i| json!({"id": format!("i{i}"), "tags": ["news"]}))
        .collect();
    origin.load_items(json!({ "items": items })).await;
}

#[tokio::test]
async fn experiments_serve_by_arm_expose_once_and_measure_from_the_exposure_on() {
    let (prefix, origin) = setup().await;
    let consumer = Consumer::start(&prefix, &format!("g-{prefix}"));
    load_catalog(&origin).await;
    definitions_are_checked(&origin).await;
    let (status, created) = put(&origin, KEY, &definition([0.5, 0.5])).await;
    assert_eq!(
        (status, created["phase"].as_u64()),
        (200, Some(1)),
        "{created}"
    );

    // Every reader clicked twice, three hours before the experiment: not
    // its doing, and a session of its own.
    let users: Vec<String> = (0..40).map(|i| format!("anon:x{i}")).collect();
    for user in &users {
        engage_at(&origin, user, 0, 2, 3 * 3_600_000).await;
    }
    for user in &users {
        wait_for_counts(&origin, user, 2, 0).await;
    }
    let logged_before = exposures_logged(&origin).await;
    let arms = serve_all(&origin, &users).await;
    // The counter moves with the exposures (other tests in this process may
    // add theirs: at least one per reader).
    let logged = exposures_logged(&origin).await - logged_before;
    assert!(
        logged >= 40.0,
        "attune_experiment_exposures_total moved by {logged}"
    );
    // The edge's shared newcomer list is no reader: no arm, no exposure.
    let cold = serve(&origin, attune_core::routing::COLD_LIST_USER).await;
    assert!(cold["experiment"].is_null(), "{cold}");

    // One exposure per reader on the topic, with the clicks before it.
    let topic = format!("{prefix}{EXPOSURES}");
    let records = read_topic(&env("KAFKA_BROKERS"), &topic, 41, Duration::from_secs(5));
    assert_eq!(records.len(), 40, "one exposure per reader and phase");
    let first: Value = serde_json::from_slice(records[0].payload().unwrap()).unwrap();
    assert_eq!(first["baseline"]["clicks"], 2, "{first}");

    // Treatment readers click 2 of 4 rail items, control readers none.
    for (user, arm) in &arms {
        engage(&origin, user, 4, if *arm == 1 { 2 } else { 0 }).await;
    }
    for (user, arm) in &arms {
        wait_for_counts(&origin, user, if *arm == 1 { 4 } else { 2 }, 4).await;
    }
    let r = results_with(&origin, "", 40).await;
    let per_arm: Vec<u64> = r["arms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["units"].as_u64().unwrap())
        .collect();
    let expected: Vec<u64> = (0..2)
        .map(|a| arms.values().filter(|x| **x == a).count() as u64)
        .collect();
    assert_eq!(per_arm, expected, "{r}");
    assert_eq!(
        metric(&r, "clicks_per_unit")["values"],
        json!([0.0, 2.0]),
        "{r}"
    );
    assert_eq!(metric(&r, "rail_ctr")["values"], json!([0.0, 0.5]), "{r}");
    // They came back for it: one return visit each, clicks per session as
    // per reader (the exposure's session and the return).
    assert_eq!(
        metric(&r, "return_visits_per_unit")["values"],
        json!([1.0, 1.0]),
        "{r}"
    );
    assert_eq!(
        metric(&r, "reads_per_session")["values"],
        json!([0.0, 1.0]),
        "{r}"
    );
    assert!(r["srm"]["p_value"].as_f64().is_some(), "{r}");

    // A second origin's copy of an exposure, other arm and all: the first stays.
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", env("KAFKA_BROKERS"))
        .create()
        .unwrap();
    let mut copy = first.clone();
    copy["arm"] = json!(1 - first["arm"].as_u64().unwrap());
    let payload = serde_json::to_vec(&copy).unwrap();
    let key = records[0].key().unwrap().to_vec();
    producer
        .send(
            FutureRecord::to(&topic).key(&key).payload(&payload),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while consumer
        .metric("attune_consumer_exposures_total{outcome=\"duplicate\"}")
        .await
        < 1.0
    {
        assert!(Instant::now() < deadline, "the copy was never read");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let again = results_with(&origin, "", 40).await;
    assert_eq!(again["arms"], r["arms"], "the first exposure stays");

    // A Redis restored from before the exposures (they and the store's
    // positions on their topic gone): a restarted consumer replays them.
    let mut conn = attune_origin::store::redis::conn::SyncConn::open(&env("REDIS_URL")).unwrap();
    let _: () = redis::cmd("DEL")
        .arg(attune_origin::store::redis::exposures_key(
            &origin.site.site_key,
            KEY,
            1,
        ))
        .query(&mut conn)
        .unwrap();
    for p in 0..attune_core::routing::PARTITIONS_PER_TOPIC {
        let _: () = redis::cmd("HDEL")
            .arg(attune_origin::store::redis::RESUME_KEY)
            .arg(format!("{topic}:{p}"))
            .query(&mut conn)
            .unwrap();
    }
    results_with(&origin, "", 0).await;
    consumer.kill9();
    let _consumer = Consumer::start(&prefix, &format!("g-{prefix}"));
    let restored = results_with(&origin, "", 40).await;
    assert_eq!(
        restored["arms"], r["arms"],
        "every exposure is back, as it was"
    );

    // Forget leaves no exposure behind.
    let forgotten = first["unit"].as_str().unwrap();
    let del = origin
        .http
        .delete(origin.url(&format!("/v1/users/{forgotten}")))
        .bearer_auth(&origin.site.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 204);
    results_with(&origin, "", 39).await;

    // New weights: a new phase, with its own exposures; the old one stays readable.
    let (status, moved) = put(&origin, KEY, &definition([0.3, 0.7])).await;
    assert_eq!((status, moved["phase"].as_u64()), (200, Some(2)), "{moved}");
    results_with(&origin, "", 0).await;
    results_with(&origin, "?phase=1", 39).await;
    let remembered = users.iter().find(|u| *u != forgotten).unwrap();
    serve(&origin, remembered).await;
    results_with(&origin, "", 1).await;
}

#[tokio::test]
async fn experiments_on_the_embedded_default() {
    let origin = start(Backend::Embedded, |_| {}).await;
    load_catalog(&origin).await;
    definitions_are_checked(&origin).await;
    let spec: ExperimentSpec = serde_json::from_value(definition([0.5, 0.5])).unwrap();
    let (status, _) = put(&origin, KEY, &serde_json::to_value(&spec).unwrap()).await;
    assert_eq!(status, 200);
    let users: Vec<String> = (0..20).map(|i| format!("anon:e{i}")).collect();
    let arms = serve_all(&origin, &users).await;
    for (user, arm) in &arms {
        engage(&origin, user, 4, if *arm == 1 { 1 } else { 0 }).await;
    }
    for (user, arm) in &arms {
        wait_for_counts(&origin, user, if *arm == 1 { 1 } else { 0 }, 4).await;
    }
    let r = results_with(&origin, "", 20).await;
    assert_eq!(metric(&r, "rail_ctr")["values"], json!([0.0, 0.25]), "{r}");
}

fn file_experiment(weights: [f64; 2]) -> String {
    format!(
        "\n[sites.experiments.from-file]\ncoverage = 0.5\n\
         [[sites.experiments.from-file.variants]]\nname = \"control\"\nranker = \"production\"\nweight = {}\n\
         [[sites.experiments.from-file.variants]]\nname = \"popular\"\nranker = \"popularity\"\nweight = {}\n",
        weights[0], weights[1]
    )
}

/// The sites file defines experiments at start: the same definition again
/// keeps the phase, new weights start the next one, and a bad definition
/// stops the origin with the site, key and field.
#[tokio::test]
async fn the_sites_file_defines_experiments() {
    let origin = start(Backend::Embedded, |_| {}).await;
    let path = origin.sites_file().to_owned();
    let base = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, base.clone() + &file_experiment([0.5, 0.5])).unwrap();
    let origin = origin.restart().await;
    let listed = origin.get_as_site("/v1/experiments").await;
    assert_eq!(listed[0]["key"], "from-file", "{listed}");
    assert_eq!(
        (listed[0]["phase"].as_u64(), listed[0]["coverage"].as_f64()),
        (Some(1), Some(0.5))
    );
    let origin = origin.restart().await;
    let again = origin.get_as_site("/v1/experiments").await;
    assert_eq!(again, listed, "the same definition changes nothing");
    std::fs::write(&path, base.clone() + &file_experiment([0.2, 0.8])).unwrap();
    let origin = origin.restart().await;
    let moved = origin.get_as_site("/v1/experiments").await;
    assert_eq!(moved[0]["phase"], 2, "{moved}");
    std::fs::write(&path, base + &file_experiment([0.2, 0.7])).unwrap();
    let e = attune_origin::config::load_sites(Some(&path)).unwrap_err();
    let words = format!("{e:#}");
    assert!(
        words.contains("experiment `from-file`: variants: the weights sum to 0.9"),
        "{words}"
    );
}

/// Interleave mode on Kafka and Redis: every reader gets one rail merging
/// both rankings, its serve id says which placed each slot, and clicks are
/// credited to that ranking, per reader, from the exposure on.
#[tokio::test]
async fn interleaved_rails_credit_clicks_to_the_ranking_that_placed_them() {
    let (prefix, origin) = setup().await;
    let _consumer = Consumer::start(&prefix, &format!("g-{prefix}"));
    load_catalog(&origin).await;
    let mut body = definition([0.5, 0.5]);
    body["mode"] = json!("interleave");
    let (status, created) = put(&origin, KEY, &body).await;
    assert_eq!(status, 200, "{created}");
    let mut b_slots = Vec::new();
    for i in 0..30 {
        let user = format!("anon:il{i}");
        let rail = serve(&origin, &user).await;
        assert_eq!(rail["ranker"], "interleaved", "{rail}");
        let serve_id = rail["serve_id"].as_str().unwrap().to_owned();
        // The reader clicks every item the second ranking placed.
        let t = now_ms();
        let events: Vec<_> = rail["items"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
            .filter(|(p, _)| {
                attune_core::rail::team_at(&serve_id, *p as u8)
                    == Some(attune_core::experiments::Team::B)
            })
            .map(|(p, item)| {
                let mut e = event(Interaction::Click, item["item"].as_str(), t);
                e.slot = Some(Slot {
                    serve_id: serve_id.clone(),
                    position: p as u8,
                });
                e
            })
            .collect();
        b_slots.push(events.len() as f64);
        let b = batch(&origin.site.site_key, &format!("il{i}"), events);
        assert_eq!(origin.post_batch(&b).await.status(), 202);
    }
    let total: f64 = b_slots.iter().sum();
    assert!(total > 0.0, "the second ranking placed some items");
    let deadline = Instant::now() + Duration::from_secs(60);
    let r = loop {
        let r = results_with(&origin, "", 30).await;
        let m = metric(&r, "interleaved_clicks_per_unit");
        if m["values"][1]
            .as_f64()
            .is_some_and(|v| (v - total / 30.0).abs() < 1e-9)
        {
            break r;
        }
        assert!(Instant::now() < deadline, "{r}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let m = metric(&r, "interleaved_clicks_per_unit");
    assert_eq!(
        m["values"][0], 0.0,
        "nothing credited to the first ranking: {r}"
    );
    let d = m["comparisons"][0]["difference"]["value"].as_f64().unwrap();
    assert!((d - total / 30.0).abs() < 1e-9, "{r}");
    assert!(r["srm"].is_null());
}
