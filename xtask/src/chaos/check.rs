//! The checker: each reader's profile counts (what the consumers applied,
//! read through the origin's API) against what the load sent, per kind.
//! With `a` events acknowledged and `u` sent but never acknowledged, the
//! count `c` must satisfy `a ≤ c ≤ a + u`: below is an acknowledged event
//! lost, above is one applied twice or one never sent.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::load::{Ledger, API_KEY};

/// The totals over every reader and kind.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub acknowledged: u64,
    pub unacknowledged: u64,
    pub applied: u64,
    /// Acknowledged events not applied.
    pub lost: u64,
    /// Applications beyond what was sent.
    pub duplicated: u64,
}

/// Compares one reader-and-kind: `acked`, `unacked` sent, `applied`.
fn judge(acked: u64, unacked: u64, applied: u64) -> Verdict {
    Verdict {
        acknowledged: acked,
        unacknowledged: unacked,
        applied,
        lost: acked.saturating_sub(applied),
        duplicated: applied.saturating_sub(acked + unacked),
    }
}

fn add(a: Verdict, b: Verdict) -> Verdict {
    Verdict {
        acknowledged: a.acknowledged + b.acknowledged,
        unacknowledged: a.unacknowledged + b.unacknowledged,
        applied: a.applied + b.applied,
        lost: a.lost + b.lost,
        duplicated: a.duplicated + b.duplicated,
    }
}

fn profile_counts(agent: &ureq::Agent, origin: &str, user: &str) -> Result<serde_json::Value> {
    let profile: serde_json::Value = agent
        .get(&format!("{origin}/v1/profile"))
        .query("user", user)
        .set("authorization", &format!("Bearer {API_KEY}"))
        .call()
        .with_context(|| format!("read the profile of {user}"))?
        .into_json()?;
    Ok(profile["counts"].clone())
}

/// Every reader and kind, judged once.
fn check(agent: &ureq::Agent, origin: &str, ledger: &Ledger) -> Result<Verdict> {
    let mut total = Verdict::default();
    for (user, reader) in &ledger.readers {
        let counts = profile_counts(agent, origin, user)?;
        let kinds = reader.acked.keys().chain(reader.unacked.keys());
        let mut seen = std::collections::BTreeSet::new();
        for kind in kinds.filter(|k| seen.insert(**k)) {
            let n = |m: &std::collections::BTreeMap<
                &str,
                std::collections::BTreeSet<uuid::Uuid>,
            >| { m.get(kind).map_or(0, |s| s.len() as u64) };
            let applied = counts[*kind].as_u64().unwrap_or(0);
            total = add(total, judge(n(&reader.acked), n(&reader.unacked), applied));
        }
    }
    Ok(total)
}

/// Checks until nothing acknowledged is missing (the consumers may still be
/// catching up) or `timeout` passes; a duplicate ends it at once (counts
/// only grow).
pub fn wait_and_check(origin: &str, ledger: &Ledger, timeout: Duration) -> Result<Verdict> {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .build();
    let deadline = Instant::now() + timeout;
    loop {
        let verdict = check(&agent, origin, ledger)?;
        if verdict.lost == 0 || verdict.duplicated > 0 || Instant::now() > deadline {
            return Ok(verdict);
        }
        println!(
            "==> {} of {} acknowledged events applied so far",
            verdict.acknowledged - verdict.lost,
            verdict.acknowledged
        );
        std::thread::sleep(Duration::from_secs(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_between_acknowledged_and_sent_pass_and_others_are_named() {
        assert_eq!(judge(5, 2, 6).lost + judge(5, 2, 6).duplicated, 0);
        assert_eq!(judge(5, 0, 5).lost + judge(5, 0, 5).duplicated, 0);
        assert_eq!(judge(5, 2, 4).lost, 1);
        assert_eq!(judge(5, 2, 8).duplicated, 1);
        assert_eq!(judge(0, 0, 1).duplicated, 1, "applied, never sent");
    }
}
