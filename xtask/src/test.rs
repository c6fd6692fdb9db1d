//! `cargo xtask test`: install what is missing, check formatting and lints,
//! unit-test the alert rules, build for wasm32, start the stack, run every
//! suite (the alert suite in a real Prometheus), stop the stack (also
//! when a suite fails), and print one line per step.

use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Result};

use crate::process::run as run_cmd;
use crate::stack::Stack;
use crate::{cargo, edge, install, tracker, workspace_root};

/// The end-to-end test's own topics: only its events, whatever ran before.
const E2E_TOPIC_PREFIX: &str = "e2e.";

/// The debug origin binary the node suites start.
fn origin_bin() -> std::path::PathBuf {
    crate::target_dir().join("debug/attune-origin")
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
    let mut tests = TestCounts::default();
    if let Some(tools) = install(&mut report) {
        static_checks(&mut report, &tools);
        let stack = Stack::from_env();
        match stack.up() {
            Err(e) => report.steps.push(("stack up".into(), 0.0, Err(e))),
            // `running` drops at the end of the suites and stops the stack.
            Ok(running) => suites(&mut report, &mut tests, &tools, &stack, &running.endpoints),
        };
    }
    report.summary(t0, tests)
}

/// The tools the steps call by path.
struct Tools {
    buf: std::path::PathBuf,
    python: std::path::PathBuf,
}

/// Installs what is missing; `None` when something could not be.
fn install(report: &mut Report) -> Option<Tools> {
    let installed = report.step("install the toolchain pieces", || {
        install::rust_components()?;
        install::wasm_target()?;
        install::wasm_bindgen_cli()?;
        install::worker_build()?;
        install::apt("node", "nodejs")?;
        install::apt("chromium", "chromium")?;
        install::apt("prometheus", "prometheus")?;
        install::npm_packages()
    });
    let mut tools = None;
    let installed = installed
        && report.step("install buf and the Python record reader", || {
            tools = Some(Tools {
                buf: install::buf()?,
                python: install::python_contract()?,
            });
            Ok(())
        });
    tools.filter(|_| installed)
}

/// Formatting, lints, the wasm builds, alert rules and the record schema:
/// everything that needs no running stack.
fn static_checks(report: &mut Report, tools: &Tools) {
    report.step("cargo fmt --check", || {
        run_cmd(cargo().args(["fmt", "--all", "--", "--check"]))
    });
    report.step("cargo clippy -D warnings (native and wasm32)", || {
        run_cmd(cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))?;
        // The worker's runtime glue only exists on wasm32.
        run_cmd(cargo().args([
            "clippy",
            "-p",
            "attune-edge",
            "-p",
            "attune-tracker",
            "--target",
            "wasm32-unknown-unknown",
            "--",
            "-D",
            "warnings",
        ]))
    });
    report.step(
        "build attune-core for wasm32 and the tracker package",
        || {
            run_cmd(cargo().args([
                "build",
                "-p",
                "attune-core",
                "--target",
                "wasm32-unknown-unknown",
            ]))?;
            tracker::build()
        },
    );
    report.step("alert rules (promtool check rules, test rules)", || {
        let alerts = workspace_root().join("origin/alerts");
        run_cmd(
            Command::new("promtool")
                .args(["check", "rules", "attune.rules.yml"])
                .current_dir(&alerts),
        )?;
        run_cmd(
            Command::new("promtool")
                .args(["test", "rules", "attune.rules.test.yml"])
                .current_dir(&alerts),
        )
    });
    report.step(
        "record schema (buf lint, buf breaking against the last release)",
        || record_schema(&tools.buf),
    );
    report.step(
        "deploy/k8s against the Kubernetes and CRD schemas (offline)",
        || deploy_manifests(&tools.python),
    );
    report.step("build the edge worker (worker-build)", edge::build);
}

/// deploy/validate/validate.py with attune-core's topics, partitions and
/// replication on three brokers, which the manifests must match.
fn deploy_manifests(python: &std::path::Path) -> Result<()> {
    use attune_core::routing::{all_topics, replication, PARTITIONS_PER_TOPIC};
    let topics: Vec<&str> = all_topics().collect();
    let r = replication(3);
    run_cmd(
        Command::new(python)
            .arg(workspace_root().join("deploy/validate/validate.py"))
            .args(["--topics", &topics.join(",")])
            .args(["--partitions", &PARTITIONS_PER_TOPIC.to_string()])
            .args(["--replicas", &r.factor.to_string()])
            .args(["--min-insync", &r.min_insync.to_string()]),
    )
}

/// Every suite against the running stack.
fn suites(
    report: &mut Report,
    tests: &mut TestCounts,
    tools: &Tools,
    stack: &Stack,
    endpoints: &crate::stack::Endpoints,
) {
    report.step("cargo test --workspace (real Kafka and Redis)", || {
        run_counting(
            cargo()
                .args(["test", "--workspace"])
                .envs(endpoints.vars())
                .env("ATTUNE_KAFKA_PID_FILE", stack.kafka_pid_file())
                .env("ATTUNE_REDIS_PID_FILE", stack.redis_pid_file())
                .env("ATTUNE_PYTHON", &tools.python),
            tests,
        )
    });
    report.step("tracker in headless Chromium (node --test)", || {
        run_node_tests(
            Command::new("node")
                .args(["--test", "tests/"])
                .current_dir(tracker::js_dir()),
            tests,
        )
    });
    report.step("edge worker in workerd (node --test, real origin)", || {
        run_cmd(cargo().args(["build", "-p", "attune-origin"]))?;
        run_node_tests(
            Command::new("node")
                .args(["--test", "tests/"])
                .current_dir(edge::dir())
                .envs(endpoints.vars())
                .env("ATTUNE_ORIGIN_BIN", origin_bin()),
            tests,
        )
    });
    // The suites that produce, consume and move offsets, again on
    // replicated topics (three copies, two in sync for every acknowledged
    // write), replicated offsets and transaction state, and a Redis Cluster.
    report.step(
        "origin Kafka suites again on the cluster stack (3 Kafka nodes, RF 3, min ISR 2; Redis Cluster 3+3)",
        || {
            let cluster = stack.cluster_beside();
            // The unprefixed topics too: some suites run on them.
            let _servers = cluster.servers(&[""])?;
            let endpoints = cluster.endpoints();
            run_counting(
                cargo()
                    .args(["test", "-p", "attune-origin", "--test", "it", "--"])
                    .args(["consumer::", "ingest_kafka::", "segment::"])
                    .envs(endpoints.vars())
                    .env("ATTUNE_PYTHON", &tools.python),
                tests,
            )
        },
    );
    report.step("news site end to end in Chromium (full stack)", || {
        crate::stack::ensure_topics(&endpoints.kafka_brokers, E2E_TOPIC_PREFIX)?;
        run_node_tests(
            Command::new("node")
                .args(["--test", "tests/"])
                .current_dir(workspace_root().join("examples/news-site"))
                .envs(endpoints.vars())
                .env("ATTUNE_E2E_TOPIC_PREFIX", E2E_TOPIC_PREFIX)
                .env("ATTUNE_ORIGIN_BIN", origin_bin()),
            tests,
        )
    });
    report.step(
        "chaos, short: exactly once through one fault of each kind (cluster stack)",
        || {
            run_cmd(cargo().args(["build", "-p", "attune-origin"]))?;
            crate::chaos::run(
                &crate::chaos::Plan::short(),
                &origin_bin(),
                &crate::chaos::report_path(true),
            )
        },
    );
}

impl Report {
    /// One line per step, then the closing line CI reads: every test of
    /// every suite. Fails when a step failed.
    fn summary(&self, t0: Instant, tests: TestCounts) -> Result<()> {
        println!("\n==> summary ({:.0}s)", t0.elapsed().as_secs_f64());
        let mut failed = 0;
        for (name, secs, result) in &self.steps {
            let status = if result.is_ok() { "ok" } else { "FAILED" };
            println!("  {status:6} {secs:6.1}s  {name}");
            failed += usize::from(result.is_err());
        }
        println!(
            "steps: {} passed, {failed} failed",
            self.steps.len() - failed
        );
        println!("tests: {} passed, {} failed", tests.passed, tests.failed);
        if failed > 0 {
            bail!("{failed} step(s) failed (see above)");
        }
        Ok(())
    }
}

#[derive(Default, Clone, Copy)]
struct TestCounts {
    passed: u64,
    failed: u64,
}

impl TestCounts {
    fn add(&mut self, other: TestCounts) {
        self.passed += other.passed;
        self.failed += other.failed;
    }

    /// Reads libtest's `test result: ok. 22 passed; 0 failed; …` line.
    fn parse(line: &str) -> Option<TestCounts> {
        let rest = line.trim().strip_prefix("test result: ")?;
        let number_before = |word: &str| -> Option<u64> {
            let words: Vec<&str> = rest
                .split([' ', ';', '.'])
                .filter(|w| !w.is_empty())
                .collect();
            let at = words.iter().position(|w| *w == word)?;
            words.get(at.checked_sub(1)?)?.parse().ok()
        };
        Some(TestCounts {
            passed: number_before("passed")?,
            failed: number_before("failed")?,
        })
    }
}

/// The last released record schema, a copy of `origin/proto` as it shipped,
/// which `buf breaking` compares the working tree's against. A release adds
/// its copy beside it and moves this name; a copy in the tree (not a git tag)
/// keeps the check working in any clone, shallow or without tags.
const RECORDS_RELEASE: &str = "origin/proto-releases/records-v1";

/// Lints `origin/proto` and checks it is wire- and JSON-compatible with the
/// last release.
fn record_schema(buf: &std::path::Path) -> Result<()> {
    let root = workspace_root();
    run_cmd(
        Command::new(buf)
            .args(["lint", "origin/proto"])
            .current_dir(&root),
    )?;
    run_cmd(
        Command::new(buf)
            .args(["breaking", "origin/proto", "--against", RECORDS_RELEASE])
            .current_dir(&root),
    )
}

/// Runs a libtest-based command, passing its output through, and adds its
/// result lines to `total` (also when it fails).
fn run_counting(cmd: &mut Command, total: &mut TestCounts) -> Result<()> {
    use std::io::{BufRead, BufReader};
    let mut child = cmd.stdout(Stdio::piped()).spawn()?;
    let mut counts = TestCounts::default();
    for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
        let line = line?;
        println!("{line}");
        if let Some(c) = TestCounts::parse(&line) {
            counts.add(c);
        }
    }
    total.add(counts);
    let status = child.wait()?;
    if !status.success() {
        bail!(
            "tests failed ({status}): {} passed, {} failed",
            counts.passed,
            counts.failed
        );
    }
    Ok(())
}

/// Runs a `node --test` suite, passing its output through, and adds its
/// `# pass N` / `# fail N` summary to `total`.
fn run_node_tests(cmd: &mut Command, total: &mut TestCounts) -> Result<()> {
    use std::io::{BufRead, BufReader};
    let mut child = cmd.stdout(Stdio::piped()).spawn()?;
    let mut counts = TestCounts::default();
    for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
        let line = line?;
        println!("{line}");
        let number = |prefix: &str| {
            line.strip_prefix(prefix)
                .and_then(|n| n.trim().parse::<u64>().ok())
        };
        if let Some(n) = number("# pass ") {
            counts.passed += n;
        }
        if let Some(n) = number("# fail ") {
            counts.failed += n;
        }
    }
    total.add(counts);
    let status = child.wait()?;
    if !status.success() {
        bail!(
            "node tests failed ({status}): {} passed, {} failed",
            counts.passed,
            counts.failed
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::TestCounts;

    #[test]
    fn reads_libtest_result_lines() {
        let c = TestCounts::parse(
            "test result: FAILED. 17 passed; 5 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.13s",
        )
        .unwrap();
        assert_eq!((c.passed, c.failed), (17, 5));
        assert!(TestCounts::parse("running 3 tests").is_none());
    }
}
