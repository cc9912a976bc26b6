//! The part of the agent shared by `run` (live sampling) and `replay` (CSV files): closed
//! windows → snapshot (stats + MinMax-LTTB) → sealed frame → durable spool → send loop, plus the
//! persisted `seq` / last window and the status file.
//!
//! Order of durability for each window: the frame is written to the spool (fsynced), then
//! `next_seq` and `last_window` are persisted, then the send loop is told. After a crash at any
//! point, the next start resumes `seq` after the highest spooled or persisted value, persists
//! that before sending anything, and never frames a window it already spooled; the aggregator
//! drops any duplicate window by `(agent_id, window_start)` regardless.
//!
//! A full disk never stops the pipeline. The spool makes room or holds frames in memory (see
//! [`crate::spool`]); a failed state write is counted (`state_write_failures`) and retried with
//! the next window. `seq` stays monotonic in memory, and a frame is handed to the send loop only
//! once a `next_seq` above it is durable — otherwise it could be acked, deleted, and its seq
//! reused after a restart (the aggregator would take the new window for a duplicate). If
//! `next_seq` cannot be written for lack of space and the spool shares its disk, the oldest
//! spooled frame is deleted to make room (reason `disk_full`), so delivery (which frees space)
//! never waits for an operator.

use crate::config::AgentConfig;
use crate::counters::Counters;
use crate::events::{Event, EventLog};
use crate::sender::{self, lock, SenderConfig, SharedSpool};
use crate::spool::{Spool, Spooled};
use crate::state::StateDir;
use anyhow::{Context, Result};
use fleetset_core::config::ReloadStatus;
use fleetset_core::downsample::Downsampler;
use fleetset_core::telemetry::Telemetry;
use fleetset_core::window::{build_snapshot, ClosedWindow, ProcessNaming};
use fleetset_proto::{seal_as, HostInfo, SealOptions, Versioned};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How often counters go to the status file (and every 60 s to the log).
const STATUS_INTERVAL: Duration = Duration::from_secs(5);

/// Name of the status file in the state directory.
pub const STATUS_FILE: &str = "status.json";

/// A running pipeline for one agent id.
pub struct Pipeline {
    agent_id: String,
    host: HostInfo,
    sample_interval_ms: u64,
    downsampler: Downsampler,
    naming: ProcessNaming,
    seal: SealOptions,
    /// `transport.frame_version`.
    frame_version: u32,
    state: StateDir,
    next_seq: u64,
    /// `next_seq` as persisted: frames below it may be sent.
    durable_seq: u64,
    /// Frames below this seq were handed to the send loop.
    announced_below: u64,
    /// The state directory and the spool are on one filesystem.
    same_disk: bool,
    last_window: i64,
    raw_dump_dir: Option<PathBuf>,
    spool: SharedSpool,
    tx: mpsc::UnboundedSender<Spooled>,
    sender: JoinHandle<()>,
    status: JoinHandle<()>,
    telemetry: Option<(Telemetry, CancellationToken)>,
    otlp_side: Option<mpsc::Sender<fleetset_proto::Snapshot>>,
    events: Arc<EventLog>,
    /// The pipeline's counters.
    pub counters: Arc<Counters>,
    /// Configuration reloads (shown by `/healthz?verbose`; the run loop records them).
    pub reload: Arc<ReloadStatus>,
}

/// Windows queued for the best-effort `--otlp-endpoint` export; more are dropped and counted.
const OTLP_SIDE_QUEUE: usize = 64;

/// The best-effort OTLP export beside the main transport (`--otlp-endpoint`): a task that
/// exports queued windows one by one, reconnecting as needed.
fn start_otlp_side(
    cfg: &AgentConfig,
    counters: &Arc<Counters>,
) -> Option<mpsc::Sender<fleetset_proto::Snapshot>> {
    let url = cfg.transport.otlp_endpoint.clone()?;
    if cfg.transport.protocol == crate::config::TransportArg::Otlp {
        return None;
    }
    let (tx, mut rx) = mpsc::channel::<fleetset_proto::Snapshot>(OTLP_SIDE_QUEUE);
    let (counters, timeout) = (counters.clone(), cfg.transport.ack_timeout);
    let tls = cfg.transport.tls.clone();
    tokio::spawn(async move {
        let mut exporter: Option<crate::otlp::OtlpExporter> = None;
        while let Some(snapshot) = rx.recv().await {
            if exporter.is_none() {
                exporter = crate::otlp::OtlpExporter::connect(&url, &tls, timeout)
                    .await
                    .ok();
            }
            let result = match exporter.as_mut() {
                Some(e) => e.export(&snapshot).await,
                None => Err(format!("cannot connect to {url}")),
            };
            match result {
                Ok(crate::otlp::Exported::Accepted) => Counters::add(&counters.otlp_exported, 1),
                Ok(crate::otlp::Exported::Rejected(why)) | Err(why) => {
                    Counters::add(&counters.otlp_export_failures, 1);
                    warn!(
                        seq = snapshot.seq,
                        error = why,
                        "OTLP export of a window failed"
                    );
                    exporter = None;
                }
            }
        }
    });
    Some(tx)
}

/// Counters exposed as gauges (levels, not totals).
const GAUGES: [&str; 4] = [
    "spool_frames",
    "spool_bytes",
    "spool_held_frames",
    "config_generation",
];

/// Own telemetry of the agent (see [`fleetset_core::telemetry`]): the counters through the SDK, a
/// `/metrics` endpoint unless `telemetry.enabled = false` (a bind failure is logged, not fatal;
/// unusable TLS files or an unsecured non-loopback address are errors, see
/// [`crate::telemetry`]), OTLP export with `telemetry.otlp`. `None` when both are off.
fn start_telemetry(
    cfg: &AgentConfig,
    agent_id: &str,
    counters: &Arc<Counters>,
    events: &EventLog,
    reload: &Arc<ReloadStatus>,
) -> Result<Option<(Telemetry, CancellationToken)>> {
    crate::telemetry::enforce(cfg)?;
    if !cfg.telemetry.enabled && cfg.telemetry.otlp.is_none() {
        return Ok(None);
    }
    let tls = match cfg.telemetry.enabled {
        true => crate::telemetry::load_tls(cfg, counters)?,
        false => None,
    };
    let t = Telemetry::start(
        "agent",
        agent_id,
        cfg.telemetry.otlp.as_deref(),
        fleetset_core::telemetry::EXPORT_INTERVAL,
    )?
    .with_reload_status(reload.clone());
    let names: Vec<String> = counters
        .snapshot()
        .iter()
        .map(|(k, _)| k.to_string())
        .collect();
    let c = counters.clone();
    t.observe_counters(&names, &GAUGES, move || {
        c.snapshot()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    });
    let stop = CancellationToken::new();
    if cfg.telemetry.enabled {
        let c = counters.clone();
        let on_event = std::sync::Arc::new(move |e| {
            let counter = match e {
                fleetset_core::net::ConnEvent::Refused => &c.metrics_connections_refused,
                fleetset_core::net::ConnEvent::IdleClosed => &c.metrics_connections_idle_closed,
            };
            Counters::add(counter, 1);
        });
        match crate::telemetry::serve(&t, cfg, tls, counters, on_event, stop.clone()) {
            Ok(addr) => {
                info!(%addr, "own telemetry on http://{addr}/metrics");
                events.emit(Event::Telemetry {
                    addr: addr.to_string(),
                });
            }
            Err(e) => warn!(
                error = format!("{e:#}"),
                "no /metrics endpoint (set telemetry.listen, or telemetry.enabled = false)"
            ),
        }
    }
    Ok(Some((t, stop)))
}

/// Writes the counters as JSON to `state_dir/status.json` (atomically); a failure is counted
/// and logged, the next write retries.
fn write_status(state: &StateDir, agent_id: &str, counters: &Counters) {
    let body = serde_json::json!({
        "agent_id": agent_id,
        "updated_ms": fleetset_core::time::now_ms(),
        "counters": counters.snapshot().into_iter().collect::<std::collections::BTreeMap<_, _>>(),
    });
    match serde_json::to_string_pretty(&body) {
        Ok(text) => {
            write_state(state, counters, STATUS_FILE, &text);
        }
        Err(e) => warn!(error = %e, "could not encode the status"),
    }
}

/// Writes state file `name`; a failure is counted (`state_write_failures`), logged and
/// returned as `false` (the caller retries with the next window).
fn write_state(state: &StateDir, counters: &Counters, name: &str, value: &str) -> bool {
    match state.write(name, value) {
        Ok(()) => true,
        Err(e) => {
            Counters::add(&counters.state_write_failures, 1);
            warn!(
                file = name,
                error = format!("{e:#}"),
                "could not write a state file; retried with the next window"
            );
            false
        }
    }
}

/// Persists `next_seq = value`. Without space for it on the spool's disk, deletes the oldest
/// spooled frame and tries once more. Returns whether `value` is durable.
fn persist_next_seq(
    state: &StateDir,
    spool: &SharedSpool,
    same_disk: bool,
    counters: &Counters,
    value: u64,
) -> bool {
    let value = value.to_string();
    match state.write("next_seq", &value) {
        Ok(()) => return true,
        Err(e) if same_disk && disk_full(&e) => {
            if lock(spool).make_room().is_none() {
                Counters::add(&counters.state_write_failures, 1);
                warn!(
                    error = format!("{e:#}"),
                    "no room for next_seq; new frames wait"
                );
                return false;
            }
        }
        Err(_) => {}
    }
    write_state(state, counters, "next_seq", &value)
}

/// `e` is an I/O error for lack of space.
fn disk_full(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .any(crate::spool::is_disk_full)
}

/// `a` and `b` are on one filesystem (so deleting in one frees space for the other).
fn same_filesystem(a: &std::path::Path, b: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev(),
        _ => false,
    }
}

/// The status file of the agent using `state_dir`, with its age, for `fleetset-agent status`.
pub fn read_status(state_dir: &std::path::Path) -> Result<String> {
    let path = state_dir.join(STATUS_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "no status at {} (is an agent using this state dir?)",
            path.display()
        )
    })?;
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let age_ms = fleetset_core::time::now_ms() - v["updated_ms"].as_i64().unwrap_or(0);
    Ok(format!(
        "{text}\nupdated {:.1} s ago\n",
        age_ms as f64 / 1000.0
    ))
}

impl Pipeline {
    /// Opens the state directory and spool, and starts the send loop (which first resends what
    /// the spool holds). `drain_timeout`: see [`SenderConfig::drain_timeout`].
    pub fn start(
        cfg: &AgentConfig,
        agent_id: String,
        host: HostInfo,
        drain_timeout: Option<Duration>,
    ) -> Result<Pipeline> {
        let state = StateDir::open(&cfg.state_dir)?;
        let salt = match &cfg.collect.process_name_salt {
            Some(s) => s.clone(),
            None => hex::encode(fleetset_core::secret::load_or_create(
                &state.path("salt"),
                32,
                16,
            )?),
        };
        let counters = Arc::new(Counters::default());
        let events = EventLog::open(cfg.events.as_deref())?;
        let spool_dir = cfg.spool_dir();
        let spool = Spool::open(&spool_dir, &cfg.spool, counters.clone(), events.clone())?;
        let (spooled_seq, spooled_window) = spool.newest().unwrap_or((0, i64::MIN));
        let persisted = u64::try_from(state.read_i64("next_seq", 1)?.max(1)).unwrap_or(1);
        let next_seq = persisted.max(spooled_seq.saturating_add(1));
        let last_window = state.read_i64("last_window", i64::MIN)?.max(spooled_window);
        let same_disk = same_filesystem(&cfg.state_dir, &spool_dir);
        let spool = Arc::new(Mutex::new(spool));
        // Persist what the spool taught us before any spooled frame can be acked and deleted:
        // otherwise a crash after that would leave stale state and reframe a sent window. What
        // cannot be persisted yet (full disk) waits in the spool.
        let durable_seq = if persist_next_seq(&state, &spool, same_disk, &counters, next_seq) {
            next_seq
        } else {
            persisted
        };
        if last_window > i64::MIN {
            write_state(&state, &counters, "last_window", &last_window.to_string());
        }
        let already_spooled = lock(&spool).pending_in(..durable_seq);

        // Unbounded but bounded by the spool: one 24-byte `Spooled` per frame in the spool
        // (whose size `spool.*` bounds), announced once.
        let (tx, rx) = mpsc::unbounded_channel();
        let hmac_key = cfg
            .transport
            .hmac_key_hex
            .as_deref()
            .map(hex::decode)
            .transpose()?;
        let sender = tokio::spawn(sender::run(
            SenderConfig {
                transport: cfg.transport.protocol,
                endpoint: match (cfg.transport.protocol, &cfg.transport.otlp_endpoint) {
                    (crate::config::TransportArg::Otlp, Some(url)) => url.clone(),
                    _ => cfg.transport.aggregator.clone(),
                },
                agent_id: agent_id.clone(),
                tls: cfg.transport.tls.clone(),
                zmq: crate::transport::zmq_config::ZmqConfig {
                    // Acks never outnumber the frames in flight: a queue that holds them all
                    // never fills, so the link thread never stops while the sender waits to
                    // hand it a frame (with more in flight than the queue, both waited).
                    ack_queue: cfg.transport.zmq.ack_queue.max(cfg.transport.max_in_flight),
                    ..cfg.transport.zmq.clone()
                },
                curve: cfg.transport.curve.clone(),
                max_in_flight: cfg.transport.max_in_flight,
                ack_timeout: cfg.transport.ack_timeout,
                drain_timeout,
                // OTLP acks are made by this agent from the Export responses, not signed.
                ack_key: hmac_key
                    .clone()
                    .filter(|_| cfg.transport.protocol != crate::config::TransportArg::Otlp),
            },
            spool.clone(),
            already_spooled,
            rx,
            counters.clone(),
            events.clone(),
        ));
        let status = {
            let (state, agent_id, counters) = (state.clone(), agent_id.clone(), counters.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(STATUS_INTERVAL);
                let mut n = 0u64;
                loop {
                    tick.tick().await;
                    write_status(&state, &agent_id, &counters);
                    n += 1;
                    if n.is_multiple_of(12) {
                        info!(counters = %counters.summary(), "agent counters");
                    }
                }
            })
        };
        let reload = Arc::new(ReloadStatus::default());
        let telemetry = start_telemetry(cfg, &agent_id, &counters, &events, &reload)?;
        let otlp_side = start_otlp_side(cfg, &counters);
        info!(%agent_id, aggregator = %cfg.transport.aggregator, transport = ?cfg.transport.protocol, encoding = ?cfg.transport.encoding,
            next_seq, spool = %spool_dir.display(), "agent pipeline started");
        Ok(Pipeline {
            agent_id,
            host,
            sample_interval_ms: cfg.collect.sample_interval.as_millis() as u64,
            downsampler: cfg.window.lttb,
            naming: ProcessNaming {
                salt,
                send_names: cfg.collect.send_process_names,
            },
            seal: SealOptions {
                encoding: cfg.transport.encoding.into(),
                compression: cfg.transport.compression.into(),
                hmac_key,
            },
            frame_version: cfg.transport.frame_version,
            state,
            next_seq,
            durable_seq,
            announced_below: durable_seq,
            same_disk,
            last_window,
            raw_dump_dir: cfg.collect.raw_dump_dir.clone(),
            spool,
            tx,
            sender,
            status,
            telemetry,
            otlp_side,
            events,
            counters,
            reload,
        })
    }

    /// Applies the live keys of a reloaded configuration (labels, sample interval, process-name
    /// sending, MinMax-LTTB settings) to the windows submitted from now on. The run loop calls
    /// it at a window boundary, so every window is framed under one configuration.
    pub fn apply_reload(&mut self, cfg: &AgentConfig) {
        self.host.labels = cfg.labels.clone();
        self.sample_interval_ms = cfg.collect.sample_interval.as_millis() as u64;
        self.downsampler = cfg.window.lttb;
        self.naming.send_names = cfg.collect.send_process_names;
    }

    /// Sets the raw sample interval recorded in snapshots (replay: the file's median step).
    pub fn set_sample_interval_ms(&mut self, ms: u64) {
        self.sample_interval_ms = ms;
    }

    /// Frames spooled and not yet acked.
    pub fn spooled(&self) -> usize {
        lock(&self.spool).pending().len()
    }

    /// Frames spooled and not yet acked, and their bytes (on disk and held in memory).
    pub fn spooled_frames_and_bytes(&self) -> (usize, u64) {
        let spool = lock(&self.spool);
        (spool.pending().len(), spool.bytes())
    }

    /// Frames, spools and queues one closed window. Windows at or before the last one already
    /// framed (after a restart) are skipped and logged. A full disk is no error (see the module
    /// docs). Errors: the window could not be sealed or `collect.raw_dump_dir` written.
    pub fn submit(&mut self, closed: ClosedWindow) -> Result<bool> {
        let framed = self.frame(closed)?;
        if framed {
            self.persist_and_announce();
        }
        Ok(framed)
    }

    /// [`Pipeline::submit`] for many windows at once (replay's backfill): every window is
    /// framed and spooled without an fsync of its own, then the spool is synced once
    /// ([`Spool::sync`]), then `next_seq` and `last_window` are persisted once, then the frames
    /// go to the send loop — the order of durability of the module docs, per batch instead of
    /// per window. Returns (windows framed, windows skipped as framed before a restart).
    /// Errors: as [`Pipeline::submit`]; the windows framed before the error are kept and
    /// persisted.
    pub fn submit_batch(&mut self, windows: Vec<ClosedWindow>) -> Result<(u64, u64)> {
        lock(&self.spool).defer_sync();
        let (mut framed, mut skipped) = (0, 0);
        let mut result = Ok(());
        for closed in windows {
            match self.frame(closed) {
                Ok(true) => framed += 1,
                Ok(false) => skipped += 1,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        if let Err(e) = lock(&self.spool).sync() {
            Counters::add(&self.counters.spool_write_failures, 1);
            warn!(error = %e, "could not sync the spool after a batch of frames");
        }
        if framed > 0 {
            self.persist_and_announce();
        }
        result.map(|()| (framed, skipped))
    }

    /// Seals and spools one window (see [`Pipeline::submit`]); `false` when it was framed
    /// before a restart. Does not persist the state or announce the frame.
    fn frame(&mut self, closed: ClosedWindow) -> Result<bool> {
        if closed.start <= self.last_window {
            warn!(
                window_start = closed.start,
                "window already framed before a restart; skipped"
            );
            return Ok(false);
        }
        if let Some(dir) = &self.raw_dump_dir {
            dump_raw(dir, &self.agent_id, &closed)?;
        }
        let (mut snap, quality) = build_snapshot(closed, &self.downsampler, &self.naming);
        self.counters.add_quality(&quality);
        snap.agent_id.clone_from(&self.agent_id);
        snap.seq = self.next_seq;
        snap.host = self.host.clone();
        snap.sample_interval_ms = self.sample_interval_ms;
        let versioned = Versioned {
            version: self.frame_version,
            config_generation: self.counters.config_generation.load(Ordering::Relaxed),
        };
        let frame = seal_as(&snap, &self.seal, versioned).context("sealing a snapshot")?;
        self.events.emit(Event::Framed {
            seq: snap.seq,
            window_start: snap.start,
            bytes: frame.payload.len() as u64,
        });
        if let Some(side) = &self.otlp_side {
            if side.try_send(snap.clone()).is_err() {
                Counters::add(&self.counters.otlp_export_failures, 1);
            }
        }
        lock(&self.spool).push(snap.seq, snap.start, &frame);
        self.next_seq = snap.seq.saturating_add(1);
        self.last_window = snap.start;
        Counters::add(&self.counters.windows, 1);
        info!(
            seq = snap.seq,
            window_start = snap.start,
            metrics = snap.data.len(),
            bytes = frame.payload.len(),
            "window closed"
        );
        Ok(true)
    }

    /// Persists `next_seq` and `last_window` (failures counted, retried with the next window),
    /// then hands the frames below the durable `next_seq` to the send loop.
    fn persist_and_announce(&mut self) {
        if persist_next_seq(
            &self.state,
            &self.spool,
            self.same_disk,
            &self.counters,
            self.next_seq,
        ) {
            self.durable_seq = self.next_seq;
        }
        let last = self.last_window.to_string();
        write_state(&self.state, &self.counters, "last_window", &last);
        self.announce();
    }

    /// Hands the spooled frames below the durable `next_seq` that the send loop has not had yet
    /// to it (all of them unless `next_seq` could not be persisted).
    fn announce(&mut self) {
        if self.durable_seq <= self.announced_below {
            return;
        }
        for f in lock(&self.spool).pending_in(self.announced_below..self.durable_seq) {
            // The send loop outlives every submit; if it died, the frame stays spooled for next start.
            let _ = self.tx.send(f);
        }
        self.announced_below = self.durable_seq;
    }

    /// Closes the frame channel, waits for the send loop to drain, writes the final status.
    pub async fn finish(self) -> Vec<(&'static str, u64)> {
        drop(self.tx);
        if self.sender.await.is_err() {
            warn!("send loop panicked");
        }
        self.status.abort();
        if let Some((t, stop)) = &self.telemetry {
            t.shutdown().await;
            stop.cancel();
        }
        write_status(&self.state, &self.agent_id, &self.counters);
        info!(counters = %self.counters.summary(), "agent stopped");
        self.counters.snapshot()
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
