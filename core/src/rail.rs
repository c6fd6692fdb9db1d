//! Served rails and their attribution. Every recommendations reply (the
//! origin's or the edge's) is one *serve*: it carries a serve id that names
//! the ranker that produced it, and the page reports impressions and clicks
//! of its items with that id and the position they were shown at
//! ([`Slot`](crate::event::Slot)). Serve ids come back from clients, so
//! everything read from them here falls into closed sets: a forged id is an
//! [`Ranker::Unknown`] serve, never a new label.

use crate::experiments::Team;

/// What ranked a rail. A closed set: metric labels and per-arm counts use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Ranker {
    /// The origin's ranking for a reader the model knows (co-visitation,
    /// factors, affinities, popularity).
    Personal,
    /// The origin's ranking for a newcomer: site and segment popularity.
    Popularity,
    /// The edge's rerank of the origin's list with the reader's live state.
    Edge,
    /// Two rankings merged by team-draft interleaving (an experiment's
    /// interleave mode); the serve id says which ranking placed each slot.
    Interleaved,
    /// A serve id no ranker of this build wrote.
    Unknown,
}

impl Ranker {
    /// Every ranker, `Unknown` last.
    pub const ALL: [Ranker; 5] = [
        Ranker::Personal,
        Ranker::Popularity,
        Ranker::Edge,
        Ranker::Interleaved,
        Ranker::Unknown,
    ];

    /// The name in serve ids, replies and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Ranker::Personal => "personal",
            Ranker::Popularity => "popularity",
            Ranker::Edge => "edge",
            Ranker::Interleaved => "interleaved",
            Ranker::Unknown => "unknown",
        }
    }
}

/// Positions counted one by one; the rest share the last bucket.
pub const POSITION_BUCKETS: u8 = 10;

/// The position bucket of a slot: `"0"` … `"9"`, then `"10+"` (a closed set).
pub fn position_bucket(position: u8) -> &'static str {
    const NAMES: [&str; POSITION_BUCKETS as usize + 1] =
        ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10+"];
    NAMES[usize::from(position.min(POSITION_BUCKETS))]
}

/// Every position bucket, in order.
pub fn position_buckets() -> impl Iterator<Item = &'static str> {
    (0..=POSITION_BUCKETS).map(position_bucket)
}

/// A serve id: `<ranker>.<32 hex digits of randomness>` (the caller draws
/// the randomness: core has none). It passes the protocol's id rules.
pub fn serve_id(ranker: Ranker, random: u128) -> String {
    format!("{}.{random:032x}", ranker.as_str())
}

/// The ranker a serve id names; [`Ranker::Unknown`] for anything this build
/// did not write.
pub fn ranker_of(serve_id: &str) -> Ranker {
    let Some((name, random)) = serve_id.split_once('.') else {
        return Ranker::Unknown;
    };
    if random.len() != 32 || !random.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ranker::Unknown;
    }
    Ranker::ALL
        .into_iter()
        .find(|r| *r != Ranker::Unknown && r.as_str() == name)
        .unwrap_or(Ranker::Unknown)
}

/// Slots an interleaved serve id can say a team for.
pub const INTERLEAVED_SLOTS: u8 = 32;

/// An interleaved rail's serve id: its 32 hex digits start with 8 that hold
/// a bit per slot, set where the second ranking (team B) placed the item.
pub fn interleaved_serve_id(teams: &[Team], random: u128) -> String {
    let mask = teams
        .iter()
        .take(usize::from(INTERLEAVED_SLOTS))
        .enumerate()
        .filter(|(_, t)| **t == Team::B)
        .fold(0u32, |m, (p, _)| m | (1 << p));
    format!(
        "{}.{mask:08x}{:024x}",
        Ranker::Interleaved.as_str(),
        random & ((1u128 << 96) - 1)
    )
}

/// Which ranking placed the item at `position` of an interleaved serve;
/// `None` for any other serve id or a position past the mask.
pub fn team_at(serve_id: &str, position: u8) -> Option<Team> {
    if ranker_of(serve_id) != Ranker::Interleaved || position >= INTERLEAVED_SLOTS {
        return None;
    }
    let (_, digits) = serve_id.split_once('.')?;
    let mask = u32::from_str_radix(digits.get(..8)?, 16).ok()?;
    Some(if mask & (1 << position) != 0 {
        Team::B
    } else {
        Team::A
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_ids_name_their_ranker_and_forgeries_name_none() {
        for ranker in [Ranker::Personal, Ranker::Popularity, Ranker::Edge] {
            let id = serve_id(ranker, 0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
            assert_eq!(ranker_of(&id), ranker, "{id}");
            assert!(id.len() <= crate::Limits::default().max_id_len);
        }
        for forged in [
            "",
            "personal",
            "personal.",
            "personal.xyz",
            "unknown.0123456789abcdef0123456789abcdef",
            "evil.0123456789abcdef0123456789abcdef",
            "personal.0123456789abcdef0123456789abcdeg",
        ] {
            assert_eq!(ranker_of(forged), Ranker::Unknown, "{forged}");
        }
    }

    #[test]
    fn an_interleaved_serve_id_says_which_ranking_placed_each_slot() {
        let teams = [Team::A, Team::B, Team::B, Team::A, Team::B];
        let id = interleaved_serve_id(&teams, u128::MAX);
        assert_eq!(ranker_of(&id), Ranker::Interleaved, "{id}");
        assert!(id.len() <= crate::Limits::default().max_id_len);
        for (p, team) in teams.iter().enumerate() {
            assert_eq!(team_at(&id, p as u8), Some(*team), "slot {p} of {id}");
        }
        assert_eq!(team_at(&id, 31), Some(Team::A));
        assert_eq!(team_at(&id, 32), None);
        let plain = serve_id(Ranker::Personal, 0x16);
        assert_eq!(team_at(&plain, 1), None, "not an interleaved serve");
    }

    #[test]
    fn positions_fall_into_eleven_buckets() {
        assert_eq!(position_bucket(0), "0");
        assert_eq!(position_bucket(9), "9");
        assert_eq!(position_bucket(10), "10+");
        assert_eq!(position_bucket(255), "10+");
        assert_eq!(position_buckets().count(), 11);
    }
}
