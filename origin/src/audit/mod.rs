//! `attune-origin audit`: reconciles adjacent tiers per minute × site ×
//! kind from the ledgers ([`crate::ledger`]) and the topics themselves, and
//! names every gap:
//!
//! - **ingest → Kafka**: events ingest acknowledged = records on the topics
//!   (fewer: an acknowledged event was lost; more: a record ingest did not
//!   acknowledge — a foreign producer, a duplicate append, or ingest counts
//!   lost in a crash);
//! - **Kafka → consumers**: records = applied + duplicate + forgotten +
//!   dead-lettered (fewer: records never consumed; more: counted twice);
//! - **exactly once**: applied ≤ records whose id was new to its user.
//!
//! [`spawn_continuous`] checks the cheap part, ingest against the consumers,
//! every minute in the origin and exports the gap as a metric.

pub mod kafka;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use serde::Serialize;

use crate::ledger::{
    is_unreadable_site, minute_of, unreadable_site, Cell, Counts, Measure, Minute, ALL_KINDS,
};
use crate::store::Store;

/// Which two tiers disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Boundary {
    /// Ingest's acknowledgements against the topics' records.
    IngestToKafka,
    /// The topics' records against what the consumers counted.
    KafkaToConsumers,
    /// Applied events against the distinct ids on the topics.
    ExactlyOnce,
    /// Ingest's acknowledgements against what the consumers counted (the
    /// continuous check, which does not read the topics).
    IngestToConsumers,
}

impl Boundary {
    /// The name in reports and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Boundary::IngestToKafka => "ingest_to_kafka",
            Boundary::KafkaToConsumers => "kafka_to_consumers",
            Boundary::ExactlyOnce => "exactly_once",
            Boundary::IngestToConsumers => "ingest_to_consumers",
        }
    }
}

/// One disagreement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gap {
    /// Where.
    pub cell: Cell,
    /// Between which tiers.
    pub boundary: Boundary,
    /// What the upstream tier counted.
    pub upstream: u64,
    /// What the downstream tier counted.
    pub downstream: u64,
}

impl Gap {
    /// The gap in words.
    pub fn describe(&self) -> String {
        let (up, down) = (self.upstream, self.downstream);
        let what = match (self.boundary, down < up) {
            (Boundary::IngestToKafka, true) => "acknowledged by ingest but not on the topics",
            (Boundary::IngestToKafka, false) => "on the topics but never acknowledged by ingest",
            (Boundary::KafkaToConsumers, true) => "on the topics but never consumed",
            (Boundary::KafkaToConsumers, false) => {
                "consumed more often than they are on the topics"
            }
            (Boundary::IngestToConsumers, true) => "acknowledged by ingest but not consumed",
            (Boundary::IngestToConsumers, false) => "consumed but never acknowledged by ingest",
            (Boundary::ExactlyOnce, _) => "applied beyond the distinct event ids",
        };
        format!(
            "{} {} {}: {} event(s) {what} ({up} upstream, {down} downstream)",
            minute_label(self.cell.minute),
            self.cell.site,
            self.cell.kind,
            up.abs_diff(down),
        )
    }
}

/// An audit's result.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// First minute audited (Unix minutes).
    pub from_minute: Minute,
    /// The minute after the last.
    pub to_minute: Minute,
    /// Every count, per cell.
    pub cells: BTreeMap<String, BTreeMap<Measure, u64>>,
    /// The gaps, none on a clean run.
    pub gaps: Vec<Gap>,
}

impl Report {
    /// A measure summed over every cell.
    pub fn total(&self, measure: Measure) -> u64 {
        self.cells.values().filter_map(|c| c.get(&measure)).sum()
    }
}

fn get(counts: &Counts, cell: &Cell, m: Measure) -> u64 {
    counts.get(&(cell.clone(), m)).copied().unwrap_or(0)
}

fn consumed(counts: &Counts, cell: &Cell) -> u64 {
    [
        Measure::Applied,
        Measure::Duplicate,
        Measure::Forgotten,
        Measure::DeadLettered,
    ]
    .into_iter()
    .map(|m| get(counts, cell, m))
    .sum()
}

/// Compares the tiers in `counts` (the ledgers and, when `with_kafka`, the
/// topics' counts) cell by cell.
pub fn compare(counts: &Counts, with_kafka: bool) -> Vec<Gap> {
    let cells: BTreeSet<&Cell> = counts.keys().map(|(c, _)| c).collect();
    let mut gaps = Vec::new();
    for cell in cells.into_iter().filter(|c| c.kind != ALL_KINDS) {
        let mut check = |boundary, upstream: u64, downstream: u64| {
            let over = boundary == Boundary::ExactlyOnce && downstream > upstream;
            if (boundary != Boundary::ExactlyOnce && upstream != downstream) || over {
                gaps.push(Gap {
                    cell: cell.clone(),
                    boundary,
                    upstream,
                    downstream,
                });
            }
        };
        let accepted = get(counts, cell, Measure::Accepted);
        let consumed = consumed(counts, cell);
        // No ingest count exists for records no one could read.
        let from_ingest = !is_unreadable_site(&cell.site);
        if with_kafka {
            let in_kafka = get(counts, cell, Measure::InKafka);
            if from_ingest {
                check(Boundary::IngestToKafka, accepted, in_kafka);
            }
            check(Boundary::KafkaToConsumers, in_kafka, consumed);
            let first = get(counts, cell, Measure::FirstInKafka);
            check(
                Boundary::ExactlyOnce,
                first,
                get(counts, cell, Measure::Applied),
            );
        } else if from_ingest {
            check(Boundary::IngestToConsumers, accepted, consumed);
        }
    }
    gaps
}

/// The `minutes` minutes up to and including the one `settle_ms` before
/// `now_ms`: every event in them was received at least `settle_ms` − 1 min
/// ago (0 includes the current minute).
pub fn window(now_ms: i64, minutes: i64, settle_ms: i64) -> std::ops::Range<Minute> {
    let to = minute_of(now_ms - settle_ms) + 1;
    (to - minutes.max(1))..to
}

/// `2026-12-03 19:40Z`.
pub fn minute_label(minute: Minute) -> String {
    chrono::DateTime::from_timestamp(minute * 60, 0).map_or_else(
        || minute.to_string(),
        |t| t.format("%Y-%m-%d %H:%MZ").to_string(),
    )
}

/// Where the audit reads the topics.
pub struct Topics<'a> {
    /// Kafka bootstrap servers.
    pub brokers: &'a str,
    /// The interaction topics' prefix.
    pub prefix: &'a str,
}

/// Audits `sites` over `minutes`: the ledgers from the store, the topics'
/// records from Kafka (read from 15 minutes before the window, so retries
/// of earlier events are known as such).
pub async fn audit(
    store: &dyn Store,
    topics: &Topics<'_>,
    sites: &[String],
    minutes: std::ops::Range<Minute>,
) -> Result<Report> {
    let mut all_sites = sites.to_vec();
    all_sites.push(unreadable_site(topics.prefix));
    let mut counts = store.ledger(&all_sites, minutes.clone()).await?;
    let (brokers, prefix, range) = (
        topics.brokers.to_owned(),
        topics.prefix.to_owned(),
        minutes.clone(),
    );
    let read_from_ms = (minutes.start - 15) * 60_000;
    let in_kafka =
        tokio::task::spawn_blocking(move || kafka::count(&brokers, &prefix, range, read_from_ms))
            .await??;
    for (key, n) in in_kafka {
        *counts.entry(key).or_default() += n;
    }
    let gaps = compare(&counts, true);
    let mut cells: BTreeMap<String, BTreeMap<Measure, u64>> = BTreeMap::new();
    for ((cell, measure), n) in &counts {
        let name = format!("{} {} {}", minute_label(cell.minute), cell.site, cell.kind);
        cells.entry(name).or_default().insert(*measure, *n);
    }
    Ok(Report {
        from_minute: minutes.start,
        to_minute: minutes.end,
        cells,
        gaps,
    })
}

/// The report for people: one line per cell, then the gaps.
pub fn render(report: &Report) -> String {
    use std::fmt::Write;
    let mut out = format!(
        "audit of {} to {} ({} cells)\n",
        minute_label(report.from_minute),
        minute_label(report.to_minute),
        report.cells.len()
    );
    for (cell, counts) in &report.cells {
        let counts: Vec<String> = counts
            .iter()
            .map(|(m, n)| format!("{}={n}", m.as_str()))
            .collect();
        let _ = writeln!(out, "  {cell}: {}", counts.join(" "));
    }
    if report.gaps.is_empty() {
        out.push_str("no gaps: every tier agrees\n");
    } else {
        let _ = writeln!(out, "{} gap(s):", report.gaps.len());
        for gap in &report.gaps {
            let _ = writeln!(out, "  {}: {}", gap.boundary.as_str(), gap.describe());
        }
    }
    out
}

/// How many settled minutes the continuous check covers.
const CONTINUOUS_MINUTES: i64 = 10;

/// Every `every`, compares ingest's acknowledgements with the consumers'
/// counts over the last [`CONTINUOUS_MINUTES`] minutes up to `settle` ago
/// and sets `attune_audit_gap_events{boundary="ingest_to_consumers"}` to
/// the events they disagree on (0 when they agree).
pub fn spawn_continuous(
    store: Arc<dyn Store>,
    sites: Vec<String>,
    every: Duration,
    settle: Duration,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let minutes = window(
                crate::clock::now_ms(),
                CONTINUOUS_MINUTES,
                settle.as_millis() as i64,
            );
            match store.ledger(&sites, minutes).await {
                Ok(counts) => {
                    let gap: u64 = compare(&counts, false)
                        .iter()
                        .map(|g| g.upstream.abs_diff(g.downstream))
                        .sum();
                    metrics::gauge!("attune_audit_gap_events", "boundary" => Boundary::IngestToConsumers.as_str())
                        .set(gap as f64);
                }
                Err(e) => tracing::debug!("continuous audit skipped: {e}"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::add;

    fn cell(minute: Minute, site: &str, kind: &str) -> Cell {
        Cell {
            minute,
            site: site.into(),
            kind: kind.into(),
        }
    }

    #[test]
    fn a_clean_minute_has_no_gaps_and_each_loss_or_excess_is_named() {
        let mut c = Counts::new();
        // Minute 1: 3 clicks acknowledged, one retried (4 records, 3 new),
        // applied 3 + 1 duplicate: clean.
        add(&mut c, 1, "s", "click", Measure::Accepted, 4);
        add(&mut c, 1, "s", "click", Measure::InKafka, 4);
        add(&mut c, 1, "s", "click", Measure::FirstInKafka, 3);
        add(&mut c, 1, "s", "click", Measure::Applied, 3);
        add(&mut c, 1, "s", "click", Measure::Duplicate, 1);
        add(&mut c, 1, "s", ALL_KINDS, Measure::ClientDropped, 2);
        // Two unreadable records, dead-lettered: clean.
        let unreadable = unreadable_site("");
        add(&mut c, 1, &unreadable, "dwell", Measure::InKafka, 2);
        add(&mut c, 1, &unreadable, "dwell", Measure::DeadLettered, 2);
        assert_eq!(compare(&c, true), []);

        // Minute 2: 2 dwells on the topics never consumed.
        add(&mut c, 2, "s", "dwell", Measure::Accepted, 2);
        add(&mut c, 2, "s", "dwell", Measure::InKafka, 2);
        add(&mut c, 2, "s", "dwell", Measure::FirstInKafka, 2);
        // Minute 3: a record ingest never acknowledged, applied twice.
        add(&mut c, 3, "s", "scroll", Measure::Accepted, 1);
        add(&mut c, 3, "s", "scroll", Measure::InKafka, 2);
        add(&mut c, 3, "s", "scroll", Measure::FirstInKafka, 1);
        add(&mut c, 3, "s", "scroll", Measure::Applied, 2);
        let gaps = compare(&c, true);
        let named: Vec<(Boundary, &Cell, u64, u64)> = gaps
            .iter()
            .map(|g| (g.boundary, &g.cell, g.upstream, g.downstream))
            .collect();
        assert_eq!(
            named,
            [
                (Boundary::KafkaToConsumers, &cell(2, "s", "dwell"), 2, 0),
                (Boundary::IngestToKafka, &cell(3, "s", "scroll"), 1, 2),
                (Boundary::ExactlyOnce, &cell(3, "s", "scroll"), 1, 2),
            ]
        );
        assert!(gaps[0]
            .describe()
            .contains("2 event(s) on the topics but never consumed"));
    }

    #[test]
    fn the_continuous_check_compares_ingest_with_the_consumers() {
        let mut c = Counts::new();
        add(&mut c, 1, "s", "click", Measure::Accepted, 3);
        add(&mut c, 1, "s", "click", Measure::Applied, 2);
        add(&mut c, 1, "s", "click", Measure::Forgotten, 1);
        assert_eq!(compare(&c, false), []);
        add(&mut c, 1, "s", "click", Measure::Accepted, 1);
        let gaps = compare(&c, false);
        assert_eq!(gaps.len(), 1);
        assert_eq!(gaps[0].boundary, Boundary::IngestToConsumers);
    }

    #[test]
    fn the_window_ends_before_the_unsettled_minutes() {
        assert_eq!(window(10 * 60_000 + 5, 3, 120_000), 6..9);
        assert_eq!(window(10 * 60_000 + 5, 1, 0), 10..11);
    }
}
