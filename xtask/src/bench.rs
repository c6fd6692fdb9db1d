//! `cargo xtask bench <name>`: benchmarks that need the real stack. Each runs
//! its peers side by side in the same process and writes target/bench/<name>.json.

use anyhow::Result;
use clap::ValueEnum;

use crate::process::run;
use crate::stack::Stack;
use crate::test::cargo;

/// The benchmarks.
#[derive(Clone, Copy, ValueEnum)]
pub enum Bench {
    /// Origin ingest vs a bare rdkafka producer and a decode-only axum handler.
    Ingest,
}

pub fn run_bench(bench: Bench) -> Result<()> {
    let stack = Stack::from_env();
    let running = stack.up()?;
    let name = match bench {
        Bench::Ingest => "ingest",
    };
    run(cargo()
        .args(["bench", "-p", "attune-origin", "--bench", name])
        .envs(running.endpoints.vars()))
}
