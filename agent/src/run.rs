//! `fleetset-agent run`: sample this host every `sample_interval` into per-metric ring buffers,
//! close wall-clock-aligned windows and hand them to the [`Pipeline`] (stats, MinMax-LTTB, seal,
//! spool, send), until shutdown.
//!
//! On shutdown the current, partial window is closed and spooled, and the send loop drains for
//! up to `ack_timeout`; whatever is still unacked stays in the spool for the next start.

use crate::collect::{
    host::HostCollector, synthetic::SyntheticCollector, Collector, ProcessSample,
};
use crate::config::{AgentConfig, RunFlags, SourceArg};
use crate::counters::Counters;
use crate::pipeline::Pipeline;
use crate::state::{derive_agent_id, StateDir};
use anyhow::{Context, Result};
use fleetset_core::config::reload::{self, Trigger};
use fleetset_core::config::Reloader;
use fleetset_core::time::now_ms;
use fleetset_core::window::WindowAssembler;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

/// Agent version carried in every snapshot's host attributes.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// What a finished run did.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// The agent id used.
    pub agent_id: String,
    /// Final counter values.
    pub counters: Vec<(&'static str, u64)>,
}

fn make_collector(source: SourceArg) -> Result<Box<dyn Collector>> {
    Ok(match source {
        SourceArg::Host => {
            Box::new(HostCollector::new().context("initialising the host collector")?)
        }
        SourceArg::Synthetic => Box::new(SyntheticCollector),
    })
}

/// The configured agent id, or the one derived once and persisted in the state directory.
pub fn resolve_agent_id(cfg: &AgentConfig) -> Result<String> {
    match &cfg.agent_id {
        Some(id) => Ok(id.clone()),
        None => StateDir::open(&cfg.state_dir)?.get_or_init("agent_id", derive_agent_id),
    }
}

/// Runs the agent until `shutdown` is cancelled, then flushes the partial window and drains.
/// The configuration is fixed for the run (the demo, tests); see [`run_reloading`].
///
/// Errors: an unusable state directory, spool or config (before anything is sent). A full disk
/// while running is no error: the pipeline makes room, holds frames in memory and retries (see
/// [`crate::pipeline`]).
pub async fn run(cfg: AgentConfig, shutdown: CancellationToken) -> Result<RunReport> {
    run_with(cfg, None, shutdown).await
}

/// [`run`] with the configuration from `flags`, reloaded on SIGHUP and (with
/// `--watch-config`) when the file changes (`fleetset_core::config::reload`). The live keys
/// (`print-config` says which) apply from the next window on: the window being filled closes
/// under the settings it started with, and in-flight frames and the spool are untouched. An
/// invalid file keeps the running configuration (counted `config_reload_failures`, shown by
/// `/healthz?verbose`). Errors: as [`run`], and an invalid configuration at start.
pub async fn run_reloading(flags: RunFlags, shutdown: CancellationToken) -> Result<RunReport> {
    let cfg = flags.load()?;
    run_with(cfg, Some(flags), shutdown).await
}

/// A reload that waits for the next window boundary.
struct PendingReload {
    reloader: Reloader<AgentConfig>,
    triggers: tokio::sync::mpsc::Receiver<Trigger>,
    /// A checked configuration to apply when the current window closes.
    next: Option<AgentConfig>,
}

impl PendingReload {
    /// Reloads on `trigger`; the new configuration waits in `next` for the window boundary.
    fn reload(&mut self, trigger: Trigger, counters: &Counters) {
        match self.reloader.reload_logged(trigger) {
            Ok(Some(config)) => self.next = Some(config),
            Ok(None) => {}
            Err(_) => Counters::add(&counters.config_reload_failures, 1),
        }
    }
}

/// `d` in ms, saturating at `i64::MAX` (durations from the configuration; no wrapping cast).
fn ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

async fn next_trigger(pending: &mut Option<PendingReload>) -> Option<Trigger> {
    match pending {
        Some(p) => p.triggers.recv().await,
        None => std::future::pending().await,
    }
}

async fn run_with(
    cfg: AgentConfig,
    flags: Option<RunFlags>,
    shutdown: CancellationToken,
) -> Result<RunReport> {
    let agent_id = resolve_agent_id(&cfg)?;
    let mut collector = make_collector(cfg.collect.source)?;
    let mut host = collector.host_info();
    host.agent_version = AGENT_VERSION.to_string();
    host.labels = cfg.labels.clone();
    let mut pipeline = Pipeline::start(
        &cfg,
        agent_id.clone(),
        host,
        Some(cfg.transport.ack_timeout),
    )?;
    let counters = pipeline.counters.clone();
    counters
        .config_generation
        .store(1, std::sync::atomic::Ordering::Relaxed);
    let mut reload = flags.map(|flags| PendingReload {
        triggers: reload::triggers(flags.file.clone(), flags.watch, shutdown.clone()),
        reloader: Reloader::new(flags, cfg.clone(), pipeline.reload.clone()),
        next: None,
    });

    let window_ms = ms(cfg.window.length);
    let mut interval_ms = ms(cfg.collect.sample_interval);
    let mut windows = WindowAssembler::new(
        window_ms,
        (window_ms / interval_ms) as usize,
        cfg.collect.top_processes,
    );
    let ticker = |every: std::time::Duration| {
        let mut t = tokio::time::interval(every);
        t.set_missed_tick_behavior(MissedTickBehavior::Skip);
        t
    };
    let mut sample_tick = ticker(cfg.collect.sample_interval);
    let mut process_tick = ticker(cfg.collect.process_interval);
    let mut samples: Vec<(&'static str, f64)> = Vec::with_capacity(32);
    let mut scan: Vec<ProcessSample> = Vec::new();

    let result: Result<()> = loop {
        let closed = tokio::select! {
            _ = shutdown.cancelled() => break Ok(()),
            trigger = next_trigger(&mut reload) => {
                if let (Some(t), Some(r)) = (trigger, reload.as_mut()) {
                    r.reload(t, &counters);
                }
                None
            }
            _ = sample_tick.tick() => {
                // Stamp samples on the interval grid so windows hold whole ticks.
                let ts = now_ms().div_euclid(interval_ms) * interval_ms;
                samples.clear();
                collector.sample(ts, &mut samples);
                Counters::add(&counters.samples, 1);
                windows.push(ts, samples.iter().copied())
            }
            _ = process_tick.tick() => {
                let ts = now_ms();
                scan.clear();
                collector.scan_processes(ts, &mut scan);
                Counters::add(&counters.process_scans, 1);
                windows.push_processes(ts, &scan)
            }
        };
        let Some(closed) = closed else { continue };
        if let Err(e) = pipeline.submit(closed) {
            break Err(e);
        }
        // A window boundary: the reloaded configuration applies from the window just started.
        if let Some(next) = reload.as_mut().and_then(|r| r.next.take()) {
            interval_ms = ms(next.collect.sample_interval);
            windows.reshape(
                (window_ms / interval_ms) as usize,
                next.collect.top_processes,
            );
            pipeline.apply_reload(&next);
            if next.collect.sample_interval != sample_tick.period() {
                sample_tick = ticker(next.collect.sample_interval);
            }
            if next.collect.process_interval != process_tick.period() {
                process_tick = ticker(next.collect.process_interval);
            }
            Counters::add(&counters.config_reloads, 1);
            let (generation, _, _) = pipeline.reload.counts();
            counters
                .config_generation
                .store(generation, std::sync::atomic::Ordering::Relaxed);
        }
    };
    counters
        .samples_overwritten
        .store(windows.overwritten(), std::sync::atomic::Ordering::Relaxed);
    let flushed = match windows.close() {
        Some(c) => pipeline.submit(c).map(|_| ()),
        None => Ok(()),
    };
    let counters = pipeline.finish().await;
    result.and(flushed)?;
    Ok(RunReport { agent_id, counters })
}
