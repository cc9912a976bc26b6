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
use crate::control::{Control, Event, Prepared};
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
///
/// With `control.endpoint` set, the remote configuration that should run (see
/// [`crate::control`]) is layered over the local sources from the start, and offers from the
/// control plane reload the same way.
pub async fn run_reloading(mut flags: RunFlags, shutdown: CancellationToken) -> Result<RunReport> {
    let local = flags.load()?;
    let (cfg, prepared) = crate::control::prepare(&mut flags, local)?;
    run_with(cfg, Some((flags, prepared)), shutdown).await
}

/// A reload that waits for the next window boundary.
struct PendingReload {
    reloader: Reloader<AgentConfig>,
    triggers: tokio::sync::mpsc::Receiver<Trigger>,
    /// A checked configuration to apply when the current window closes.
    next: Option<AgentConfig>,
    /// The control plane, with `control.endpoint`.
    control: Option<Control>,
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

    /// Handles an offer or confirmation of the control plane.
    fn control(&mut self, event: Event, counters: &Counters) {
        if let Some(c) = self.control.as_mut() {
            if let Some(config) = c.handle(event, &mut self.reloader, counters) {
                self.next = Some(config);
            }
        }
    }
}

/// `d` in ms, saturating at `i64::MAX` (durations from the configuration; no wrapping cast).
fn ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// What the reload side of the run loop waits for.
enum Wake {
    /// SIGHUP or a changed file (`None`: the triggers stopped).
    Trigger(Option<Trigger>),
    /// The control plane.
    Control(Event),
}

async fn next_wake(pending: &mut Option<PendingReload>) -> Wake {
    let Some(p) = pending else {
        return std::future::pending().await;
    };
    let control = async {
        match p.control.as_mut() {
            Some(c) => c.next().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        t = p.triggers.recv() => Wake::Trigger(t),
        e = control => Wake::Control(e),
    }
}

async fn run_with(
    cfg: AgentConfig,
    flags: Option<(RunFlags, Option<Prepared>)>,
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
    let mut reload = match flags {
        None => None,
        Some((flags, prepared)) => Some(PendingReload {
            triggers: reload::triggers(flags.file.clone(), flags.watch, shutdown.clone()),
            reloader: Reloader::new(flags, cfg.clone(), pipeline.reload.clone()),
            next: None,
            control: match prepared {
                Some(p) => Some(Control::start(
                    p,
                    &cfg,
                    agent_id.clone(),
                    counters.clone(),
                    shutdown.clone(),
                )?),
                None => None,
            },
        }),
    };

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
            wake = next_wake(&mut reload) => {
                match (wake, reload.as_mut()) {
                    (Wake::Trigger(Some(t)), Some(r)) => r.reload(t, &counters),
                    (Wake::Control(e), Some(r)) => r.control(e, &counters),
                    _ => {}
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
        if let Some((next, r)) = reload.as_mut().and_then(|r| Some((r.next.take()?, r))) {
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
            if let Some(c) = r.control.as_mut() {
                c.applied(&next, &counters);
            }
        }
    };
    if let (Ok(()), Some(c)) = (&result, reload.as_mut().and_then(|r| r.control.as_mut())) {
        c.stop();
    }
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
