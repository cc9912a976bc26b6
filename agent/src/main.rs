//! `fleetset-agent`: see `fleetset_agent` and README.md.

use anyhow::Result;
use clap::{Parser, Subcommand};
use fleetset_agent::RunFlags;
use fleetset_core::process::{init_logging, stop_on_signal};
use tokio_util::sync::CancellationToken;

/// fleetset host agent: samples metrics, downsamples windows with MinMax-LTTB and publishes
/// checksummed frames to a fleetset aggregator.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Sample this host and publish one frame per window until SIGINT/SIGTERM; SIGHUP (and
    /// `--watch-config`) reloads the configuration.
    Run(Box<RunFlags>),
    /// Replay CSV files of timestamped measurements through the normal pipeline, then exit.
    Replay(Box<fleetset_agent::replay::ReplayFlags>),
    /// Check a configuration (file, environment, flags): exit non-zero with an error that names
    /// the key, the value and what is allowed.
    Validate(Box<RunFlags>),
    /// Print the effective configuration as TOML, every default filled in.
    PrintConfig(Box<RunFlags>),
    /// Print the counters of the agent using this state directory (written every 5 s).
    Status {
        /// The agent's state directory.
        #[arg(long, default_value = "/var/lib/fleetset-agent")]
        state_dir: std::path::PathBuf,
    },
}

fn main() -> Result<()> {
    init_logging("info");
    let cli = Cli::parse();
    match cli.command {
        Command::Run(flags) => until_signal(|shutdown| async move {
            fleetset_agent::run::run_reloading(*flags, shutdown)
                .await
                .map(|_| ())
        }),
        Command::Replay(flags) => until_signal(|shutdown| async move {
            let report = fleetset_agent::replay::replay(*flags, shutdown).await?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }),
        Command::Validate(flags) => {
            println!("{}", flags.validate()?);
            Ok(())
        }
        Command::PrintConfig(flags) => {
            print!("{}", flags.print_config()?);
            Ok(())
        }
        Command::Status { state_dir } => {
            print!("{}", fleetset_agent::pipeline::read_status(&state_dir)?);
            Ok(())
        }
    }
}

/// Runs `job` on a single-threaded runtime (the agent's work is a few ms per second; one thread
/// keeps RSS and CPU small), handing it a token that SIGINT/SIGTERM cancel.
fn until_signal<F: std::future::Future<Output = Result<()>>>(
    job: impl FnOnce(CancellationToken) -> F,
) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn(stop_on_signal(shutdown.clone()));
        job(shutdown).await
    })
}
