//! `cargo xtask eval [--tune]`: the quality evaluation. MovieLens-100k (from
//! the `recbole==1.2.1` wheel on PyPI) replayed in time order,
//! test-then-learn, for Attune's production ranking, its ablations, item-kNN
//! and decayed popularity (Rust, origin/benches/eval.rs) and for eALS and
//! implicit's ALS (Python, xtask/eval/peers.py) on the same stream; then a
//! plot. Writes target/bench/eval.json and target/bench/eval_hr10.png.
//! `--tune` searches the ranking's hyper-parameters on the validation part of
//! the stream only (docs/eval.md).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::cargo;
use crate::process::run as run_cmd;
use crate::workspace_root;

fn dir() -> PathBuf {
    workspace_root().join("target/eval")
}

/// The virtualenv of the evaluation (its Python).
fn venv() -> Result<PathBuf> {
    let dir = dir();
    let python = dir.join("venv/bin/python");
    if !python.exists() {
        println!("==> creating target/eval/venv");
        run_cmd(
            Command::new("python3")
                .args(["-m", "venv"])
                .arg(dir.join("venv")),
        )?;
    }
    Ok(python)
}

/// A virtualenv with the peers (numba for eals, implicit, matplotlib) and the
/// data from the recbole wheel, both from PyPI.
fn prepare() -> Result<(PathBuf, PathBuf)> {
    let dir = dir();
    let python = venv()?;
    let ready = dir.join("venv/.attune-ready");
    if !ready.exists() {
        println!("==> pip install implicit, eals and their dependencies (once)");
        let pip = dir.join("venv/bin/pip");
        run_cmd(Command::new(&pip).args([
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
        run_cmd(Command::new(&pip).args([
            "install",
            "-q",
            "--no-deps",
            "--ignore-requires-python",
            "eals==0.9.6",
        ]))?;
        std::fs::write(&ready, "")?;
    }
    Ok((python, movielens()?))
}

/// MovieLens-100k (`ml-100k.inter`, `ml-100k.item`) from the recbole 1.2.1
/// wheel on PyPI, downloaded once; its directory.
pub fn movielens() -> Result<PathBuf> {
    let dir = dir();
    let python = venv()?;
    let data = dir.join("ml-100k");
    if !data.join("ml-100k.inter").exists() {
        println!("==> MovieLens-100k from the recbole 1.2.1 wheel");
        run_cmd(
            Command::new(dir.join("venv/bin/pip"))
                .args(["download", "-q", "--no-deps", "recbole==1.2.1", "-d"])
                .arg(&dir),
        )?;
        let script = "import sys, zipfile, pathlib\n\
            z = zipfile.ZipFile(sys.argv[1]); out = pathlib.Path(sys.argv[2]); out.mkdir(exist_ok=True)\n\
            for name in ('ml-100k.inter', 'ml-100k.item'):\n    \
            (out / name).write_bytes(z.read('recbole/dataset_example/ml-100k/' + name))\n";
        run_cmd(
            Command::new(&python)
                .args(["-c", script])
                .arg(dir.join("recbole-1.2.1-py3-none-any.whl"))
                .arg(&data),
        )?;
    }
    Ok(data)
}

fn read(path: &Path) -> Result<serde_json::Value> {
    serde_json::from_str(&std::fs::read_to_string(path)?)
        .with_context(|| format!("parse {}", path.display()))
}

/// The peers Attune's production ranking is judged against.
const PEERS: [&str; 5] = [
    "item-knn",
    "item-knn-raw",
    "implicit-als",
    "eals",
    "popularity",
];

pub fn run(tune: bool, only: &[String]) -> Result<()> {
    let (python, data) = prepare()?;
    let attune_json = dir().join("attune.json");
    let peers_json = dir().join("peers.json");
    let bench = || {
        let mut c = cargo();
        c.args(["bench", "-q", "-p", "attune-origin", "--bench", "eval"])
            .env("ATTUNE_EVAL_DATA", &data)
            .env("ATTUNE_EVAL_OUT", &attune_json);
        c
    };
    if tune {
        println!("==> tuning the production ranking on the validation part (Rust)");
        return run_cmd(
            bench()
                .env("ATTUNE_EVAL_TUNE", "1")
                .env("ATTUNE_EVAL_TUNE_ONLY", only.join(",")),
        );
    }
    println!("==> Attune's production ranking, ablations, item-kNN and popularity (Rust)");
    run_cmd(&mut bench())?;
    println!("==> eALS (tuned on validation) and implicit ALS with fold-in (Python)");
    run_cmd(
        Command::new(&python)
            .arg(workspace_root().join("xtask/eval/peers.py"))
            .arg(&data)
            .arg(&peers_json),
    )?;

    println!("==> the cost of one request at 10,000 items (cargo xtask bench recommend)");
    run_cmd(cargo().args(["bench", "-q", "-p", "attune-origin", "--bench", "recommend"]))?;
    let recommend = read(&workspace_root().join("target/bench/recommend.json"))?;

    let mut systems = serde_json::Map::new();
    for file in [&attune_json, &peers_json] {
        if let serde_json::Value::Object(m) = read(file)? {
            systems.extend(m);
        }
    }
    let num = |name: &str, key: &str| systems[name][key].as_f64().unwrap_or(f64::NAN);
    let ci = |name: &str, key: &str| {
        let v = &systems[name][key];
        format!(
            "[{:.4}, {:.4}]",
            v[0].as_f64().unwrap_or(f64::NAN),
            v[1].as_f64().unwrap_or(f64::NAN)
        )
    };
    println!(
        "\n{:<22} {:>7} {:>18} {:>8} {:>18} {:>11} {:>10}",
        "system", "HR@10", "95 % CI", "NDCG@10", "95 % CI", "holdout HR", "update µs"
    );
    for name in systems.keys() {
        println!(
            "{name:<22} {:>7.4} {:>18} {:>8.4} {:>18} {:>11.4} {:>10.2}",
            num(name, "hr10"),
            ci(name, "hr10_ci"),
            num(name, "ndcg10"),
            ci(name, "ndcg10_ci"),
            num(name, "holdout_hr10"),
            num(name, "update_us")
        );
    }
    let best = |key: &str| {
        PEERS
            .iter()
            .map(|n| (num(n, key), *n))
            .fold((0.0, ""), |a, b| if b.0 > a.0 { b } else { a })
    };
    let (best_hr, best_hr_name) = best("hr10");
    let (best_ndcg, best_ndcg_name) = best("ndcg10");
    let speedup = num("eals", "update_us") / num("attune", "update_us");
    let speedup_alone = num("eals", "update_alone_us") / num("attune", "update_alone_us");
    println!(
        "\nAttune ÷ best peer: HR@10 {:.2} ({best_hr_name}), NDCG@10 {:.2} ({best_ndcg_name}) (target ≥ 1); eALS update time ÷ Attune's: {speedup:.1}× in the harness, {speedup_alone:.1}× alone (target ≥ 10×)",
        num("attune", "hr10") / best_hr,
        num("attune", "ndcg10") / best_ndcg,
    );
    let costs = &systems["attune"]["costs"];
    println!(
        "Attune's costs: model update {:.2} µs per rating (+ profile rules {:.2} µs); {:.0} B per item, {:.0} B per user (payload); recommend p99 {:.0} µs at 10,000 items (target 5,000)",
        num("attune", "update_us"),
        costs["profile_us"].as_f64().unwrap_or(f64::NAN),
        costs["memory"]["bytes_per_item"].as_f64().unwrap_or(f64::NAN),
        costs["memory"]["bytes_per_user"].as_f64().unwrap_or(f64::NAN),
        recommend["rank_us"]["p99"].as_f64().unwrap_or(f64::NAN),
    );
    let report = serde_json::json!({
        "dataset": "MovieLens-100k (recbole 1.2.1), time order, 10 % warm-up, prequential on the next 80 %, holdout on the last 10 %; tuning on the prequential part before 50 % only",
        "feedback_rule": "4-5 stars: a click and a 60 s dwell; 3: a click; 1-2: a 5 s dwell (attune-core's default weights)",
        "systems": systems,
        "attune_over_best_peer_hr10": num("attune", "hr10") / best_hr,
        "attune_over_best_peer_ndcg10": num("attune", "ndcg10") / best_ndcg,
        "eals_update_over_attune": speedup,
        "eals_update_over_attune_alone": speedup_alone,
        "recommend": recommend,
    });
    let out = workspace_root().join("target/bench");
    std::fs::create_dir_all(&out)?;
    let eval_json = out.join("eval.json");
    std::fs::write(&eval_json, serde_json::to_string_pretty(&report)?)?;
    run_cmd(
        Command::new(&python)
            .arg(workspace_root().join("xtask/eval/plot.py"))
            .arg(&eval_json)
            .arg(out.join("eval_hr10.png")),
    )?;
    println!("wrote target/bench/eval.json and target/bench/eval_hr10.png");
    Ok(())
}
