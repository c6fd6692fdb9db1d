//! Where events go in Kafka: one topic per interaction kind, keyed by site and
//! user so one person's events stay in order on one partition.

use crate::event::EventKind;

/// Partitions per interaction topic: the most consumer processes that can
/// share one topic's load.
pub const PARTITIONS_PER_TOPIC: i32 = 8;

/// The Kafka topic of an interaction kind.
pub fn topic(kind: EventKind) -> &'static str {
    match kind {
        EventKind::PageView => "attune.page_views",
        EventKind::Click => "attune.clicks",
        EventKind::Scroll => "attune.scrolls",
        EventKind::Dwell => "attune.dwell",
        EventKind::Impression => "attune.impressions",
    }
}

/// The interaction kind of a topic named `<prefix><topic(kind)>`.
pub fn kind_of_topic(name: &str, prefix: &str) -> Option<EventKind> {
    let name = name.strip_prefix(prefix)?;
    EventKind::ALL.into_iter().find(|k| topic(*k) == name)
}

/// Derived output of the consumers: one message per user whose profile a
/// transaction changed (committed atomically with the consumed offsets).
pub const PROFILE_UPDATES: &str = "attune.profile_updates";

/// Records the consumers could not apply, as they were, with the reason and
/// where they came from in headers (committed atomically with the consumed
/// offsets, so a record is either applied or dead-lettered, once).
pub const DEAD_LETTERS: &str = "attune.dead_letters";

/// The topics the consumers write.
pub const CONSUMER_OUTPUTS: [&str; 2] = [PROFILE_UPDATES, DEAD_LETTERS];

/// Experiment exposures: the origin writes one when it serves a rail by an
/// experiment's arm, keyed `site/unit`; the consumers record them.
pub const EXPOSURES: &str = "attune.exposures";

/// Events the origin keeps but Attune does not learn from (a Segment `track`
/// it has no interaction for), as JSON keyed `site/user`, for the site's own
/// consumers. No Attune consumer reads them.
pub const CUSTOM_EVENTS: &str = "attune.custom_events";

/// How many copies of each partition a topic keeps, and how many must hold
/// a write before Kafka acknowledges it (`acks=all`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replication {
    /// The replication factor.
    pub factor: i32,
    /// `min.insync.replicas`.
    pub min_insync: i32,
}

/// The replication of Attune's topics on a cluster of `brokers`: three
/// copies, two of which must hold each acknowledged write, so one broker
/// may fail (or be restarted) without losing or refusing an acknowledged
/// event; a single broker (development) keeps one.
pub fn replication(brokers: usize) -> Replication {
    if brokers >= 3 {
        Replication {
            factor: 3,
            min_insync: 2,
        }
    } else {
        Replication {
            factor: 1,
            min_insync: 1,
        }
    }
}

/// Every topic a stack needs: the interaction topics, exposures, custom
/// events and the consumers' outputs.
pub fn all_topics() -> impl Iterator<Item = &'static str> {
    topics()
        .chain([EXPOSURES, CUSTOM_EVENTS])
        .chain(CONSUMER_OUTPUTS)
}

/// Every interaction topic.
pub fn topics() -> impl Iterator<Item = &'static str> {
    EventKind::ALL.into_iter().map(topic)
}

/// The user the edge asks the origin to rank its shared newcomer lists for:
/// not a reader, so no experiment assigns it.
pub const COLD_LIST_USER: &str = "anon:_cold";

/// The user id of an anonymous visitor: every tier names them the same way.
pub fn anonymous_user(anonymous_id: &str) -> String {
    format!("anon:{anonymous_id}")
}

/// The message key of a user's events: `site/user`. The codec refuses `/` in
/// site keys and ids, so the key cannot be forged to collide with another user.
pub fn partition_key(site_key: &str, user_id: &str) -> String {
    format!("{site_key}/{user_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_topic_names_its_kind_back() {
        for kind in EventKind::ALL {
            let name = format!("e2e.{}", topic(kind));
            assert_eq!(kind_of_topic(&name, "e2e."), Some(kind));
            assert_eq!(kind_of_topic(&name, ""), None);
        }
        assert_eq!(kind_of_topic(PROFILE_UPDATES, ""), None);
    }

    #[test]
    fn every_kind_has_its_own_topic() {
        let all: std::collections::BTreeSet<_> = topics().collect();
        assert_eq!(all.len(), EventKind::ALL.len());
    }
}
