//! Process plumbing shared by both fleetset binaries: logging to stderr and shutdown on
//! SIGINT/SIGTERM.

use tokio_util::sync::CancellationToken;

/// Logs to stderr at `default_level` unless `RUST_LOG` says otherwise; ANSI colours only on a
/// terminal, so log files stay plain text.
///
/// `RUST_LOG` takes `tracing_subscriber`'s `Targets` form: a level, `target=level` pairs, or both,
/// comma-separated (`info,fleetset_agent::sender=debug`). Span and field filters (`EnvFilter`)
/// are not supported: EnvFilter pulls regex into the agent, ~180 KiB of code pages on every host
/// (docs/benchmarks.md). A `RUST_LOG` that does not parse is reported on stderr and
/// `default_level` is used.
pub fn init_logging(default_level: &str) {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::prelude::*;
    let fallback = || default_level.parse::<Targets>().unwrap_or_default();
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => spec.parse::<Targets>().unwrap_or_else(|e| {
            eprintln!("RUST_LOG {spec:?} is not a level or target=level list ({e}); using {default_level}");
            fallback()
        }),
        _ => fallback(),
    };
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .with(filter)
        .init();
}

/// Cancels `shutdown` on the first SIGINT or SIGTERM (Ctrl-C elsewhere).
pub async fn stop_on_signal(shutdown: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(mut int), Ok(mut term)) => {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("shutdown requested");
    shutdown.cancel();
}
