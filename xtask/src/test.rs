//! `cargo xtask test`: install what is missing, check formatting and lints,
//! build for wasm32, start the stack, run every suite, stop the stack (also
//! when a suite fails), and print one line per step.

use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Result};

use crate::process::run as run_cmd;
use crate::stack::Stack;
use crate::{install, workspace_root};

/// `cargo`, the same one that runs xtask.
pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(workspace_root());
    cmd
}

struct Report {
    steps: Vec<(String, f64, Result<()>)>,
}

impl Report {
    fn step(&mut self, name: &str, f: impl FnOnce() -> Result<()>) -> bool {
        println!("\n==> {name}");
        let t0 = Instant::now();
        let result = f();
        let ok = result.is_ok();
        if let Err(e) = &result {
            eprintln!("==> {name} FAILED: {e:#}");
        }
        self.steps
            .push((name.to_owned(), t0.elapsed().as_secs_f64(), result));
        ok
    }
}

pub fn run() -> Result<()> {
    let t0 = Instant::now();
    let mut report = Report { steps: Vec::new() };
    let installed = report.step("install the toolchain pieces", || {
        install::rust_components()?;
        install::wasm_target()?;
        install::wasm_bindgen_cli()?;
        install::npm_packages()
    });
    let stack = Stack::from_env();
    if installed {
        report.step("cargo fmt --check", || {
            run_cmd(cargo().args(["fmt", "--all", "--", "--check"]))
        });
        report.step("cargo clippy -D warnings", || {
            run_cmd(cargo().args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]))
        });
        report.step("build attune-core and the tracker for wasm32", build_wasm);
        match stack.up() {
            Err(e) => {
                report.steps.push(("stack up".into(), 0.0, Err(e)));
            }
            Ok(running) => {
                report.step("cargo test --workspace (real Kafka and Redis)", || {
                    run_cmd(
                        cargo()
                            .args(["test", "--workspace"])
                            .envs(running.endpoints.vars()),
                    )
                });
                // `running` drops here and stops the stack it started.
            }
        }
    }

    println!("\n==> summary ({:.0}s)", t0.elapsed().as_secs_f64());
    let mut failed = 0;
    for (name, secs, result) in &report.steps {
        let status = if result.is_ok() { "ok" } else { "FAILED" };
        println!("  {status:6} {secs:6.1}s  {name}");
        failed += usize::from(result.is_err());
    }
    println!(
        "xtask: {} passed, {failed} failed",
        report.steps.len() - failed
    );
    if failed > 0 {
        bail!("{failed} step(s) failed (see above)");
    }
    Ok(())
}

/// Builds the wasm32 crates and runs wasm-bindgen on the tracker, which is the
/// browser build path (the npm package wraps its output).
fn build_wasm() -> Result<()> {
    run_cmd(cargo().args([
        "build",
        "-p",
        "attune-core",
        "-p",
        "attune-tracker",
        "--target",
        "wasm32-unknown-unknown",
    ]))?;
    let root = workspace_root();
    run_cmd(
        Command::new("wasm-bindgen")
            .args(["--target", "web", "--out-dir"])
            .arg(root.join("target/wasm/tracker"))
            .arg(root.join("target/wasm32-unknown-unknown/debug/attune_tracker.wasm")),
    )
}
