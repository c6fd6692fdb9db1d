//! `cargo xtask chaos`: exactly-once under faults, checked, in the spirit of
//! Kafka's own transactions system test and Jepsen's queue checker.
//!
//! On a stack of its own (a three-node Kafka cluster, topics with three
//! replicas and `min.insync.replicas=2`, and a Redis Cluster of three
//! primaries and three replicas), it runs the origin
//! and three consumers as processes, sends events for many readers (a tenth
//! of the batches sent twice, verbatim, as a client's retry would; a batch
//! not acknowledged is resent until it is) while it injects faults one
//! after another, then checks every reader's profile ([`check`]):
//! - every event acknowledged with 202 is applied exactly once,
//! - an event answered otherwise is applied at most once,
//! - nothing is applied that was never sent.
//!
//! The faults ([`faults`]): kill -9 of a consumer (restarted under its
//! instance name), SIGKILL of the broker leading a partition (restarted),
//! SIGSTOP of a broker for a while, kill -9 of a Redis primary (its replica
//! takes over; it is restarted once that happened and rejoins as the
//! replica), and one kill -9 of everything, restarted. Each is
//! injected once the load has sent its share of the events, so the run
//! covers all of them whatever the machine's speed; each reports how long
//! until the origin acknowledged again. `--short` (in `cargo xtask test`)
//! sends fewer events with one fault of each kind.

mod check;
mod faults;
mod load;
mod procs;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::stack::Stack;
use faults::Fault;
use procs::Procs;

/// How much load and which faults.
pub struct Plan {
    /// Events to send (each once, plus the re-sent tenth).
    pub events: usize,
    /// Readers they are spread over.
    pub users: usize,
    /// The faults, in order.
    pub faults: Vec<Fault>,
}

impl Plan {
    /// The full run: ≥ 100,000 events for 500 readers; consumers killed five
    /// times, the leading broker twice, a broker paused 20 s, a Redis primary killed,
    /// everything restarted once.
    pub fn full() -> Plan {
        use Fault::*;
        Plan {
            events: 100_000,
            users: 500,
            faults: vec![
                KillConsumer,
                KillLeader,
                KillConsumer,
                PauseBroker(Duration::from_secs(20)),
                KillConsumer,
                KillRedisPrimary,
                KillConsumer,
                KillLeader,
                RestartEverything,
                KillConsumer,
            ],
        }
    }

    /// One fault of each kind on a smaller load (`cargo xtask test`).
    pub fn short() -> Plan {
        use Fault::*;
        Plan {
            events: 10_000,
            users: 100,
            faults: vec![
                KillConsumer,
                KillLeader,
                PauseBroker(Duration::from_secs(5)),
                KillRedisPrimary,
                RestartEverything,
            ],
        }
    }
}

/// Events per batch.
const BATCH: usize = 5;
/// How long the consumers get to apply everything once the load ends.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(240);

/// Runs `plan` with the origin binary `bin`; writes the report to `out` and
/// fails unless nothing was lost or applied twice.
pub fn run(plan: &Plan, bin: &Path, out: &Path) -> Result<()> {
    let t0 = Instant::now();
    let stack = Stack::from_env().for_chaos()?;
    // A fresh cluster each run: only this run's events in its topics.
    stack.down(true)?;
    let running = stack.up()?;
    let endpoints = running.endpoints.vars();
    let mut procs = Procs::start(&stack, bin, &endpoints)?;

    let progress = Arc::new(load::Progress::default());
    let origin = procs.origin_url();
    let loader = {
        let (progress, origin) = (progress.clone(), origin.clone());
        let (events, users) = (plan.events, plan.users);
        std::thread::spawn(move || load::run(&origin, events, users, &progress))
    };
    let mut recoveries = Vec::new();
    for (i, fault) in plan.faults.iter().enumerate() {
        // The i-th fault once its share of the events is out.
        let at = plan.events * (i + 1) / (plan.faults.len() + 1);
        while progress.sent() < at && !loader.is_finished() {
            std::thread::sleep(Duration::from_millis(50));
        }
        if loader.is_finished() {
            break;
        }
        println!("==> fault {}/{}: {fault}", i + 1, plan.faults.len());
        let acked_before = progress.acked();
        let injected = Instant::now();
        faults::inject(fault, &stack, &mut procs).with_context(|| format!("inject {fault}"))?;
        // How long the fault lasted (until what it broke was restarted or
        // resumed), what was acknowledged meanwhile, and how long after it
        // the origin acknowledged new batches again.
        let lasted = injected.elapsed();
        let (acked_during, ended) = (progress.acked() - acked_before, Instant::now());
        let deadline = ended + Duration::from_secs(120);
        let acked_at_end = progress.acked();
        while progress.acked() <= acked_at_end && !loader.is_finished() {
            if Instant::now() > deadline {
                bail!("no batch was acknowledged within 120 s after {fault}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        recoveries.push(json!({
            "fault": fault.to_string(),
            "lasted_s": lasted.as_secs_f64(),
            "batches_acknowledged_during": acked_during,
            "next_acknowledgement_after_s": ended.elapsed().as_secs_f64(),
        }));
    }
    let ledger = loader
        .join()
        .map_err(|_| anyhow::anyhow!("the load generator panicked"))??;
    println!(
        "==> load done: {} batches acknowledged, {} resends; waiting for the consumers",
        ledger.acked_batches, ledger.resends
    );
    let drain = Instant::now();
    let verdict = check::wait_and_check(&origin, &ledger, DRAIN_TIMEOUT)?;
    let report = json!({
        "events": plan.events,
        "users": plan.users,
        "batches_sent": ledger.batches_sent,
        "batches_acknowledged": ledger.acked_batches,
        "duplicate_batches_resent": ledger.resends,
        "answers": ledger.answers,
        "events_acknowledged": verdict.acknowledged,
        "events_unacknowledged": verdict.unacknowledged,
        "applied": verdict.applied,
        "lost": verdict.lost,
        "duplicated": verdict.duplicated,
        "faults": recoveries,
        "drain_s": drain.elapsed().as_secs_f64(),
        "total_s": t0.elapsed().as_secs_f64(),
    });
    write_report(out, &report)?;
    procs.stop();
    drop(running);
    println!("{}", serde_json::to_string_pretty(&report)?);
    if verdict.lost > 0 || verdict.duplicated > 0 {
        bail!(
            "{} acknowledged events lost, {} applied twice (see {})",
            verdict.lost,
            verdict.duplicated,
            out.display()
        );
    }
    println!(
        "==> chaos: 0 lost, 0 duplicated; report in {}",
        out.display()
    );
    Ok(())
}

fn write_report(out: &Path, report: &serde_json::Value) -> Result<()> {
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(out, serde_json::to_string_pretty(report)?)?;
    Ok(())
}

/// Where `cargo xtask chaos` writes its report.
pub fn report_path(short: bool) -> PathBuf {
    let name = if short {
        "chaos-short.json"
    } else {
        "chaos.json"
    };
    crate::target_dir().join("bench").join(name)
}
