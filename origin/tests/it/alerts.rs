//! The alert rules in a real Prometheus (`prometheus` on PATH, or
//! `PROMETHEUS_BIN`), scraping a real origin on the real Kafka: with the
//! consumers stopped and events arriving, the lag alert goes to firing
//! through Prometheus's HTTP API; with a consumer back, it resolves.
//!
//! The rules are `origin/alerts/attune.rules.yml` as shipped, except that
//! each `for:` is shortened to seconds so the test does not wait minutes;
//! `promtool test rules` (`cargo xtask test`) checks the real durations.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::kafka::{setup, Consumer};
use crate::common::{batch, event, now_ms};
use attune_core::Interaction;
use serde_json::Value;

/// Above the rule's 10,000-event threshold, on one topic (all clicks).
const EVENTS: usize = 10_500;

struct Prometheus {
    child: Child,
    port: u16,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts Prometheus in `dir`, scraping `targets` every second with the
/// shipped rules (durations shortened).
fn start_prometheus(dir: &Path, targets: &[String]) -> Prometheus {
    let rules = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("alerts/attune.rules.yml"),
    )
    .unwrap();
    let shortened: String = rules
        .lines()
        .map(|l| match l.trim_start().strip_prefix("for: ") {
            Some(_) => format!("{}for: 2s", &l[..l.len() - l.trim_start().len()]),
            None => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert_ne!(
        rules.trim_end(),
        shortened,
        "the rules have `for:` durations"
    );
    std::fs::write(dir.join("attune.rules.yml"), shortened).unwrap();
    let targets: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             rule_files: [attune.rules.yml]\n\
             scrape_configs:\n  - job_name: attune\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        ),
    )
    .unwrap();
    let port = free_port();
    let bin = std::env::var("PROMETHEUS_BIN").unwrap_or_else(|_| "prometheus".into());
    let child = Command::new(&bin)
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start `{bin}` ({e}): install it with `sudo apt-get install -y prometheus` \
                 (cargo xtask test does), or set PROMETHEUS_BIN"
            )
        });
    Prometheus { child, port }
}

/// The state of `alert` on `topic` as Prometheus reports it (`None`: inactive).
async fn alert_state(prometheus: &Prometheus, alert: &str, topic: &str) -> Option<String> {
    let url = format!("http://127.0.0.1:{}/api/v1/alerts", prometheus.port);
    let body: Value = reqwest::get(url).await.ok()?.json().await.ok()?;
    body["data"]["alerts"]
        .as_array()?
        .iter()
        .find(|a| a["labels"]["alertname"] == alert && a["labels"]["topic"] == topic)
        .map(|a| a["state"].as_str().unwrap_or_default().to_owned())
}

async fn wait_for_state(prometheus: &Prometheus, topic: &str, want: Option<&str>, dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let state = alert_state(prometheus, "AttuneConsumerLagHigh", topic).await;
        if state.as_deref() == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "AttuneConsumerLagHigh on {topic} is {state:?}, want {want:?}; Prometheus log: {}",
            std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn the_lag_alert_fires_in_prometheus_when_the_consumers_stop_and_resolves_when_they_return() {
    let (prefix, origin) = setup().await;
    let site = origin.site.site_key.clone();
    let group = format!("g-{prefix}");
    let dir = tempfile::tempdir().unwrap();
    let target = origin.base.trim_start_matches("http://").to_owned();
    let prometheus = start_prometheus(dir.path(), &[target]);
    let topic = format!(
        "{prefix}{}",
        attune_core::routing::topic(attune_core::EventKind::Click)
    );

    // A running consumer keeps up: no alert.
    let consumer = Consumer::start(&prefix, &group);
    let b = batch(
        &site,
        "warm",
        vec![event(Interaction::Click, Some("a"), now_ms())],
    );
    assert_eq!(origin.post_batch(&b).await.status(), 202);
    let deadline = Instant::now() + Duration::from_secs(60);
    while consumer.applied().await < 1.0 {
        assert!(Instant::now() < deadline, "the consumer applied nothing");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        alert_state(&prometheus, "AttuneConsumerLagHigh", &topic).await,
        None
    );

    // Consumers stopped, events keep coming: the lag alert fires.
    consumer.kill9();
    for n in 0..EVENTS / 500 {
        let t = now_ms();
        let clicks = (0..500)
            .map(|i| event(Interaction::Click, Some(&format!("i{i}")), t))
            .collect();
        let b = batch(&site, &format!("reader{n}"), clicks);
        assert_eq!(origin.post_batch(&b).await.status(), 202);
    }
    wait_for_state(&prometheus, &topic, Some("firing"), dir.path()).await;

    // A consumer back: it catches up and the alert resolves.
    let _back = Consumer::start(&prefix, &group);
    wait_for_state(&prometheus, &topic, None, dir.path()).await;
}
