//! The record topics are a contract: a reader in another language (Python,
//! confluent-kafka and protobuf from PyPI) decodes what ingest wrote from
//! `origin/proto/` alone.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use crate::common::kafka::setup;
use crate::common::{batch, env, event, now_ms};
use attune_core::routing::topic;
use attune_core::{EventKind, Interaction};
use serde_json::Value;

#[tokio::test]
async fn a_python_reader_decodes_every_kind_from_the_proto_alone() {
    let (prefix, origin) = setup().await;
    let site = origin.site.site_key.clone();
    let ts = now_ms();
    let events = vec![
        event(Interaction::PageView, None, ts),
        event(Interaction::Click, Some("article-1"), ts),
        event(Interaction::Scroll { depth_pct: 70 }, Some("article-1"), ts),
        event(
            Interaction::Dwell { visible_ms: 42_000 },
            Some("article-1"),
            ts,
        ),
        event(Interaction::Impression, Some("article-2"), ts),
    ];
    let b = batch(&site, "py-reader", events.clone());
    assert_eq!(origin.post_batch(&b).await.status(), 202);

    let topics: Vec<String> = EventKind::ALL
        .iter()
        .map(|k| format!("{prefix}{}", topic(*k)))
        .collect();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("proto/contract/read_records.py");
    let out = Command::new(crate::common::python())
        .arg(&script)
        .args(["--brokers", &env("KAFKA_BROKERS")])
        .args(["--topics", &topics.join(",")])
        .args(["--count", &events.len().to_string(), "--timeout", "60"])
        .output()
        .expect("run the Python reader");
    assert!(
        out.status.success(),
        "the Python reader failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read: BTreeMap<String, Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("one JSON object per line");
            (v["id"].as_str().unwrap().to_owned(), v)
        })
        .collect();
    assert_eq!(read.len(), events.len(), "each event once: {read:?}");
    for e in &events {
        let r = &read[&e.id.to_string()];
        let (kind, depth, visible) = match e.interaction {
            Interaction::PageView => ("page_view", None, None),
            Interaction::Click => ("click", None, None),
            Interaction::Scroll { depth_pct } => ("scroll", Some(u64::from(depth_pct)), None),
            Interaction::Dwell { visible_ms } => ("dwell", None, Some(u64::from(visible_ms))),
            Interaction::Impression => ("impression", None, None),
        };
        assert_eq!(r["kind"], kind);
        assert_eq!(r["topic"], format!("{prefix}{}", topic(e.kind())));
        assert_eq!(r["depth_pct"].as_u64(), depth);
        assert_eq!(r["visible_ms"].as_u64(), visible);
        assert_eq!(r["item"].as_str(), e.item.as_deref());
        assert_eq!(r["ts_ms"], e.ts_ms);
        assert_eq!(r["site_key"], site.as_str());
        assert_eq!(r["anonymous_id"], "py-reader");
        assert_eq!(r["user_id"], "anon:py-reader");
        assert_eq!(r["key"], format!("{site}/anon:py-reader"));
        let skew = r["received_at_ms"].as_i64().unwrap() - b.sent_at_ms;
        assert_eq!(r["corrected_ts_ms"].as_i64().unwrap(), e.ts_ms + skew);
    }
}
