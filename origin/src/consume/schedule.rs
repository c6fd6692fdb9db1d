//! The consumers' retraining schedule (`ATTUNE_RETRAIN_EVERY_S`): a retrain
//! ([`super::retrain`]) when the newest version is older than the period,
//! or older than a quarter of it while live validation says the model is
//! degraded. Consumers of one deployment share the decision through a lock
//! in Redis held for the period, so one of them retrains, once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::clock::now_ms;
use crate::config::{ConsumeArgs, RetrainArgs};
use crate::model::versions::Registry;
use crate::store::redis::model_key;

/// Why a retrain is due, if it is: a closed set (a metric label).
pub fn due(every_ms: i64, newest_ms: i64, now_ms: i64, degraded: bool) -> Option<&'static str> {
    let age = now_ms - newest_ms;
    if age >= every_ms {
        Some("schedule")
    } else if degraded && age >= every_ms / 4 {
        Some("degraded")
    } else {
        None
    }
}

/// When the newest version was made, or `started_ms` (the process's start)
/// if that is later or there is none: what the period counts from.
pub fn newest_ms(registry: &Registry, started_ms: i64) -> i64 {
    registry
        .versions
        .iter()
        .map(|v| v.created_ms)
        .max()
        .unwrap_or(0)
        .max(started_ms)
}

/// Runs the schedule until `stop`, if the consumer has one. `degraded` is
/// the consumer's live validation flag.
pub fn spawn(
    args: &ConsumeArgs,
    degraded: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> Option<std::thread::JoinHandle<()>> {
    if args.retrain_every_s == 0 {
        return None;
    }
    let every_ms = args.retrain_every_s.saturating_mul(1000) as i64;
    let retrain = RetrainArgs::of(args);
    let started_ms = now_ms();
    Some(std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_secs(1));
            // A retrain counts its own outcome (`retrain::Outcome::record`).
            let degraded = degraded.load(Ordering::SeqCst);
            match tick(&retrain, every_ms, started_ms, degraded) {
                Ok(()) => {}
                Err(e) => {
                    tracing::warn!("scheduled retrain: {e:#}");
                    metrics::counter!("attune_model_retrains_total", "outcome" => "failed")
                        .increment(1);
                }
            }
        }
    }))
}

/// One look at the schedule, and a retrain if it is due.
fn tick(args: &RetrainArgs, every_ms: i64, started_ms: i64, degraded: bool) -> anyhow::Result<()> {
    let mut redis = crate::store::redis::conn::SyncConn::open(&args.redis_url)?;
    let fields: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
        .arg(model_key(&args.topic_prefix))
        .query(&mut redis)?;
    let newest = newest_ms(&Registry::from_fields(&fields), started_ms);
    let Some(why) = due(every_ms, newest, now_ms(), degraded) else {
        return Ok(());
    };
    let lock = format!("{}:retrain_lock", model_key(&args.topic_prefix));
    let won: Option<String> = redis::cmd("SET")
        .arg(&lock)
        .arg(std::process::id())
        .arg("NX")
        .arg("PX")
        .arg(every_ms.max(1000))
        .query(&mut redis)?;
    if won.is_none() {
        return Ok(());
    }
    tracing::info!(why, "retraining on schedule");
    super::retrain::run(args)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retrain_is_due_after_the_period_or_a_quarter_of_it_when_degraded() {
        let hour = 3_600_000;
        assert_eq!(due(hour, 0, hour - 1, false), None);
        assert_eq!(due(hour, 0, hour, false), Some("schedule"));
        assert_eq!(due(hour, 0, hour / 4 - 1, true), None);
        assert_eq!(due(hour, 0, hour / 4, true), Some("degraded"));
        assert_eq!(due(hour, 0, hour / 4, false), None);
    }
}
