//! `fleetset-agent run`: sample this host every `sample_interval` into per-metric ring buffers,
//! close wall-clock-aligned windows and hand them to the [`Pipeline`] (stats, MinMax-LTTB, seal,
//! spool, send), until shutdown.
//!
//! On shutdown the current, partial window is closed and spooled, and the send loop drains for
//! up to `ack_timeout`; whatever is still unacked stays in the spool for the next start.

use crate::collect::{
    host::HostCollector, synthetic::SyntheticCollector, Collector, ProcessSample,
};
use crate::config::{AgentConfig, SourceArg};
use crate::counters::Counters;
use crate::pipeline::Pipeline;
use crate::state::{derive_agent_id, StateDir};
use anyhow::{Context, Result};
use fleetset_core::time::now_ms;
use fleetset_core::window::{ClosedWindow, WindowAssembler};
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
///
/// Errors: an unusable state directory, spool or config (before anything is sent). A full disk
/// while running is no error: the pipeline makes room, holds frames in memory and retries (see
/// [`crate::pipeline`]).
pub async fn run(cfg: AgentConfig, shutdown: CancellationToken) -> Result<RunReport> {
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

    let window_ms = cfg.window.length.as_millis() as i64;
    let interval_ms = cfg.collect.sample_interval.as_millis() as i64;
    let mut windows = WindowAssembler::new(
        window_ms,
        (window_ms / interval_ms) as usize,
        cfg.collect.top_processes,
    );
    let mut sample_tick = tokio::time::interval(cfg.collect.sample_interval);
    sample_tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut process_tick = tokio::time::interval(cfg.collect.process_interval);
    process_tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut samples: Vec<(&'static str, f64)> = Vec::with_capacity(32);
    let mut scan: Vec<ProcessSample> = Vec::new();
    let submit = |closed: Option<ClosedWindow>, p: &mut Pipeline| -> Result<()> {
        if let Some(c) = closed {
            p.submit(c)?;
        }
        Ok(())
    };

    let result: Result<()> = loop {
        tokio::select! {
            _ = shutdown.cancelled() => break Ok(()),
            _ = sample_tick.tick() => {
                // Stamp samples on the interval grid so windows hold whole ticks.
                let ts = now_ms().div_euclid(interval_ms) * interval_ms;
                samples.clear();
                collector.sample(ts, &mut samples);
                Counters::add(&counters.samples, 1);
                if let Err(e) = submit(windows.push(ts, samples.iter().copied()), &mut pipeline) { break Err(e) }
            }
            _ = process_tick.tick() => {
                let ts = now_ms();
                scan.clear();
                collector.scan_processes(ts, &mut scan);
                Counters::add(&counters.process_scans, 1);
                if let Err(e) = submit(windows.push_processes(ts, &scan), &mut pipeline) { break Err(e) }
            }
        }
    };
    counters
        .samples_overwritten
        .store(windows.overwritten(), std::sync::atomic::Ordering::Relaxed);
    let flushed = submit(windows.close(), &mut pipeline);
    let counters = pipeline.finish().await;
    result.and(flushed)?;
    Ok(RunReport { agent_id, counters })
}
