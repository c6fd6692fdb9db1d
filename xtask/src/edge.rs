//! Building the edge worker: worker-build with the wasm-bindgen, esbuild and
//! wasm-opt this repo pins (never downloaded by worker-build itself), then the
//! name section stripped.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result};

use crate::process::{gzip_len, run};
use crate::workspace_root;

pub fn dir() -> PathBuf {
    workspace_root().join("edge-worker")
}

fn wasm_opt() -> PathBuf {
    dir().join("node_modules/binaryen/bin/wasm-opt")
}

/// `worker-build --release` into edge-worker/build.
pub fn build() -> Result<()> {
    let dir = dir();
    let wasm_bindgen = which::which("wasm-bindgen")
        .context("wasm-bindgen is not on PATH: run `cargo xtask test` once to install it")?;
    run(Command::new("worker-build")
        .arg("--release")
        .current_dir(&dir)
        .env("CARGO_TARGET_DIR", crate::target_dir())
        .env("WASM_BINDGEN_BIN", wasm_bindgen)
        .env(
            "ESBUILD_BIN",
            dir.join("node_modules/@esbuild/linux-x64/bin/esbuild"),
        )
        .env("WASM_OPT_BIN", wasm_opt()))?;
    // Function names are debug info the runtime never needs (~150 KB).
    let wasm = dir.join("build/index_bg.wasm");
    run(Command::new(wasm_opt())
        .arg(&wasm)
        .args(["--strip-debug", "--strip-producers", "-o"])
        .arg(&wasm))
}

/// Gzipped bytes (level 9) of the built worker: (wasm, js).
pub fn gzipped_sizes() -> Result<(usize, usize)> {
    let build = dir().join("build");
    Ok((
        gzip_len(&build.join("index_bg.wasm"))?,
        gzip_len(&build.join("index.js"))?,
    ))
}
