//! Model versions on real Kafka and Redis: `attune-origin retrain` fits a
//! version from the log, `model promote|rollback` moves the serving
//! pointer, and the consumers catch the serving version up by replay —
//! every event learned by every version exactly once, counted per user in
//! the version's own `steps`.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use attune_core::Batch;
use attune_origin::model::versions::versioned;
use attune_origin::store::redis::user_key;
use serde_json::Value;

use crate::common::kafka::{setup, Consumer};
use crate::common::learning::{catalog, planted_batches};
use crate::common::{env, TestOrigin};

/// Runs `attune-origin <args>` for the deployment with `prefix`; its stdout.
fn origin_cli(prefix: &str, origin: &TestOrigin, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_attune-origin"))
        .args(args)
        .env("KAFKA_BROKERS", env("KAFKA_BROKERS"))
        .env("REDIS_URL", env("REDIS_URL"))
        .env("ATTUNE_TOPIC_PREFIX", prefix)
        .env("ATTUNE_CONFIG", origin.sites_file())
        .env("RUST_LOG", "warn")
        .output()
        .expect("run attune-origin");
    assert!(
        out.status.success(),
        "attune-origin {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A retrain with `args` (a small grid unless they name one); its outcome.
fn retrain(prefix: &str, origin: &TestOrigin, extra: &[&str]) -> Value {
    let mut args = vec!["retrain", "--json"];
    for (flag, quick) in [("--epochs", "1,5"), ("--regularization", "0.01,0.03")] {
        if !extra.contains(&flag) {
            args.extend([flag, quick]);
        }
    }
    args.extend(extra);
    serde_json::from_str(&origin_cli(prefix, origin, &args)).unwrap()
}

/// Each reader's events learned by `version` (its user-side `steps`).
fn steps(site: &str, users: &[String], version: u32) -> BTreeMap<String, u64> {
    let mut redis = attune_origin::store::redis::conn::SyncConn::open(&env("REDIS_URL")).unwrap();
    let mut pipes = attune_origin::store::redis::conn::Pipes::new();
    for u in users {
        pipes.add(redis::Cmd::hget(
            user_key(site, u, &versioned("vector_wm", version)),
            "steps",
        ));
    }
    let got: Vec<Option<u64>> = pipes.query_as(&mut redis).unwrap();
    users
        .iter()
        .cloned()
        .zip(got.into_iter().map(Option::unwrap_or_default))
        .collect()
}

/// Waits until `version` has learned exactly `want` per reader, then checks
/// it stays there (nothing learned twice arrives late).
async fn wait_steps(site: &str, want: &BTreeMap<String, u64>, version: u32, what: &str) {
    let users: Vec<String> = want.keys().cloned().collect();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let got = steps(site, &users, version);
        if &got == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: version {version} learned {got:?}, expected {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(&steps(site, &users, version), want, "{what}: learned late");
}

fn user_of(b: &Batch) -> String {
    format!("anon:{}", b.anonymous_id)
}

/// Posts `batches` (each accepted) and adds their events to `sent`.
async fn post(origin: &TestOrigin, batches: &[Batch], sent: &mut BTreeMap<String, u64>) {
    for b in batches {
        assert_eq!(origin.post_batch(b).await.status(), 202);
        *sent.entry(user_of(b)).or_default() += b.events.len() as u64;
    }
}

/// The pointer and the ranking snapshots are re-read within a second each.
async fn pointer_seen() {
    tokio::time::sleep(Duration::from_millis(2_500)).await;
}

/// A version fitted while the consumer is down and promoted, a version
/// promoted while the consumer runs and events arrive, and a rollback: each
/// version ends having learned every event once (client retries of the
/// same batch included), and the rollback serves the previous version's
/// recommendations again.
///
/// Seen failing: with the consumers not restarting when the pointer moves,
/// version 3 never learned the events after its fit; with replays judged
/// by the profile's ids instead of first records, version 3 missed D's
/// first half, which the consumer had applied under version 2 before the
/// pointer moved; without the fit's floor, version 2 learned phase B twice.
#[tokio::test]
async fn versions_learn_every_event_once_across_promotions_and_a_rollback() {
    let (prefix, origin) = setup().await;
    let site = origin.site.site_key.clone();
    origin.load_items(catalog()).await;
    let batches = planted_batches(&site);
    let quarter = batches.len() / 4;
    let (a, rest) = batches.split_at(quarter);
    let (b, rest) = rest.split_at(quarter);
    let (c, d) = rest.split_at(quarter);
    let group = format!("g-{prefix}");
    let mut sent = BTreeMap::new();

    // A, with every fourth batch sent twice (a client retry: the same ids).
    let consumer = Consumer::start(&prefix, &group);
    post(&origin, a, &mut sent).await;
    for retry in a.iter().step_by(4) {
        assert_eq!(origin.post_batch(retry).await.status(), 202);
    }
    wait_steps(&site, &sent, 1, "version 1 online").await;
    let after_a = sent.clone();

    // B while the consumer is down; version 2 is fitted on A + B.
    consumer.kill9();
    post(&origin, b, &mut sent).await;
    let fitted = retrain(&prefix, &origin, &["--no-promote"]);
    assert_eq!(fitted["version"], 2, "{fitted}");
    assert_eq!(fitted["promoted"], false, "{fitted}");
    let lessons: u64 = sent.values().sum();
    assert_eq!(fitted["lessons"], lessons, "every event once: {fitted}");
    let fitted_steps: BTreeMap<String, u64> = sent.clone();
    let users: Vec<String> = sent.keys().cloned().collect();
    assert_eq!(steps(&site, &users, 2), fitted_steps, "the fit's own count");

    // Promote 2, then C; the consumer comes back for version 2: it must
    // learn C (after the fit) and not A or B again, though it replays B.
    origin_cli(&prefix, &origin, &["model", "promote", "2"]);
    post(&origin, c, &mut sent).await;
    let consumer = Consumer::start(&prefix, &group);
    wait_steps(&site, &sent, 2, "version 2 after its promotion").await;
    assert_eq!(steps(&site, &users, 1), after_a, "version 1 stopped at A");

    // Version 3 fitted now, promoted while the consumer runs, with D half
    // before and half after the promotion.
    let fitted = retrain(&prefix, &origin, &["--no-promote"]);
    assert_eq!(fitted["version"], 3, "{fitted}");
    let (d1, d2) = d.split_at(d.len() / 2);
    post(&origin, d1, &mut sent).await;
    origin_cli(&prefix, &origin, &["model", "promote", "3"]);
    post(&origin, d2, &mut sent).await;
    wait_steps(&site, &sent, 3, "version 3 promoted under traffic").await;

    // Roll back: version 2 catches up on what version 3 served through.
    let listed = origin_cli(&prefix, &origin, &["model", "rollback"]);
    assert!(listed.contains("history: [1, 2, 3, 2]"), "{listed}");
    wait_steps(&site, &sent, 2, "version 2 after the rollback").await;
    assert_eq!(steps(&site, &users, 1), after_a, "version 1 untouched");

    // With nothing new arriving, the pointer alone decides the rails.
    pointer_seen().await;
    let under_2 = crate::common::top_items(&origin, &users).await;
    let moves = origin.metric("attune_model_pointer_moves_total").await;
    let promoted: Value = origin
        .post_as_site("/v1/models/3/promote", &Value::Null)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(promoted["serving"], 3, "{promoted}");
    // Counted (other tests of this process may move their pointers too).
    assert!(origin.metric("attune_model_pointer_moves_total").await > moves);
    pointer_seen().await;
    wait_steps(&site, &sent, 3, "version 3 again").await;
    let under_3 = crate::common::top_items(&origin, &users).await;
    assert_ne!(under_2, under_3, "the versions rank differently");
    let back: Value = origin
        .post_as_site("/v1/models/rollback", &Value::Null)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(back["serving"], 2, "{back}");
    pointer_seen().await;
    assert_eq!(
        crate::common::top_items(&origin, &users).await,
        under_2,
        "rollback restores version 2's rails"
    );
    drop(consumer);
}

/// On data with a known structure: a challenger whose steps barely move
/// the factors is worse than the online model beyond chance and refused;
/// served anyway (promoted by hand), it is the champion a normal retrain
/// beats beyond chance, and that challenger is promoted. Seen failing with
/// the gate always open (the worse one was promoted) and always shut.
#[tokio::test]
async fn a_better_challenger_is_promoted_and_a_worse_one_refused() {
    let (prefix, origin) = setup().await;
    crate::common::learning::post_planted_turns(&origin).await;

    let stuck = ["--epochs", "1", "--learning-rate", "0.0001"];
    let worse = retrain(&prefix, &origin, &stuck);
    assert_eq!(worse["version"], 2, "{worse}");
    assert_eq!(worse["lessons"], 900, "{worse}");
    let c = &worse["comparison"];
    assert_eq!(c["champion"], 1, "{worse}");
    assert!(c["diff_high"].as_f64().unwrap() < 0.0, "{worse}");
    assert_eq!(c["better"], false, "{worse}");
    assert_eq!(worse["promoted"], false, "{worse}");

    origin_cli(&prefix, &origin, &["model", "promote", "2"]);
    let better = retrain(
        &prefix,
        &origin,
        &["--epochs", "1,8", "--regularization", "0.01"],
    );
    assert_eq!(better["version"], 3, "{better}");
    let c = &better["comparison"];
    assert_eq!(
        c["champion"], 2,
        "compared with the serving version: {better}"
    );
    assert!(c["diff_low"].as_f64().unwrap() > 0.0, "{better}");
    assert_eq!(c["better"], true, "{better}");
    assert_eq!(better["promoted"], true, "{better}");

    let listed: Value =
        serde_json::from_str(&origin_cli(&prefix, &origin, &["model", "list", "--json"])).unwrap();
    assert_eq!(listed["serving"], 3, "{listed}");
    assert_eq!(listed["history"], serde_json::json!([1, 2, 3]), "{listed}");
    let api: Value = origin.get_as_site("/v1/models").await;
    assert_eq!(api, listed, "the API shows the same registry");

    // The same retrain over the API, from the origin process.
    let search = serde_json::json!({"epochs": [1], "learning_rate": [0.0001]});
    let over_api: Value = origin
        .post_as_site("/v1/models/retrain", &search)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(over_api["version"], 4, "{over_api}");
    assert_eq!(over_api["comparison"]["champion"], 3, "{over_api}");
    assert_eq!(over_api["promoted"], false, "{over_api}");
}

/// A consumer with a retraining schedule retrains on its own: a version
/// fitted from the log appears and, better than the stuck champion, is
/// promoted. (Seen failing with the schedule never due.)
#[tokio::test]
async fn the_consumers_schedule_retrains_and_promotes() {
    let (prefix, origin) = setup().await;
    crate::common::learning::post_planted_turns(&origin).await;
    // A stuck champion the scheduled retrain must beat.
    retrain(
        &prefix,
        &origin,
        &["--epochs", "1", "--learning-rate", "0.0001"],
    );
    origin_cli(&prefix, &origin, &["model", "promote", "2"]);
    let consumer = Consumer::start_env(
        &prefix,
        &format!("g-{prefix}"),
        Some(origin.sites_file()),
        None,
        &[("ATTUNE_RETRAIN_EVERY_S", "3")],
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let listed: Value = origin.get_as_site("/v1/models").await;
        if listed["serving"] == 3 {
            let v3 = &listed["versions"][2];
            assert_eq!(v3["comparison"]["champion"], 2, "{listed}");
            assert_eq!(v3["fitted_events"], 900, "{listed}");
            // The decision is counted where the consumer runs.
            while consumer.metric("attune_model_retrains_total").await < 1.0 {
                assert!(Instant::now() < deadline, "the retrain was not counted");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            break;
        }
        assert!(Instant::now() < deadline, "no scheduled retrain: {listed}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
