//! `cargo xtask size`: gzipped bytes a page downloads for Attune's tracker
//! (wasm + JS) beside the core bundles of posthog-js, Snowplow, RudderStack and
//! Segment, each bundled the same way in the same run (esbuild --bundle
//! --minify, gzip -9). Writes target/bench/size.json.

use std::process::Command;

use anyhow::Result;

use crate::process::{gzip_len, run as run_cmd};
use crate::{install, tracker, workspace_root};

/// The Attune budget, gzipped bytes: 15 KiB, plus the 746 B that rail
/// attribution (serve ids and positions on impressions and clicks) measured.
const BUDGET: usize = 16 * 1024;

pub fn run() -> Result<()> {
    install::wasm_target()?;
    install::wasm_bindgen_cli()?;
    install::npm_packages()?;
    tracker::build()?;
    let js = tracker::js_dir();
    let out = workspace_root().join("target/size");
    std::fs::create_dir_all(&out)?;
    let attune_js = gzip_len(&js.join("dist/index.js"))?;
    let attune_wasm = gzip_len(&js.join("dist/attune_tracker_bg.wasm"))?;
    let attune = attune_js + attune_wasm;

    let mut rows = vec![("attune-tracker (wasm + JS)".to_owned(), attune)];
    for (name, entry) in [
        ("posthog-js", "posthog-js.mjs"),
        ("@snowplow/browser-tracker", "snowplow.mjs"),
        ("@rudderstack/analytics-js", "rudderstack.mjs"),
        ("@segment/analytics-next", "segment.mjs"),
    ] {
        let bundle = out.join(entry.replace(".mjs", ".min.js"));
        run_cmd(
            Command::new(js.join("node_modules/.bin/esbuild"))
                .current_dir(&js)
                .arg(format!("bench/size/{entry}"))
                .args(["--bundle", "--minify", "--format=esm", "--log-level=error"])
                .arg(format!("--outfile={}", bundle.display())),
        )?;
        rows.push((name.to_owned(), gzip_len(&bundle)?));
    }

    println!(
        "\n{:<30} {:>12} {:>12}",
        "tracker", "gzip bytes", "÷ Attune"
    );
    for (name, bytes) in &rows {
        println!(
            "{name:<30} {bytes:>12} {:>12.2}",
            *bytes as f64 / attune as f64
        );
    }
    println!(
        "\nAttune: {attune_wasm} B wasm + {attune_js} B JS = {attune} B gzipped; budget {BUDGET} B: {}",
        if attune <= BUDGET { "within" } else { "OVER" }
    );
    let json = serde_json::json!({
        "attune": {"wasm_gzip": attune_wasm, "js_gzip": attune_js, "total_gzip": attune, "budget": BUDGET},
        "trackers": rows.iter().map(|(n, b)| serde_json::json!({"name": n, "gzip_bytes": b, "ratio_to_attune": *b as f64 / attune as f64})).collect::<Vec<_>>(),
    });
    let dir = workspace_root().join("target/bench");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("size.json"), serde_json::to_string_pretty(&json)?)?;
    println!("wrote target/bench/size.json");
    Ok(())
}
