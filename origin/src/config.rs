//! Command-line flags and environment variables.

use clap::{Args, Parser, Subcommand};

/// Attune's origin service.
#[derive(Debug, Parser)]
#[command(name = "attune-origin", version, about)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The origin's processes.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API.
    Serve(ServeArgs),
}

/// Flags of `attune-origin serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "ATTUNE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// Where Kafka and Redis are.
    #[command(flatten)]
    pub backends: Backends,
}

/// Addresses of the stateful services.
#[derive(Debug, Clone, Args)]
pub struct Backends {
    /// Kafka bootstrap servers, comma-separated (`cargo xtask stack up` prints them).
    #[arg(long, env = "KAFKA_BROKERS")]
    pub kafka_brokers: String,
    /// Redis URL, e.g. redis://127.0.0.1:16379.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: String,
}
