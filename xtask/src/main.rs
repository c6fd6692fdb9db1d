//! `cargo xtask …`: Attune's build and dev tooling, in Rust rather than shell
//! (the matklad xtask pattern). Run `cargo xtask --help`.

mod demo;
mod install;
mod process;
mod stack;
mod test;

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
    /// Start the local stack and the origin; Ctrl-C stops everything.
    Demo,
    /// Install what is missing, start the stack, run every test suite, stop the stack.
    Test,
    /// Manage the local Kafka + Redis stack (ports, logs and data under target/stack).
    Stack {
        #[command(subcommand)]
        action: StackAction,
    },
}

#[derive(Subcommand)]
enum StackAction {
    /// Start Kafka and Redis (installing what is missing) and create the topics.
    Up,
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

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo => demo::run(),
        Command::Test => test::run(),
        Command::Stack { action } => {
            let stack = stack::Stack::from_env();
            match action {
                StackAction::Up => stack.up().map(stack::Running::keep),
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
