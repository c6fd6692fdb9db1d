//! The profile rules exist twice: the Redis profile script (Lua, the Kafka
//! consumers) and `StoredProfile::apply` (Rust, the embedded consumer). The
//! same events through both must give the same profile, field by field.

use attune_core::HalfLife;
use attune_origin::consume::apply::ProfileWriter;
use attune_origin::store::embedded::StoredProfile;
use attune_origin::store::profile_event::ProfileEvent;
use attune_origin::store::redis::RedisStore;
use attune_origin::store::Store;

use crate::common::{env, now_ms};

/// An event of `kind` on `item` with the catalog's `tags`, at `ago_ms`
/// before `now` (the sequence goes back and forth in time).
fn event(n: i64, kind: &'static str, item: Option<&str>, ago_ms: i64, now: i64) -> ProfileEvent {
    let weight = match kind {
        "click" => 1.0,
        "dwell" => 0.6,
        "scroll" => 0.3,
        "impression" => -0.05,
        _ => 0.0,
    };
    let tags = match item {
        Some("a") => vec!["science".into(), "space".into()],
        Some("b") => vec!["sport".into()],
        Some(_) => vec!["science".into()],
        None => vec![],
    };
    ProfileEvent {
        id: format!("{n:032x}"),
        topic_partition: "parity:0".into(),
        offset: n,
        kind,
        ts_ms: now - ago_ms,
        item: item.map(str::to_owned),
        dwell_ms: (kind == "dwell").then_some(1_000 + n as u32 * 37),
        // Some dwells are reads, some glances.
        read: kind == "dwell" && n % 3 != 0,
        // Some glances are reads if the item was scrolled far enough.
        read_through: (kind == "dwell" && n % 3 == 0).then_some(40),
        depth_pct: (kind == "scroll").then_some((n * 13 % 101) as u8),
        tags,
        weight,
        user_delta: None,
        device_class: Some(if n % 2 == 0 { "desktop" } else { "mobile" }),
        browser: (n % 3 != 0).then(|| format!("Browser {n}")),
        os: (n == 4).then(|| "Linux".into()),
        segments: vec![],
        slot: None,
        team: None,
        exposure: 0.0,
        unseen: true,
        first_record: true,
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1e-12)
}

#[tokio::test]
async fn the_lua_script_and_the_embedded_rules_build_the_same_profile() {
    let now = now_ms();
    let kinds = ["page_view", "click", "scroll", "dwell", "impression"];
    // Every kind, items that repeat (the co-visit window moves them to the
    // front), more distinct items than the window holds, events without an
    // item, and times out of order (first/last seen are min/max, not order).
    let events: Vec<ProfileEvent> = (0..40)
        .map(|n| {
            let item = match n % 7 {
                0 => None,
                1 | 4 => Some("a".to_owned()),
                2 => Some("b".to_owned()),
                _ => Some(format!("item-{n}")),
            };
            let ago = (n * 7_919 % 40) * 3_600_000;
            event(
                n,
                kinds[n as usize % kinds.len()],
                item.as_deref(),
                ago,
                now,
            )
        })
        .collect();
    // Glances after a scroll to the end (read through) and after a shallow one.
    let mut events = events;
    for (n, item, depth) in [(40, "deep", 95), (42, "shallow", 30)] {
        let mut scroll = event(n, "scroll", Some(item), 0, now);
        scroll.depth_pct = Some(depth);
        let mut glance = event(n + 1, "dwell", Some(item), 0, now);
        (glance.read, glance.read_through) = (false, Some(90));
        events.extend([scroll, glance]);
    }
    // Two later visits, hours apart: sessions of their own.
    events.push(event(44, "page_view", None, -2 * 3_600_000, now));
    events.push(event(45, "page_view", None, -4 * 3_600_000, now));
    // Clicks on interleaved rails, credited to the ranking that placed them.
    for (e, team) in events
        .iter_mut()
        .filter(|e| e.kind == "click")
        .zip(["a", "b", "b"].into_iter().cycle())
    {
        e.team = Some(team);
    }
    let half_life = HalfLife::from_hours(24.0).unwrap();
    let site = format!("parity{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);

    let mut writer = ProfileWriter::connect(&env("REDIS_URL")).unwrap();
    // In three calls, as three rounds would.
    for part in events.chunks(15) {
        writer.apply(&site, "reader", part, half_life, 1).unwrap();
    }
    let mut embedded = StoredProfile::default();
    for e in &events {
        embedded.apply(e, half_life);
    }

    let store = RedisStore::connect(&env("REDIS_URL")).await.unwrap();
    let from_redis = store.profile(&site, "reader", half_life).await.unwrap();
    let model_from_redis = store.user_model(&site, "reader", half_life).await.unwrap();
    let at = now_ms();
    let from_rust = embedded.profile(at, half_life);
    let model_from_rust = embedded.user_model(None, at, half_life);

    assert_eq!(from_redis.counts, from_rust.counts, "counts per kind");
    assert_eq!(from_redis.first_seen_ms, from_rust.first_seen_ms);
    assert_eq!(from_redis.last_seen_ms, from_rust.last_seen_ms);
    assert_eq!(from_redis.dwell_ms_total, from_rust.dwell_ms_total);
    assert_eq!(
        from_redis.max_scroll, from_rust.max_scroll,
        "deepest scroll"
    );
    assert_eq!(from_redis.device, from_rust.device, "latest device fields");
    assert_eq!(
        from_redis.affinities.keys().collect::<Vec<_>>(),
        from_rust.affinities.keys().collect::<Vec<_>>()
    );
    for (tag, value) in &from_rust.affinities {
        let redis = from_redis.affinities[tag];
        assert!(
            close(redis, *value),
            "affinity {tag}: Lua {redis}, Rust {value}"
        );
    }
    assert_eq!(
        model_from_redis.consumed, model_from_rust.consumed,
        "consumed items"
    );
    assert_eq!(
        model_from_redis.recent, model_from_rust.recent,
        "co-visit window"
    );
    assert!(!model_from_rust.recent.is_empty() && !from_rust.affinities.is_empty());
    // Not vacuous: some item is consumed only because it was read through.
    let only_through: Vec<&String> = model_from_rust
        .consumed
        .iter()
        .filter(|item| {
            !events
                .iter()
                .any(|e| e.item.as_ref() == Some(*item) && (e.kind == "click" || e.read))
        })
        .collect();
    assert_eq!(only_through, ["deep"], "read through, and only that");
    // What an experiment measures: the same counters, interleaving credits too.
    let counters = store
        .unit_counters(&site, &["reader".to_owned()])
        .await
        .unwrap();
    assert_eq!(counters[0], embedded.counters(), "experiment counters");
    assert!(counters[0].credit_a > 0 && counters[0].credit_b > counters[0].credit_a);
    assert_eq!(counters[0].sessions, 3, "{:?}", counters[0]);
}
