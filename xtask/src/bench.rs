//! `cargo xtask bench <name>`: benchmarks that need the real stack. Each runs
//! its peers side by side in the same process and writes target/bench/<name>.json.

use std::process::Command;

use anyhow::{Context, Result};
use clap::ValueEnum;

use crate::cargo;
use crate::process::{output, run as run_cmd};
use crate::stack::Stack;
use crate::{edge, install, tracker};

/// The benchmarks.
#[derive(Clone, Copy, ValueEnum)]
pub enum Bench {
    /// Origin ingest vs a bare rdkafka producer and a decode-only axum handler.
    Ingest,
    /// Time from an event's 202 to its effect in GET /v1/profile under load.
    Freshness,
    /// Consumer failover (kill -9 of one of two consumers, ten times), a
    /// consumer's fenced restart, and ingest after a broker kill -9 and
    /// restart, under load (p50, max).
    Faults,
    /// Ranking latency for 10,000 items and 64 factors beside a dot-product floor.
    Recommend,
    /// The edge: rerank CPU time in workerd vs native, collect latency by
    /// FORWARD mode beside the origin alone, and the bundle size.
    Edge,
    /// Tracker main-thread script time in Chromium beside posthog-js.
    Tracker,
    /// Kafka record format: protobuf beside named MessagePack, bytes and codec time.
    Records,
    /// Experiments on simulated readers: A/B through the pipeline against
    /// the true lift, an injected SRM, A/A false positives while peeking,
    /// interleaving against A/B (plots the confidence sequence).
    Experiment,
    /// MovieLens-100k through Kafka: the online model's pass and live
    /// HR@10, then `attune-origin retrain` beside reading the log alone
    /// (wall time, peak memory) and online vs retrained on the same holdout.
    Retrain,
    /// The same events through the Segment API (JSON) and `/v1/events`
    /// (MessagePack), alternating rounds: events/s each and the ratio.
    Segment,
    /// Ingest on the single-node Kafka beside a 3-node cluster (RF 3, min
    /// ISR 2), alternating rounds: events/s, p50/p99, ratios; then a
    /// backlog applied by 1, 2 and 3 consumers on the cluster.
    Cluster,
}

pub fn run(bench: Bench) -> Result<()> {
    match bench {
        Bench::Recommend => {
            return run_cmd(cargo().args(["bench", "-p", "attune-origin", "--bench", "recommend"]))
        }
        Bench::Records => {
            return run_cmd(cargo().args(["bench", "-p", "attune-origin", "--bench", "records"]))
        }
        Bench::Edge => return edge_bench(),
        Bench::Tracker => return tracker_bench(),
        Bench::Ingest
        | Bench::Freshness
        | Bench::Faults
        | Bench::Experiment
        | Bench::Retrain
        | Bench::Segment
        | Bench::Cluster => {}
    }
    let stack = Stack::from_env();
    let running = stack.up()?;
    let name = match bench {
        Bench::Ingest => "ingest",
        Bench::Freshness => "freshness",
        Bench::Faults => "faults",
        Bench::Experiment => "experiment",
        Bench::Retrain => "retrain",
        Bench::Segment => "segment",
        Bench::Cluster => "cluster",
        Bench::Edge | Bench::Tracker | Bench::Recommend | Bench::Records => {
            unreachable!("handled above")
        }
    };
    let mut cmd = cargo();
    cmd.args(["bench", "-p", "attune-origin", "--bench", name])
        .envs(running.endpoints.vars());
    if let Bench::Faults = bench {
        // The faults benchmark kills the broker and brings it back with
        // this very command's `stack up`.
        cmd.env("ATTUNE_KAFKA_PID_FILE", stack.kafka_pid_file())
            .env("ATTUNE_STACK_UP", std::env::current_exe()?);
    }
    // The cluster beside the stack, for as long as the benchmark runs.
    let cluster = stack.cluster_beside();
    let _servers = match bench {
        Bench::Cluster => {
            let servers = cluster.servers(&[])?;
            cmd.env("ATTUNE_CLUSTER_BROKERS", cluster.endpoints().kafka_brokers)
                .env("ATTUNE_CLUSTER_REDIS", cluster.endpoints().redis_url)
                .env("ATTUNE_CLUSTER_KAFKA_PIDS", cluster.server_pids("kafka")?)
                .env("ATTUNE_CLUSTER_REDIS_PIDS", cluster.server_pids("redis")?);
            Some(servers)
        }
        _ => None,
    };
    if let Bench::Retrain = bench {
        cmd.env("ATTUNE_EVAL_DATA", crate::eval::movielens()?);
    }
    run_cmd(&mut cmd)?;
    if let Bench::Experiment = bench {
        let out = crate::workspace_root().join("target/bench");
        run_cmd(
            Command::new(install::plot_python()?)
                .arg(crate::workspace_root().join("xtask/bench/experiment_plot.py"))
                .arg(out.join("experiment.json"))
                .arg(out.join("experiment.png")),
        )?;
        println!("  wrote target/bench/experiment.png");
    }
    Ok(())
}

/// Rerank of 200 candidates in workerd (Miniflare) beside the same Rust
/// natively, collect latency by FORWARD mode beside the origin alone (on the
/// real stack), and the gzipped worker bundle. Writes target/bench/edge.json.
fn edge_bench() -> Result<()> {
    install::npm_packages()?;
    install::worker_build()?;
    edge::build()?;
    let json = |out: String| -> Result<serde_json::Value> {
        let last = out.lines().last().unwrap_or_default().to_owned();
        serde_json::from_str(&last).with_context(|| format!("not JSON: {last}"))
    };
    let native = json(
        output(cargo().args(["bench", "-q", "-p", "attune-edge", "--bench", "rerank"]))
            .context("the native rerank bench failed")?,
    )?;
    let workerd = json(
        output(
            Command::new("node")
                .arg("bench/rerank.mjs")
                .current_dir(edge::dir()),
        )
        .context("the workerd rerank bench failed")?,
    )?;
    // Collect latency needs the origin on the real stack.
    run_cmd(cargo().args(["build", "--release", "-p", "attune-origin"]))?;
    let stack = Stack::from_env();
    let running = stack.up()?;
    let collect = json(
        output(
            Command::new("node")
                .arg("bench/collect.mjs")
                .current_dir(edge::dir())
                .envs(running.endpoints.vars())
                .env(
                    "ATTUNE_ORIGIN_BIN",
                    crate::target_dir().join("release/attune-origin"),
                ),
        )
        .context("the collect latency bench failed")?,
    )?;
    drop(running);
    let (wasm_gz, js_gz) = edge::gzipped_sizes()?;
    let native_us = native["native_us_per_rerank"].as_f64().unwrap_or(f64::NAN);
    let workerd_us = workerd["workerd_us_per_rerank"]
        .as_f64()
        .unwrap_or(f64::NAN);
    println!("edge benchmark: rerank of 200 candidates (16 tags of state), top 10");
    println!("  workerd   {workerd_us:8.1} us per rerank (target < 1000)");
    println!("  native    {native_us:8.1} us per rerank (the floor)");
    println!("  ratio     {:8.2}x", workerd_us / native_us);
    println!("collect latency, batch of 5 events (p50 / p99 ms; loopback, no edge–origin RTT)");
    for (name, what) in [
        ("origin_direct", "origin directly (the floor)"),
        ("edge_forward_origin", "edge, FORWARD=origin (default)"),
        ("edge_forward_queue", "edge, FORWARD=queue"),
    ] {
        let v = &collect[name];
        println!(
            "  {what:<32} {:6.2} / {:6.2}",
            v["p50_ms"].as_f64().unwrap_or(f64::NAN),
            v["p99_ms"].as_f64().unwrap_or(f64::NAN)
        );
    }
    println!(
        "  bundle    {:.1} KB gzipped ({:.1} KB wasm + {:.1} KB JS)",
        (wasm_gz + js_gz) as f64 / 1024.0,
        wasm_gz as f64 / 1024.0,
        js_gz as f64 / 1024.0
    );
    let report = serde_json::json!({
        "rerank_200_candidates_us": {"workerd": workerd_us, "native": native_us, "ratio": workerd_us / native_us},
        "bundle_gzip_bytes": {"wasm": wasm_gz, "js": js_gz, "total": wasm_gz + js_gz},
        "collect_latency_ms": collect,
    });
    let dir = crate::workspace_root().join("target/bench");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("edge.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    println!("  wrote target/bench/edge.json");
    Ok(())
}

/// 10,000 scroll events and 1,000 clicks in headless Chromium: main-thread
/// script time with Attune and with posthog-js, the tracker-less page
/// subtracted; and script time to the first visibility callback over 2,000
/// and 8,000 followed items. Writes target/bench/tracker.json.
fn tracker_bench() -> Result<()> {
    install::npm_packages()?;
    install::apt("chromium", "chromium")?;
    tracker::build()?;
    let js = tracker::js_dir();
    let bundle = crate::workspace_root().join("target/size/posthog-page.js");
    run_cmd(
        Command::new(js.join("node_modules/.bin/esbuild"))
            .current_dir(&js)
            .args([
                "bench/posthog-page.mjs",
                "--bundle",
                "--minify",
                "--format=iife",
                "--log-level=error",
            ])
            .arg(format!("--outfile={}", bundle.display())),
    )?;
    let out = output(
        Command::new("node")
            .arg("bench/mainthread.mjs")
            .arg(&bundle)
            .current_dir(&js),
    )
    .context("the main-thread benchmark failed")?;
    let last = out.lines().last().unwrap_or_default();
    let v: serde_json::Value =
        serde_json::from_str(last).with_context(|| format!("not JSON: {last}"))?;
    let num = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    println!(
        "tracker main-thread benchmark: 10,000 scroll events + 1,000 clicks, headless Chromium"
    );
    println!("  attune      {:8.1} ms script time", num("attune_ms"));
    println!("  posthog-js  {:8.1} ms script time", num("posthog_ms"));
    println!(
        "  ratio       {:8.2} (goal ≤ 0.5; tracker-less page, {:.1} ms, subtracted)",
        num("ratio"),
        num("baseline_ms")
    );
    println!(
        "  following many items: load to first visibility callback, 2,000 items {:.1} ms, 8,000 items {:.1} ms",
        num("items_2000_ms"),
        num("items_8000_ms")
    );
    println!(
        "  ratio 8,000 ÷ 2,000 {:6.2} (linear near 4; a scan per item makes it quadratic, up to 16)",
        num("items_ratio")
    );
    let dir = crate::workspace_root().join("target/bench");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("tracker.json"), serde_json::to_string_pretty(&v)?)?;
    println!("  wrote target/bench/tracker.json");
    Ok(())
}
