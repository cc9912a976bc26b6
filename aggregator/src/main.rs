//! `fleetset-aggregator`: see `fleetset_aggregator` and README.md.

use anyhow::Result;
use clap::{Parser, Subcommand};
use fleetset_aggregator::config::{ServeFlags, ServerConfig};
use fleetset_aggregator::demo::{self, DemoFlags};
use tokio_util::sync::CancellationToken;

/// fleetset aggregator: verifies, de-duplicates and commits agent frames to partitioned Parquet.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Receive frames over ZeroMQ and gRPC and commit them to Parquet until SIGINT/SIGTERM.
    Serve(ServeFlags),
    /// Run an aggregator and two local agents for a while, then show what was stored.
    Demo(DemoFlags),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let default_level = match cli.command {
        Command::Demo(_) => "warn",
        Command::Serve(_) => "info",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match cli.command {
            Command::Serve(flags) => {
                let config = ServerConfig::load(&flags)?;
                let shutdown = CancellationToken::new();
                tokio::spawn(stop_on_signal(shutdown.clone()));
                fleetset_aggregator::server::serve(config, shutdown).await
            }
            Command::Demo(flags) => demo::run(flags).await,
        }
    })
}

/// Cancels `shutdown` on SIGINT or SIGTERM.
async fn stop_on_signal(shutdown: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        } else {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("shutdown requested");
    shutdown.cancel();
}
