//! `cargo xtask …`: Attune's build and dev tooling, in Rust rather than shell
//! (the matklad xtask pattern). Run `cargo xtask --help`.

mod bench;
mod chaos;
mod demo;
mod edge;
mod eval;
mod install;
mod process;
mod size;
mod stack;
mod test;
mod tracker;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Attune's build and dev tooling")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The news-site demo: the site with the tracker, the edge in workerd and the origin
    /// (embedded, or Kafka + Redis + a consumer with --stack); Ctrl-C stops everything.
    Demo {
        /// Run on the real Kafka + Redis stack instead of the embedded default.
        #[arg(long)]
        stack: bool,
        /// Also start this many simulated readers with tastes
        /// (`attune-origin simulate`), so the dashboard moves on its own.
        #[arg(long, default_value_t = 0)]
        readers: usize,
    },
    /// Install what is missing, start the stack, run every test suite, stop the stack.
    Test,
    /// Exactly-once under faults: load on a 3-node Kafka cluster and a Redis Cluster while
    /// consumers, brokers, a Redis primary and everything are killed; checks every acknowledged
    /// event is applied once (release build; ≤ 15 min; writes target/bench/chaos.json).
    Chaos {
        /// One fault of each kind on 10,000 events (what `cargo xtask test` runs).
        #[arg(long)]
        short: bool,
    },
    /// Run a benchmark against the real stack (release build; writes target/bench/*.json).
    Bench {
        #[arg(value_enum)]
        bench: bench::Bench,
    },
    /// Quality: MovieLens-100k replayed test-then-learn, Attune's production ranking beside item-kNN, ALS, eALS and popularity.
    Eval {
        /// Search the production ranking's hyper-parameters on the validation
        /// part of the stream instead (prints the best; nothing is changed).
        #[arg(long)]
        tune: bool,
        /// With --tune: only these knobs (comma-separated, e.g. `covisit.row_cap`).
        #[arg(long, requires = "tune", value_delimiter = ',')]
        only: Vec<String>,
    },
    /// Gzipped size of the tracker beside posthog-js, Snowplow, RudderStack and Segment.
    Size,
    /// Manage the local Kafka + Redis stack (ports, logs and data under target/stack).
    Stack {
        #[command(subcommand)]
        action: StackAction,
    },
}

#[derive(Subcommand)]
enum StackAction {
    /// Start Kafka and Redis (installing what is missing) and create the topics.
    Up {
        /// Also run Prometheus scraping the origin and the consumer, alert rules loaded.
        #[arg(long)]
        monitoring: bool,
        /// Three Kafka nodes (a controller quorum of three; topics with three
        /// replicas, two in sync for every acknowledged write) and a Redis
        /// Cluster (three primaries, three replicas) instead of one node each.
        #[arg(long)]
        cluster: bool,
    },
    /// Stop Kafka and Redis.
    Down {
        /// Also delete their data.
        #[arg(long)]
        wipe: bool,
    },
    /// Show what runs, whether it answers, and the environment to use it.
    Status,
}

/// The repository root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits inside the workspace")
        .to_path_buf()
}

/// Where cargo builds: `CARGO_TARGET_DIR`, else `target/`.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(Into::into)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// `cargo`, the same one that runs xtask, in the workspace root.
pub fn cargo() -> std::process::Command {
    let mut cmd =
        std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(workspace_root());
    cmd
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo { stack, readers } => demo::run(stack, readers),
        Command::Test => test::run(),
        Command::Size => size::run(),
        Command::Eval { tune, only } => eval::run(tune, &only),
        Command::Bench { bench } => bench::run(bench),
        Command::Chaos { short } => {
            let plan = if short {
                chaos::Plan::short()
            } else {
                chaos::Plan::full()
            };
            process::run(cargo().args(["build", "--release", "-p", "attune-origin"])).and_then(
                |()| {
                    chaos::run(
                        &plan,
                        &target_dir().join("release/attune-origin"),
                        &chaos::report_path(short),
                    )
                },
            )
        }
        Command::Stack { action } => {
            let stack = stack::Stack::from_env();
            match action {
                StackAction::Up {
                    monitoring,
                    cluster,
                } => {
                    let stack = if cluster { stack.clustered() } else { stack };
                    stack.up().and_then(|running| {
                        running.keep();
                        if monitoring {
                            stack.monitoring()?;
                        }
                        Ok(())
                    })
                }
                StackAction::Down { wipe } => stack.down(wipe),
                StackAction::Status => stack.status(),
            }
        }
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
