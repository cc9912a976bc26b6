//! `fleetset-agent run`: sample → ring buffers → window close → stats + MinMax-LTTB → seal
//! (encode, checksum, sign) → send queue → aggregator, until shutdown.
//!
//! On shutdown the current, partial window is closed and sent, and the sender drains for up to
//! `ack_timeout`. The persisted `last_window` keeps a restarted agent from sending a window
//! twice: samples of a window already sent are discarded (and logged) after a restart.

use crate::collect::{
    host::HostCollector, synthetic::SyntheticCollector, Collector, ProcessSample,
};
use crate::config::{AgentConfig, SourceArg};
use crate::counters::Counters;
use crate::downsample::Downsampler;
use crate::sender::{self, QueuedFrame, SenderConfig};
use crate::state::{derive_agent_id, new_salt, StateDir};
use crate::window::{build_snapshot, ClosedWindow, ProcessNaming, WindowAssembler};
use anyhow::{Context, Result};
use fleetset_proto::{seal, HostInfo, SealOptions};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Agent version carried in every snapshot's host attributes.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// How often the counters are logged.
const COUNTER_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// What a finished run did.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// The agent id used.
    pub agent_id: String,
    /// Final counter values.
    pub counters: Vec<(&'static str, u64)>,
}

/// Now as Unix ms.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Turns closed windows into sealed frames with increasing, persisted `seq`.
struct Framer {
    agent_id: String,
    host: HostInfo,
    sample_interval_ms: u64,
    downsampler: Downsampler,
    naming: ProcessNaming,
    seal: SealOptions,
    state: StateDir,
    next_seq: u64,
    last_window: i64,
    raw_dump_dir: Option<std::path::PathBuf>,
    counters: Arc<Counters>,
}

impl Framer {
    fn frame(&mut self, closed: ClosedWindow) -> Result<Option<QueuedFrame>> {
        if closed.start <= self.last_window {
            warn!(
                window_start = closed.start,
                "window already sent before a restart; its remaining samples are discarded"
            );
            return Ok(None);
        }
        if let Some(dir) = &self.raw_dump_dir {
            dump_raw(dir, &self.agent_id, &closed)?;
        }
        let (mut snap, quality) = build_snapshot(closed, &self.downsampler, &self.naming);
        Counters::add(&self.counters.samples_non_finite, quality.non_finite as u64);
        Counters::add(
            &self.counters.samples_repeated_ts,
            quality.repeated_ts as u64,
        );
        snap.agent_id.clone_from(&self.agent_id);
        snap.seq = self.next_seq;
        snap.host = self.host.clone();
        snap.sample_interval_ms = self.sample_interval_ms;
        let frame = seal(&snap, &self.seal).context("sealing a snapshot")?;
        // Persist before the frame leaves, so a restart never reuses a seq or a window.
        self.state.write("next_seq", &(snap.seq + 1).to_string())?;
        self.state.write("last_window", &snap.start.to_string())?;
        self.next_seq += 1;
        self.last_window = snap.start;
        Counters::add(&self.counters.windows, 1);
        info!(
            seq = snap.seq,
            window_start = snap.start,
            metrics = snap.data.len(),
            bytes = frame.payload.len(),
            "window closed"
        );
        Ok(Some(QueuedFrame {
            seq: snap.seq,
            window_start: snap.start,
            frame,
        }))
    }
}

/// Writes a window's raw samples to `DIR/<agent_id>-<start>.json` as
/// `{"start": ms, "end": ms, "series": {metric: [[ts_ms, value|null], …]}}`.
fn dump_raw(dir: &std::path::Path, agent_id: &str, closed: &ClosedWindow) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let body =
        serde_json::json!({ "start": closed.start, "end": closed.end, "series": closed.raw });
    let path = dir.join(format!("{agent_id}-{}.json", closed.start));
    std::fs::write(&path, serde_json::to_vec(&body)?)
        .with_context(|| format!("writing {}", path.display()))
}

fn make_collector(source: SourceArg) -> Result<Box<dyn Collector>> {
    Ok(match source {
        SourceArg::Host => {
            Box::new(HostCollector::new().context("initialising the host collector")?)
        }
        SourceArg::Synthetic => Box::new(SyntheticCollector),
    })
}

/// Runs the agent until `shutdown` is cancelled, then flushes the partial window and drains.
///
/// Errors: an unusable state directory or config (before anything is sent); a state write
/// failure while running (e.g. a full disk) stops the agent rather than risk reusing a seq.
pub async fn run(cfg: AgentConfig, shutdown: CancellationToken) -> Result<RunReport> {
    let state = StateDir::open(&cfg.state_dir)?;
    let agent_id = match &cfg.agent_id {
        Some(id) => id.clone(),
        None => state.get_or_init("agent_id", derive_agent_id)?,
    };
    let salt = match &cfg.process_name_salt {
        Some(s) => s.clone(),
        None => state.get_or_init("salt", new_salt)?,
    };
    let mut collector = make_collector(cfg.source)?;
    let mut host = collector.host_info();
    host.agent_version = AGENT_VERSION.to_string();
    host.labels = cfg.labels.clone();
    let counters = Arc::new(Counters::default());
    let mut framer = Framer {
        agent_id: agent_id.clone(),
        host,
        sample_interval_ms: cfg.sample_interval.as_millis() as u64,
        downsampler: Downsampler {
            threshold: cfg.lttb_threshold,
            ratio: cfg.lttb_ratio,
        },
        naming: ProcessNaming {
            salt,
            send_names: cfg.send_process_names,
        },
        seal: SealOptions {
            encoding: cfg.encoding.into(),
            compression: cfg.compression.into(),
            hmac_key: cfg.hmac_key_hex.as_deref().map(hex::decode).transpose()?,
        },
        next_seq: state.read_i64("next_seq", 1)?.max(1) as u64,
        last_window: state.read_i64("last_window", i64::MIN)?,
        state,
        raw_dump_dir: cfg.raw_dump_dir.clone(),
        counters: counters.clone(),
    };
    info!(%agent_id, aggregator = %cfg.aggregator, transport = ?cfg.transport, encoding = ?cfg.encoding,
        window_ms = cfg.window.as_millis() as u64, next_seq = framer.next_seq, "agent started");

    let (tx, rx) = mpsc::unbounded_channel();
    let sender = tokio::spawn(sender::run(
        SenderConfig {
            transport: cfg.transport,
            endpoint: cfg.aggregator.clone(),
            agent_id: agent_id.clone(),
            max_in_flight: cfg.max_in_flight,
            max_queued: cfg.max_queued_frames,
            ack_timeout: cfg.ack_timeout,
            drain_timeout: cfg.ack_timeout,
        },
        rx,
        counters.clone(),
    ));

    let window_ms = cfg.window.as_millis() as i64;
    let interval_ms = cfg.sample_interval.as_millis() as i64;
    let mut windows = WindowAssembler::new(
        window_ms,
        (window_ms / interval_ms) as usize,
        cfg.top_processes,
    );
    let mut sample_tick = tokio::time::interval(cfg.sample_interval);
    sample_tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut process_tick = tokio::time::interval(cfg.process_interval);
    process_tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut log_tick = tokio::time::interval_at(
        tokio::time::Instant::now() + COUNTER_LOG_INTERVAL,
        COUNTER_LOG_INTERVAL,
    );
    let mut samples: Vec<(&'static str, f64)> = Vec::with_capacity(32);
    let mut scan: Vec<ProcessSample> = Vec::new();
    let send = |closed: Option<ClosedWindow>, framer: &mut Framer| -> Result<()> {
        if let Some(qf) = closed.map(|c| framer.frame(c)).transpose()?.flatten() {
            // The receiver only closes after this loop ends, so this cannot fail while we run.
            let _ = tx.send(qf);
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
                let closed = windows.push(ts, samples.iter().copied());
                if let Err(e) = send(closed, &mut framer) { break Err(e) }
            }
            _ = process_tick.tick() => {
                let ts = now_ms();
                scan.clear();
                collector.scan_processes(ts, &mut scan);
                Counters::add(&counters.process_scans, 1);
                let closed = windows.push_processes(ts, &scan);
                if let Err(e) = send(closed, &mut framer) { break Err(e) }
            }
            _ = log_tick.tick() => info!(counters = %counters.summary(), "agent counters"),
        }
    };
    counters
        .samples_overwritten
        .store(windows.overwritten(), std::sync::atomic::Ordering::Relaxed);
    let flushed = send(windows.close(), &mut framer);
    drop(tx);
    if sender.await.is_err() {
        warn!("send loop panicked");
    }
    info!(counters = %counters.summary(), "agent stopped");
    result.and(flushed)?;
    Ok(RunReport {
        agent_id,
        counters: counters.snapshot(),
    })
}
