//! `fleetset-aggregator`: see `fleetset_aggregator` and README.md.

use anyhow::Result;
use clap::{Parser, Subcommand};
use fleetset_aggregator::config::ServeFlags;
#[cfg(feature = "demo")]
use fleetset_aggregator::demo::{self, DemoFlags};
use fleetset_core::process::{init_logging, stop_on_signal};
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
    /// Receive frames over ZeroMQ and gRPC and commit them to Parquet until SIGINT/SIGTERM;
    /// SIGHUP (and `--watch-config`) reloads the configuration.
    Serve(Box<ServeFlags>),
    /// Run an aggregator and two local agents for a while, then show what was stored.
    #[cfg(feature = "demo")]
    Demo(DemoFlags),
    /// Check a configuration (file, environment, flags): exit non-zero with an error that names
    /// the key, the value and what is allowed.
    Validate(Box<ServeFlags>),
    /// Print the effective configuration as TOML, every default filled in.
    PrintConfig(Box<ServeFlags>),
    /// Export the store (CSV, JSON Lines, Parquet, Arrow, SQLite) or build a training set.
    Export(Box<fleetset_aggregator::export::ExportFlags>),
    /// Print live windows as they arrive (gRPC Live/Subscribe), optionally filtered.
    Tail(fleetset_aggregator::tail::TailFlags),
    /// Key material: a CA, server and agent certificates, CURVE keys, the fleet master key and
    /// scoped bearer tokens (`pki init`, `pki issue-agent`, `pki issue-token`).
    Pki(fleetset_aggregator::pki::PkiFlags),
    /// The fleet control plane: the agents (`fleet agents`) and their configuration
    /// (`fleet config promote|status|history|rollback`).
    Fleet(fleetset_aggregator::fleet::FleetFlags),
    /// Print the counters of the aggregator using this data directory (written every 5 s).
    Status {
        /// The aggregator's data directory.
        #[arg(long, default_value = "/var/lib/fleetset")]
        data_dir: std::path::PathBuf,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let default_level = match cli.command {
        Command::Serve(_) => "info",
        _ => "warn",
    };
    init_logging(default_level);
    match cli.command {
        Command::Serve(flags) => block_on(async {
            let shutdown = CancellationToken::new();
            tokio::spawn(stop_on_signal(shutdown.clone()));
            fleetset_aggregator::server::serve(*flags, shutdown).await
        }),
        #[cfg(feature = "demo")]
        Command::Demo(flags) => block_on(demo::run(flags)),
        Command::Tail(flags) => block_on(fleetset_aggregator::tail::run(flags)),
        Command::Export(flags) => fleetset_aggregator::export::run(&flags),
        Command::Pki(flags) => fleetset_aggregator::pki::run(&flags),
        Command::Fleet(flags) => block_on(fleetset_aggregator::fleet::run(flags)),
        Command::Validate(flags) => {
            let summary = flags.validate()?;
            fleetset_aggregator::security::exposure::enforce(&flags.load()?)?;
            println!("{summary}");
            Ok(())
        }
        Command::PrintConfig(flags) => {
            print!("{}", flags.print_config()?);
            Ok(())
        }
        Command::Status { data_dir } => {
            println!("{}", fleetset_aggregator::server::read_status(&data_dir)?);
            Ok(())
        }
    }
}

/// Runs `f` on a multi-threaded tokio runtime (the commands that serve or stream).
fn block_on(f: impl std::future::Future<Output = Result<()>>) -> Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(f)
}
