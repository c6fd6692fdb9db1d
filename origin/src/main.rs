use anyhow::Context;
use attune_origin::config::{Cli, Command};
use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    match Cli::parse().command {
        Command::Serve(args) => {
            let listener = tokio::net::TcpListener::bind(args.listen)
                .await
                .with_context(|| {
                    format!(
                        "cannot listen on {}: is another origin running? Set ATTUNE_LISTEN to another address",
                        args.listen
                    )
                })?;
            tracing::info!(addr = %args.listen, "attune-origin listening");
            let app = attune_origin::router(attune_origin::AppState {
                config: args.backends,
            });
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = tokio::signal::ctrl_c().await;
                })
                .await?;
        }
    }
    Ok(())
}
