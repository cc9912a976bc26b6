//! OTLP points → windows → frames, exactly once.
//!
//! Accepted points are cut into wall-clock-aligned windows of `otlp.window` per source, the
//! same as agents' windows. Within an open window a point is keyed by (series, timestamp), so
//! an exporter that sends the same point twice overwrites it instead of adding a row; and a
//! point with the same value and start time as the series' previous point is a re-export of an
//! unchanged state (SDKs re-export cumulative state on every flush and at shutdown) and is
//! dropped. A window is closed `otlp.grace` after its end; points for a window
//! of that source already closed are late: rejected, counted and reported to the exporter.
//!
//! Admission, before anything is logged: a data point later than now + `otlp.max_skew`,
//! older than now − `otlp.max_age`, for a closed window, that would open more than
//! `otlp.max_open_windows` windows, add series past `otlp.max_series` to its source's window,
//! or grow the window's frame past `ingest.max_frame_bytes` (a conservative estimate: per
//! series its name twice plus 256 bytes, per point 32 bytes up to the LTTB threshold + 2, plus
//! the host) is refused and reported in the partial-success answer. So every window that is
//! acknowledged point by point builds a frame the admission accepts.
//!
//! Durability: before an Export is answered, its accepted points are appended to the
//! write-ahead log `DATA_DIR/otlp-wal/<window start>.wal` (one JSON line per source and
//! request, prefixed by the first 16 hex digits of its SHA-256) and fsynced. An append that
//! would take the log past `otlp.max_wal_bytes`, or that fails (disk full), is answered
//! `UNAVAILABLE` and leaves nothing behind: every file appended to by the request is truncated
//! back to its length before it, so no partial line can swallow the next append. A closed
//! window becomes a snapshot — exact statistics and MinMax-LTTB through the agent's own
//! `build_snapshot` — sealed as a Protobuf frame with `seq` = window start / window length + 1
//! (window starts are multiples of the window length and at least 0, so distinct windows of a
//! source never share a seq, and it is ≥ 1; deterministic, so a window rebuilt after a crash is
//! a duplicate of itself) and admitted like an agent's frame (verification, store, live
//! streams). Its WAL file is deleted once every window in it is acked COMMITTED or DUPLICATE;
//! unacked windows are resubmitted. On start the WAL is replayed (a torn last line is skipped
//! and counted).

use super::mapping::{DataPoint, Refusal, Rejections, SourcePoints};
use crate::counters::Counters;
use crate::ingest::{AckTo, Admission, PeerIdentity};
use anyhow::{Context, Result};
use fleetset_core::downsample::Downsampler;
use fleetset_core::window::{build_snapshot, window_start, ClosedWindow, ProcessNaming};
use fleetset_proto::pb::{self, AckStatus};
use fleetset_proto::{seal, Compression, Encoding, HostInfo, SealOptions};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How often closed windows are looked for.
const FLUSH_TICK: Duration = Duration::from_millis(100);
/// A submitted window without an ack for this long is submitted again.
const RESUBMIT_AFTER: Duration = Duration::from_secs(30);

/// Settings of the OTLP windowing.
#[derive(Debug, Clone)]
pub struct OtlpWindowConfig {
    /// Window length, ms.
    pub window_ms: i64,
    /// Wait after a window's end before closing it, ms.
    pub grace_ms: i64,
    /// The write-ahead log directory.
    pub wal_dir: PathBuf,
    /// MinMax-LTTB downsampling per series per window (`[otlp.lttb]`).
    pub lttb: Downsampler,
    /// The ingest HMAC keys, so the frames verify like agents' frames (each signed with the
    /// key of its agent id).
    pub keys: fleetset_proto::HmacKeys,
    /// Limits of what one receiver buffers.
    pub limits: WindowLimits,
}

/// What the window buffer holds at most (`[otlp]` and `ingest.max_frame_bytes`).
#[derive(Debug, Clone, Copy)]
pub struct WindowLimits {
    /// Points later than now + this are refused, ms.
    pub max_skew_ms: i64,
    /// Points older than now − this are refused, ms.
    pub max_age_ms: i64,
    /// Open windows (source × window).
    pub max_open_windows: usize,
    /// Series per source per window.
    pub max_series: usize,
    /// Total WAL bytes.
    pub max_wal_bytes: u64,
    /// The admission's frame limit, bytes.
    pub max_frame_bytes: usize,
}

/// Extension of a WAL file of another window length being moved (see [`OtlpWindows::open`]).
const MOVING: &str = "moving";

/// Estimated frame bytes a series adds besides its points (name in data and stats, stats).
const SERIES_BYTES: usize = 256;
/// Estimated frame bytes of one point (ts, value, framing).
const POINT_BYTES: usize = 32;
/// Frame bytes kept free of points: header, window fields.
const FRAME_SLACK: usize = 4096;

/// The estimated frame bytes a new series `name` adds besides its points.
fn series_bytes(name: &str) -> usize {
    name.len().saturating_mul(2).saturating_add(SERIES_BYTES)
}

/// The estimated frame bytes of `host`.
fn host_bytes(host: &HostInfo) -> usize {
    let labels: usize = host
        .labels
        .iter()
        .map(|(k, v)| k.len().saturating_add(v.len()).saturating_add(16))
        .fold(0, usize::saturating_add);
    [&host.hostname, &host.os, &host.kernel, &host.agent_version]
        .iter()
        .map(|s| s.len().saturating_add(16))
        .fold(labels, usize::saturating_add)
}

/// One WAL line.
#[derive(Debug, Serialize, Deserialize)]
struct WalRecord {
    agent_id: String,
    host: HostInfo,
    /// (series, ts ms, value, start ns).
    points: Vec<(String, i64, f64, u64)>,
}

#[derive(Debug)]
struct Open {
    host: HostInfo,
    /// series → ts → (value, start ns).
    points: BTreeMap<String, BTreeMap<i64, (f64, u64)>>,
    /// Estimated frame bytes of the series and points (see [`FRAME_SLACK`]).
    bytes: usize,
}

#[derive(Default)]
struct State {
    /// Open windows by (start, agent).
    open: BTreeMap<(i64, String), Open>,
    /// Per agent, the latest window start closed: older points are late (forgotten once older
    /// than `otlp.max_age`).
    closed: HashMap<String, i64>,
    /// Windows not yet acked per WAL file (window start).
    pending: HashMap<i64, usize>,
    /// Submitted, unacked frames by (agent, seq), with when they were submitted.
    inflight: HashMap<(String, u64), (pb::Frame, Instant)>,
    /// Bytes of the WAL files.
    wal_bytes: u64,
}

/// What one request adds to the open windows while it is admitted.
#[derive(Default)]
struct Growth {
    /// Per window touched: points added per series (new series included), estimated bytes.
    windows: HashMap<(i64, String), WindowGrowth>,
    /// Windows opened.
    opened: usize,
}

#[derive(Default)]
struct WindowGrowth {
    points: HashMap<String, usize>,
    bytes: usize,
}

/// The OTLP window buffer of one aggregator.
pub struct OtlpWindows {
    cfg: OtlpWindowConfig,
    state: Mutex<State>,
    counters: Arc<Counters>,
    /// Test hook: appends fail after this many more bytes (a full disk).
    #[cfg(test)]
    fail_after: Mutex<Option<usize>>,
}

fn checksum(line: &str) -> String {
    hex::encode(&Sha256::digest(line.as_bytes())[..8])
}

impl OtlpWindows {
    /// Opens the buffer, replaying the write-ahead log. A WAL file whose points are not all in
    /// the window its name starts (written with another `otlp.window`) is renamed
    /// `<start>.moving`, its records logged again into the files of the current windows, and
    /// then deleted. Errors: the WAL directory is unusable.
    pub fn open(cfg: OtlpWindowConfig, counters: Arc<Counters>) -> Result<OtlpWindows> {
        std::fs::create_dir_all(&cfg.wal_dir)
            .with_context(|| format!("creating {}", cfg.wal_dir.display()))?;
        let mut state = State::default();
        let (mut lines, mut torn) = (0usize, 0usize);
        let mut relog: BTreeMap<i64, Vec<WalRecord>> = BTreeMap::new();
        let mut stale = Vec::new();
        let paths: Vec<PathBuf> = std::fs::read_dir(&cfg.wal_dir)?
            .flatten()
            .map(|e| e.path())
            .collect();
        for path in paths {
            let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
            let Some(start) = path
                .file_stem()
                .and_then(|s| s.to_str())
                .filter(|_| ext == "wal" || ext == MOVING)
                .and_then(|s| s.parse::<i64>().ok())
            else {
                continue;
            };
            let file = std::fs::File::open(&path)?;
            let len = file.metadata().map_or(0, |m| m.len());
            let mut records = Vec::new();
            for line in std::io::BufReader::new(file).lines() {
                let record = line.ok().and_then(|l| {
                    let (sum, json) = l.split_once('\t')?;
                    (checksum(json) == sum)
                        .then(|| serde_json::from_str::<WalRecord>(json).ok())
                        .flatten()
                });
                match record {
                    Some(r) => records.push(r),
                    None => torn += 1,
                }
            }
            lines = lines.saturating_add(records.len());
            let in_window = |r: &WalRecord| {
                r.points
                    .iter()
                    .all(|p| window_start(p.1, cfg.window_ms) == start)
            };
            if ext == "wal" && records.iter().all(in_window) {
                state.wal_bytes = state.wal_bytes.saturating_add(len);
                for r in records {
                    insert(&mut state, start, r, &cfg.lttb);
                }
                continue;
            }
            // Renamed first, so the file can receive moved records under its own name; a
            // crash before its removal moves its records again (harmless: same points).
            let moving = path.with_extension(MOVING);
            if ext == "wal" {
                std::fs::rename(&path, &moving)
                    .with_context(|| format!("renaming {}", path.display()))?;
            }
            stale.push(moving);
            for r in records {
                let mut by_window: BTreeMap<i64, Vec<_>> = BTreeMap::new();
                for p in r.points {
                    by_window
                        .entry(window_start(p.1, cfg.window_ms))
                        .or_default()
                        .push(p);
                }
                for (start, points) in by_window {
                    relog.entry(start).or_default().push(WalRecord {
                        agent_id: r.agent_id.clone(),
                        host: r.host.clone(),
                        points,
                    });
                }
            }
        }
        if lines + torn > 0 {
            info!(
                records = lines,
                torn,
                windows = state.open.len(),
                moved = stale.len(),
                "OTLP write-ahead log replayed"
            );
        }
        Counters::add(&counters.otlp_wal_torn, torn as u64);
        Counters::add(&counters.otlp_wal_replayed, lines as u64);
        let w = OtlpWindows {
            cfg,
            state: Mutex::new(state),
            counters,
            #[cfg(test)]
            fail_after: Mutex::new(None),
        };
        if !stale.is_empty() {
            let mut state = w.lock();
            let appended = w
                .log(&relog, &mut state, false)
                .context("moving OTLP WAL records of another otlp.window")?;
            state.wal_bytes = state.wal_bytes.saturating_add(appended);
            for (start, recs) in relog {
                for r in recs {
                    insert(&mut state, start, r, &w.cfg.lttb);
                }
            }
            drop(state);
            for path in stale {
                std::fs::remove_file(&path)
                    .with_context(|| format!("removing {}", path.display()))?;
            }
        }
        Ok(w)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits, logs and buffers the points of one Export at `now_ms`; returns the data points
    /// refused. Errors: the WAL is full or cannot be written (nothing of this request is
    /// buffered or left in the WAL then).
    pub fn accept(&self, sources: Vec<SourcePoints>, now_ms: i64) -> Result<Rejections> {
        let mut refused = Rejections::default();
        let mut records: BTreeMap<i64, Vec<WalRecord>> = BTreeMap::new();
        let mut state = self.lock();
        let mut growth = Growth::default();
        for s in sources {
            let mut by_window: BTreeMap<i64, Vec<(String, i64, f64, u64)>> = BTreeMap::new();
            let host = host_bytes(&s.host);
            for dp in s.points {
                match self.admit(&state, &mut growth, (&s.agent_id, host), &dp, now_ms) {
                    Ok(start) => by_window.entry(start).or_default().extend(
                        dp.into_iter()
                            .map(|p| (p.metric, p.ts_ms, p.value, p.start_ns)),
                    ),
                    Err((rule, why)) => refused.add(rule, 1, why),
                }
            }
            for (start, points) in by_window {
                records.entry(start).or_default().push(WalRecord {
                    agent_id: s.agent_id.clone(),
                    host: s.host.clone(),
                    points,
                });
            }
        }
        let appended = self.log(&records, &mut state, true)?;
        state.wal_bytes = state.wal_bytes.saturating_add(appended);
        for (start, recs) in records {
            for r in recs {
                insert(&mut state, start, r, &self.cfg.lttb);
            }
        }
        Ok(refused)
    }

    /// Admits one data point of `agent` (with `host` estimated frame bytes) at `now_ms` into
    /// the state as grown by this request so far (`growth`, updated); returns its window
    /// start, or the rule it breaks and why.
    fn admit(
        &self,
        state: &State,
        growth: &mut Growth,
        (agent, host): (&str, usize),
        dp: &DataPoint,
        now_ms: i64,
    ) -> std::result::Result<i64, (Refusal, String)> {
        let lim = self.cfg.limits;
        let Some(ts) = dp.first().map(|p| p.ts_ms) else {
            return Err((Refusal::Malformed, "a data point without values".into()));
        };
        let earliest = now_ms.saturating_sub(lim.max_age_ms);
        let latest = now_ms.saturating_add(lim.max_skew_ms);
        if ts > latest || ts < earliest {
            return Err((
                Refusal::Time,
                format!("a point at {ts} ms is outside [now − otlp.max_age, now + otlp.max_skew] = [{earliest}, {latest}]"),
            ));
        }
        let start = window_start(ts, self.cfg.window_ms);
        if state.closed.get(agent).is_some_and(|c| start <= *c) {
            return Err((
                Refusal::Late,
                "point(s) belong to windows already closed (later than otlp.grace)".into(),
            ));
        }
        let key = (start, agent.to_string());
        let open = state.open.get(&key);
        let new_window = open.is_none() && !growth.windows.contains_key(&key);
        if new_window
            && state.open.len().saturating_add(growth.windows.len()) >= lim.max_open_windows
        {
            return Err((
                Refusal::OpenWindows,
                format!(
                    "more than otlp.max_open_windows = {} windows open",
                    lim.max_open_windows
                ),
            ));
        }
        let g = growth.windows.entry(key).or_default();
        let held = |m: &str| open.and_then(|o| o.points.get(m)).map(BTreeMap::len);
        let fresh: HashSet<&str> = dp
            .iter()
            .map(|p| p.metric.as_str())
            .filter(|m| held(m).is_none() && !g.points.contains_key(*m))
            .collect();
        let series = open
            .map_or(0, |o| o.points.len())
            .saturating_add(g.points.len())
            .saturating_add(fresh.len());
        if series > lim.max_series {
            return Err((
                Refusal::Series,
                format!(
                    "more than otlp.max_series = {} series in a window of {agent}",
                    lim.max_series
                ),
            ));
        }
        let cap = self.cfg.lttb.threshold.saturating_add(2);
        let cost = dp
            .iter()
            .map(|p| {
                let had = held(&p.metric)
                    .unwrap_or(0)
                    .saturating_add(g.points.get(&p.metric).copied().unwrap_or(0));
                let series = if fresh.contains(p.metric.as_str()) {
                    series_bytes(&p.metric)
                } else {
                    0
                };
                series.saturating_add(if had < cap { POINT_BYTES } else { 0 })
            })
            .fold(0, usize::saturating_add);
        let budget = lim
            .max_frame_bytes
            .saturating_sub(FRAME_SLACK.saturating_add(host));
        let bytes = open.map_or(0, |o| o.bytes).saturating_add(g.bytes);
        if bytes.saturating_add(cost) > budget {
            return Err((
                Refusal::FrameBytes,
                format!(
                    "the window of {agent} would exceed ingest.max_frame_bytes = {}",
                    lim.max_frame_bytes
                ),
            ));
        }
        g.bytes = g.bytes.saturating_add(cost);
        for p in dp {
            let n = g.points.entry(p.metric.clone()).or_default();
            *n = n.saturating_add(1);
        }
        if new_window {
            growth.opened = growth.opened.saturating_add(1);
        }
        Ok(start)
    }

    /// Write-ahead: appends and fsyncs `records` to their WAL files; returns the bytes
    /// appended. Errors: `otlp.max_wal_bytes` would be exceeded (if `bounded`), or a write
    /// failed — then every file is truncated back to its length before (no partial line is
    /// left).
    fn log(
        &self,
        records: &BTreeMap<i64, Vec<WalRecord>>,
        state: &mut State,
        bounded: bool,
    ) -> Result<u64> {
        let mut texts = Vec::with_capacity(records.len());
        let mut total = 0u64;
        for (start, recs) in records {
            let mut text = String::new();
            for r in recs {
                let json = serde_json::to_string(r)?;
                text.push_str(&checksum(&json));
                text.push('\t');
                text.push_str(&json);
                text.push('\n');
            }
            total = total.saturating_add(u64::try_from(text.len()).unwrap_or(u64::MAX));
            texts.push((*start, text));
        }
        let max = self.cfg.limits.max_wal_bytes;
        if bounded && total > 0 && state.wal_bytes.saturating_add(total) > max {
            Counters::add(&self.counters.otlp_wal_full, 1);
            anyhow::bail!(
                "the write-ahead log is full ({} of otlp.max_wal_bytes = {max} bytes used, {total} more needed); retry once windows have closed",
                state.wal_bytes
            );
        }
        let mut done: Vec<(PathBuf, u64)> = Vec::new();
        for (start, text) in texts {
            let path = self.cfg.wal_dir.join(format!("{start}.wal"));
            if let Err(e) = self.append(&path, text.as_bytes(), &mut done) {
                Counters::add(&self.counters.otlp_wal_write_failures, 1);
                for (path, len) in done.iter().rev() {
                    let undone = std::fs::OpenOptions::new()
                        .write(true)
                        .open(path)
                        .and_then(|f| f.set_len(*len).and_then(|()| f.sync_data()));
                    if let Err(e) = undone {
                        warn!(path = %path.display(), error = %e, "could not truncate an OTLP WAL file after a failed append");
                    }
                }
                return Err(e);
            }
        }
        Ok(total)
    }

    /// Appends `bytes` to `path` and fsyncs, first pushing (path, length before) on `done`.
    fn append(
        &self,
        path: &std::path::Path,
        bytes: &[u8],
        done: &mut Vec<(PathBuf, u64)>,
    ) -> Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        let before = f
            .metadata()
            .with_context(|| format!("reading {}", path.display()))?
            .len();
        done.push((path.to_path_buf(), before));
        #[cfg(test)]
        let bytes = {
            let mut fail = self.fail_after.lock().unwrap_or_else(|p| p.into_inner());
            match fail.as_mut() {
                Some(n) if *n < bytes.len() => {
                    let cut = *n;
                    *n = 0;
                    f.write_all(&bytes[..cut])?;
                    anyhow::bail!("writing {}: no space left on device (test)", path.display());
                }
                Some(n) => {
                    *n = n.saturating_sub(bytes.len());
                    bytes
                }
                None => bytes,
            }
        };
        f.write_all(bytes)
            .and_then(|()| f.sync_data())
            .with_context(|| format!("writing {}", path.display()))
    }

    /// Closes due windows into frames and admits them; resubmits unacked ones; until `stop`
    /// (open windows stay in the WAL for the next start).
    pub async fn run(self: Arc<Self>, admission: Admission, stop: CancellationToken) {
        // Acks owed are for windows in flight: at most the open windows, closed and resubmitted.
        let room = self.cfg.limits.max_open_windows.saturating_mul(2).max(64);
        let (ack_tx, mut acks) = mpsc::channel::<pb::Ack>(room);
        let mut tick = tokio::time::interval(FLUSH_TICK);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                Some(ack) = acks.recv() => self.acked(&ack),
                _ = tick.tick() => {
                    for frame in self.due(fleetset_core::time::now_ms()) {
                        if !admission.admit(frame, AckTo::Otlp(ack_tx.clone()), &PeerIdentity::Unbound).await {
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Frames of the windows due now (and of submitted windows whose ack is overdue).
    fn due(&self, now_ms: i64) -> Vec<pb::Frame> {
        let mut state = self.lock();
        let due: Vec<(i64, String)> = state
            .open
            .keys()
            .take_while(|(start, _)| {
                start
                    .saturating_add(self.cfg.window_ms)
                    .saturating_add(self.cfg.grace_ms)
                    <= now_ms
            })
            .cloned()
            .collect();
        if !due.is_empty() {
            // A closed mark older than otlp.max_age refuses nothing the time bound does not:
            // forgotten, so sources that come and go do not accumulate.
            let horizon = now_ms
                .saturating_sub(self.cfg.limits.max_age_ms)
                .saturating_sub(self.cfg.window_ms);
            state.closed.retain(|_, start| *start >= horizon);
        }
        let mut frames = Vec::new();
        for key in due {
            let Some(open) = state.open.remove(&key) else {
                continue;
            };
            let (start, agent_id) = key;
            let closed = state.closed.entry(agent_id.clone()).or_insert(start);
            *closed = (*closed).max(start);
            match self.frame(start, &agent_id, open) {
                Ok(frame) => {
                    let seq = frame.header.as_ref().map_or(0, |h| h.seq);
                    state
                        .inflight
                        .insert((agent_id, seq), (frame.clone(), Instant::now()));
                    Counters::add(&self.counters.otlp_windows, 1);
                    frames.push(frame);
                }
                Err(e) => warn!(
                    agent_id,
                    start,
                    error = format!("{e:#}"),
                    "OTLP window could not be sealed"
                ),
            }
        }
        for (frame, at) in state.inflight.values_mut() {
            if at.elapsed() >= RESUBMIT_AFTER {
                *at = Instant::now();
                frames.push(frame.clone());
            }
        }
        frames
    }

    fn frame(&self, start: i64, agent_id: &str, open: Open) -> Result<pb::Frame> {
        let closed = ClosedWindow {
            start,
            end: start.saturating_add(self.cfg.window_ms),
            raw: open
                .points
                .into_iter()
                .map(|(m, pts)| (m, pts.into_iter().map(|(ts, (v, _))| (ts, v)).collect()))
                .collect(),
            processes: Vec::new(),
        };
        let naming = ProcessNaming {
            salt: String::new(),
            send_names: false,
        };
        let (mut snapshot, _) = build_snapshot(closed, &self.cfg.lttb, &naming);
        snapshot.agent_id = agent_id.to_string();
        snapshot.seq = seq_of(start, self.cfg.window_ms)
            .with_context(|| format!("window start {start} has no seq"))?;
        snapshot.host = open.host;
        Ok(seal(
            &snapshot,
            &SealOptions {
                encoding: Encoding::Protobuf,
                compression: Compression::None,
                hmac_key: self.cfg.keys.key_for(agent_id),
            },
        )?)
    }

    /// An ack for a window: forget it, and delete its WAL file once nothing in it is pending.
    fn acked(&self, ack: &pb::Ack) {
        let status = AckStatus::try_from(ack.status).unwrap_or(AckStatus::Unspecified);
        if status == AckStatus::Rejected {
            warn!(
                agent_id = ack.agent_id,
                seq = ack.seq,
                detail = ack.detail,
                "OTLP window rejected"
            );
        }
        let mut state = self.lock();
        if state
            .inflight
            .remove(&(ack.agent_id.clone(), ack.seq))
            .is_none()
        {
            return;
        }
        let Some(start) = start_of(ack.seq, self.cfg.window_ms) else {
            return;
        };
        let left = state.pending.get_mut(&start).map(|n| {
            *n = n.saturating_sub(1);
            *n
        });
        if left == Some(0) {
            state.pending.remove(&start);
            let path = self.cfg.wal_dir.join(format!("{start}.wal"));
            let len = std::fs::metadata(&path).map_or(0, |m| m.len());
            state.wal_bytes = state.wal_bytes.saturating_sub(len);
            if let Err(e) = std::fs::remove_file(&path) {
                warn!(path = %path.display(), error = %e, "could not delete an OTLP WAL file");
            }
        }
    }
}

/// The seq of the window starting at `start` (a multiple of `window_ms`, ≥ 0): start /
/// window_ms + 1, so ≥ 1 and distinct per window. `None` for a negative or unaligned start.
pub fn seq_of(start: i64, window_ms: i64) -> Option<u64> {
    if start < 0 || window_ms <= 0 || start.checked_rem(window_ms)? != 0 {
        return None;
    }
    u64::try_from(start.checked_div(window_ms)?.checked_add(1)?).ok()
}

/// The window start of `seq` ([`seq_of`]'s inverse).
fn start_of(seq: u64, window_ms: i64) -> Option<i64> {
    i64::try_from(seq.checked_sub(1)?)
        .ok()?
        .checked_mul(window_ms)
}

/// Adds a WAL record's points to the open window (counting a new window as pending).
fn insert(state: &mut State, start: i64, r: WalRecord, lttb: &Downsampler) {
    let key = (start, r.agent_id);
    if !state.open.contains_key(&key) {
        *state.pending.entry(start).or_default() += 1;
    }
    let open = state.open.entry(key).or_insert_with(|| Open {
        host: r.host.clone(),
        points: BTreeMap::new(),
        bytes: 0,
    });
    open.host = r.host;
    let cap = lttb.threshold.saturating_add(2);
    for (metric, ts, value, start) in r.points {
        if !open.points.contains_key(&metric) {
            open.bytes = open.bytes.saturating_add(series_bytes(&metric));
        }
        let series = open.points.entry(metric).or_default();
        let repeat = series
            .range(..ts)
            .next_back()
            .is_some_and(|(_, prev)| *prev == (value, start));
        if !repeat && series.insert(ts, (value, start)).is_none() && series.len() <= cap {
            open.bytes = open.bytes.saturating_add(POINT_BYTES);
        }
    }
}

#[cfg(test)]
mod tests;
