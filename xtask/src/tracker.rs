//! Building the browser tracker: the wasm engine (size profile, wasm-bindgen
//! `--target web`, wasm-opt -Oz) and the npm package in js/dist (esbuild
//! bundle, minified). Also the golden-vector build for the JS tests.

use std::path::PathBuf;
use std::process::Command;

use anyhow::Result;

use crate::cargo;
use crate::process::run;
use crate::workspace_root;

pub fn js_dir() -> PathBuf {
    workspace_root().join("js")
}

fn bin(name: &str) -> PathBuf {
    js_dir().join("node_modules/.bin").join(name)
}

/// Builds js/dist: index.js (bundled, minified), index.d.ts, attune_tracker_bg.wasm.
pub fn build() -> Result<()> {
    let dist = js_dir().join("dist");
    run(cargo().args([
        "build",
        "-p",
        "attune-tracker",
        "--target",
        "wasm32-unknown-unknown",
        "--profile",
        "wasm-release",
    ]))?;
    run(Command::new("wasm-bindgen")
        .args(["--target", "web", "--out-dir"])
        .arg(dist.join("wasm"))
        .arg(crate::target_dir().join("wasm32-unknown-unknown/wasm-release/attune_tracker.wasm")))?;
    run(
        Command::new(js_dir().join("node_modules/binaryen/bin/wasm-opt"))
            .arg(dist.join("wasm/attune_tracker_bg.wasm"))
            // Flatten + rereloop before -Oz measured ~120 B (gzipped) smaller
            // than -Oz alone.
            .args([
                "--flatten",
                "--rereloop",
                "-Oz",
                "-Oz",
                "--converge",
                "--strip-debug",
                "--strip-producers",
                "-o",
            ])
            .arg(dist.join("attune_tracker_bg.wasm")),
    )?;
    run(Command::new(bin("esbuild")).current_dir(js_dir()).args([
        "src/index.js",
        "--bundle",
        "--minify",
        "--format=esm",
        // The tracker never logs; this drops wasm-bindgen's loader warnings
        // (measured −155 B gzipped).
        "--drop:console",
        "--log-level=warning",
        "--outfile=dist/index.js",
    ]))?;
    std::fs::copy(js_dir().join("src/index.d.ts"), dist.join("index.d.ts"))?;
    // The golden hook (attune-core's JSON decoder) for the JS tests, for Node.
    run(cargo().args([
        "build",
        "-p",
        "attune-tracker",
        "--features",
        "golden",
        "--target",
        "wasm32-unknown-unknown",
    ]))?;
    run(Command::new("wasm-bindgen")
        .args(["--target", "nodejs", "--out-dir"])
        .arg(dist.join("golden"))
        .arg(crate::target_dir().join("wasm32-unknown-unknown/debug/attune_tracker.wasm")))?;
    // The package is ESM; this glue is CommonJS.
    std::fs::write(
        dist.join("golden/package.json"),
        "{\"type\": \"commonjs\"}\n",
    )?;
    Ok(())
}
