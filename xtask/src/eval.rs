//! `cargo xtask eval`: the quality evaluation. MovieLens-100k (from the
//! `recbole==1.2.1` wheel on PyPI) replayed in time order, test-then-learn,
//! for Attune's online model and decayed popularity (Rust,
//! origin/benches/eval.rs) and for eALS and implicit's ALS (Python,
//! xtask/eval/peers.py) on the same stream; then a plot. Writes
//! target/bench/eval.json and target/bench/eval_hr10.png.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::process::run;
use crate::test::cargo;
use crate::workspace_root;

fn dir() -> PathBuf {
    workspace_root().join("target/eval")
}

/// A virtualenv with the peers (numba for eals, implicit, matplotlib) and the
/// data from the recbole wheel, both from PyPI.
fn prepare() -> Result<(PathBuf, PathBuf)> {
    let dir = dir();
    let python = dir.join("venv/bin/python");
    if !python.exists() {
        println!("==> creating target/eval/venv");
        run(Command::new("python3")
            .args(["-m", "venv"])
            .arg(dir.join("venv")))?;
    }
    let ready = dir.join("venv/.attune-ready");
    if !ready.exists() {
        println!("==> pip install implicit, eals and their dependencies (once)");
        let pip = dir.join("venv/bin/pip");
        run(Command::new(&pip).args([
            "install",
            "-q",
            "implicit==0.7.2",
            "numba",
            "scipy",
            "joblib",
            "matplotlib",
            "threadpoolctl",
        ]))?;
        // eals declares Python < 3.11 but runs on 3.11.
        run(Command::new(&pip).args([
            "install",
            "-q",
            "--no-deps",
            "--ignore-requires-python",
            "eals==0.9.6",
        ]))?;
        std::fs::write(&ready, "")?;
    }
    let data = dir.join("ml-100k");
    if !data.join("ml-100k.inter").exists() {
        println!("==> MovieLens-100k from the recbole 1.2.1 wheel");
        run(Command::new(dir.join("venv/bin/pip"))
            .args(["download", "-q", "--no-deps", "recbole==1.2.1", "-d"])
            .arg(&dir))?;
        let script = "import sys, zipfile, pathlib\n\
            z = zipfile.ZipFile(sys.argv[1]); out = pathlib.Path(sys.argv[2]); out.mkdir(exist_ok=True)\n\
            for name in ('ml-100k.inter', 'ml-100k.item'):\n    \
            (out / name).write_bytes(z.read('recbole/dataset_example/ml-100k/' + name))\n";
        run(Command::new(&python)
            .args(["-c", script])
            .arg(dir.join("recbole-1.2.1-py3-none-any.whl"))
            .arg(&data))?;
    }
    Ok((python, data))
}

fn read(path: &Path) -> Result<serde_json::Value> {
    serde_json::from_str(&std::fs::read_to_string(path)?)
        .with_context(|| format!("parse {}", path.display()))
}

pub fn run_eval() -> Result<()> {
    let (python, data) = prepare()?;
    let attune_json = dir().join("attune.json");
    let peers_json = dir().join("peers.json");
    println!("==> Attune and popularity (Rust)");
    run(cargo()
        .args(["bench", "-q", "-p", "attune-origin", "--bench", "eval"])
        .env("ATTUNE_EVAL_DATA", &data)
        .env("ATTUNE_EVAL_OUT", &attune_json))?;
    println!("==> eALS and implicit ALS (Python)");
    run(Command::new(&python)
        .arg(workspace_root().join("xtask/eval/peers.py"))
        .arg(&data)
        .arg(&peers_json))?;

    let mut systems = serde_json::Map::new();
    for file in [&attune_json, &peers_json] {
        if let serde_json::Value::Object(m) = read(file)? {
            systems.extend(m);
        }
    }
    let num = |name: &str, key: &str| systems[name][key].as_f64().unwrap_or(f64::NAN);
    println!(
        "\n{:<14} {:>8} {:>9} {:>11} {:>12}",
        "system", "HR@10", "NDCG@10", "holdout HR", "update µs"
    );
    for name in systems.keys() {
        println!(
            "{name:<14} {:>8.4} {:>9.4} {:>11.4} {:>12.2}",
            num(name, "hr10"),
            num(name, "ndcg10"),
            num(name, "holdout_hr10"),
            num(name, "update_us")
        );
    }
    let best_peer = ["popularity", "eals", "implicit-als"]
        .iter()
        .map(|n| num(n, "hr10"))
        .fold(0.0, f64::max);
    let speedup = num("eals", "update_us") / num("attune", "update_us");
    println!(
        "\nAttune HR@10 ÷ best peer: {:.2} (target ≥ 1); eALS update time ÷ Attune's: {speedup:.0}× (target ≥ 10×)",
        num("attune", "hr10") / best_peer
    );
    let report = serde_json::json!({
        "dataset": "MovieLens-100k (recbole 1.2.1), time order, 10 % warm-up, prequential on the next 80 %, holdout on the last 10 %",
        "feedback_rule": "4-5 stars: click + long dwell (weight 5, capped at 3 per SGD step); 3: click (3); 1-2: 5 s dwell (0.33)",
        "systems": systems,
        "attune_over_best_peer_hr10": num("attune", "hr10") / best_peer,
        "eals_update_over_attune": speedup,
    });
    let out = workspace_root().join("target/bench");
    std::fs::create_dir_all(&out)?;
    let eval_json = out.join("eval.json");
    std::fs::write(&eval_json, serde_json::to_string_pretty(&report)?)?;
    run(Command::new(&python)
        .arg(workspace_root().join("xtask/eval/plot.py"))
        .arg(&eval_json)
        .arg(out.join("eval_hr10.png")))?;
    println!("wrote target/bench/eval.json and target/bench/eval_hr10.png");
    Ok(())
}
