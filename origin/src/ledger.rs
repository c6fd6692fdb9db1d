//! The reconciliation ledgers: how many events each tier saw, per minute ×
//! site × kind, so an audit can compare adjacent tiers and name any gap.
//!
//! - Ingest counts what it acknowledged (`accepted`), what the log refused
//!   (`unstored`, answered 503), what it ignored for forgotten users and what
//!   clients said they had to drop before sending (`client_dropped`, kind
//!   `all`: the tracker reports a count, not kinds).
//! - Kafka is the middle ledger: the audit counts the records themselves
//!   (`InKafka`, and `FirstInKafka` for ids not seen before).
//! - Consumers count each record once (`applied`, `duplicate` — an id the
//!   user already had —, `forgotten`, `dead_lettered`), past a
//!   `topic:partition` offset watermark, before the round's offsets commit.
//!
//! Every count is keyed by the minute of the record's `received_at_ms` (the
//! one clock every tier sees for it); a dead letter, whose record cannot be
//! read, by its Kafka timestamp, under the site [`unreadable_site`].

use std::collections::BTreeMap;

use attune_core::EventKind;
use serde::Serialize;

/// One minute, as Unix ms / 60,000.
pub type Minute = i64;

/// The site under which the records no one could read on the topics with
/// `topic_prefix` are counted: `?` and the prefix (`?` is never in a site
/// key, and deployments sharing a Redis keep theirs apart).
pub fn unreadable_site(topic_prefix: &str) -> String {
    format!("?{topic_prefix}")
}

/// Whether `site` is an [`unreadable_site`].
pub fn is_unreadable_site(site: &str) -> bool {
    site.starts_with('?')
}

/// The kind of counts that have none (`client_dropped`).
pub const ALL_KINDS: &str = "all";

/// The minute `ms` falls in.
pub fn minute_of(ms: i64) -> Minute {
    ms.div_euclid(60_000)
}

/// What a count counts; a closed set (ledger fields and metric labels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    /// Ingest: appended and acknowledged (202).
    Accepted,
    /// Ingest: the log did not acknowledge it (503).
    Unstored,
    /// Ingest: dropped on purpose, the user asked to be forgotten.
    IngestForgotten,
    /// Ingest: the client reported dropping them before sending.
    ClientDropped,
    /// Consumers: new to its user, applied.
    Applied,
    /// Consumers: an id its user already had (a retry), skipped.
    Duplicate,
    /// Consumers: its user asked to be forgotten, skipped.
    Forgotten,
    /// Consumers: unreadable, sent to the dead-letter topic.
    DeadLettered,
    /// Kafka: records on the topics (counted by the audit, never stored).
    InKafka,
    /// Kafka: records whose event id had not come before (the audit).
    FirstInKafka,
}

impl Measure {
    /// Every measure.
    pub const ALL: [Measure; 10] = [
        Measure::Accepted,
        Measure::Unstored,
        Measure::IngestForgotten,
        Measure::ClientDropped,
        Measure::Applied,
        Measure::Duplicate,
        Measure::Forgotten,
        Measure::DeadLettered,
        Measure::InKafka,
        Measure::FirstInKafka,
    ];

    /// The name in ledger fields.
    pub fn as_str(self) -> &'static str {
        match self {
            Measure::Accepted => "ingest.accepted",
            Measure::Unstored => "ingest.unstored",
            Measure::IngestForgotten => "ingest.forgotten",
            Measure::ClientDropped => "ingest.client_dropped",
            Measure::Applied => "consume.applied",
            Measure::Duplicate => "consume.duplicate",
            Measure::Forgotten => "consume.forgotten",
            Measure::DeadLettered => "consume.dead_lettered",
            Measure::InKafka => "kafka.records",
            Measure::FirstInKafka => "kafka.first_seen",
        }
    }

    /// The ledger field for `kind`: `<measure>.<kind>`.
    pub fn field(self, kind: &str) -> String {
        format!("{}.{kind}", self.as_str())
    }

    /// Parses a ledger field back into its measure and kind.
    pub fn parse_field(field: &str) -> Option<(Measure, &str)> {
        Measure::ALL.into_iter().find_map(|m| {
            let kind = field.strip_prefix(m.as_str())?.strip_prefix('.')?;
            (kind == ALL_KINDS || EventKind::parse(kind).is_some()).then_some((m, kind))
        })
    }
}

/// Where a count belongs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Cell {
    /// Minute of receipt.
    pub minute: Minute,
    /// Site key, or an [`unreadable_site`].
    pub site: String,
    /// Event kind name, or [`ALL_KINDS`].
    pub kind: String,
}

/// Counts by cell and measure.
pub type Counts = BTreeMap<(Cell, Measure), u64>;

/// Adds `n` to a cell's measure.
pub fn add(counts: &mut Counts, minute: Minute, site: &str, kind: &str, measure: Measure, n: u64) {
    if n == 0 {
        return;
    }
    let cell = Cell {
        minute,
        site: site.to_owned(),
        kind: kind.to_owned(),
    };
    *counts.entry((cell, measure)).or_default() += n;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_name_their_measure_and_kind_and_parse_back() {
        for m in Measure::ALL {
            for kind in ["click", "page_view", ALL_KINDS] {
                assert_eq!(Measure::parse_field(&m.field(kind)), Some((m, kind)));
            }
        }
        assert_eq!(Measure::parse_field("ingest.accepted.bogus"), None);
        assert_eq!(Measure::parse_field("ingest.acceptedclick"), None);
        // `consume.applied` must not read as a prefix of another measure.
        assert_eq!(
            Measure::parse_field("ingest.forgotten.click"),
            Some((Measure::IngestForgotten, "click"))
        );
    }

    #[test]
    fn minutes_floor_also_before_1970() {
        assert_eq!(minute_of(119_999), 1);
        assert_eq!(minute_of(-1), -1);
    }
}
