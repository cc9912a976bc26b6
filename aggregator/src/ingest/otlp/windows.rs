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
//! Durability: before an Export is answered, its accepted points are appended to the
//! write-ahead log `DATA_DIR/otlp-wal/<window start>.wal` (one JSON line per source and
//! request, prefixed by the first 16 hex digits of its SHA-256) and fsynced. A closed window
//! becomes a snapshot — exact statistics and MinMax-LTTB through the agent's own
//! `build_snapshot` — sealed as a Protobuf frame with `seq` = window start / window length
//! (deterministic, so a window rebuilt after a crash is a duplicate of itself) and admitted like
//! an agent's frame (verification, store, live streams). Its WAL file is deleted once every
//! window in it is acked COMMITTED or DUPLICATE; unacked windows are resubmitted. On start the
//! WAL is replayed (a torn last line is skipped and counted).

use super::mapping::SourcePoints;
use crate::counters::Counters;
use crate::ingest::{AckTo, Admission};
use anyhow::{Context, Result};
use fleetset_core::downsample::Downsampler;
use fleetset_core::window::{build_snapshot, window_start, ClosedWindow, ProcessNaming};
use fleetset_proto::pb::{self, AckStatus};
use fleetset_proto::{seal, Compression, Encoding, HostInfo, SealOptions};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
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
    /// Fleet HMAC key, so the frames verify like agents' frames.
    pub hmac_key: Option<Vec<u8>>,
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
}

#[derive(Default)]
struct State {
    /// Open windows by (start, agent).
    open: BTreeMap<(i64, String), Open>,
    /// Per agent, the latest window start closed: older points are late.
    closed: HashMap<String, i64>,
    /// Windows not yet acked per WAL file (window start).
    pending: HashMap<i64, usize>,
    /// Submitted, unacked frames by (agent, seq), with when they were submitted.
    inflight: HashMap<(String, u64), (pb::Frame, Instant)>,
}

/// The OTLP window buffer of one aggregator.
pub struct OtlpWindows {
    cfg: OtlpWindowConfig,
    state: Mutex<State>,
    counters: Arc<Counters>,
}

fn checksum(line: &str) -> String {
    hex::encode(&Sha256::digest(line.as_bytes())[..8])
}

impl OtlpWindows {
    /// Opens the buffer, replaying the write-ahead log. Errors: the WAL directory is unusable.
    pub fn open(cfg: OtlpWindowConfig, counters: Arc<Counters>) -> Result<OtlpWindows> {
        std::fs::create_dir_all(&cfg.wal_dir)
            .with_context(|| format!("creating {}", cfg.wal_dir.display()))?;
        let mut state = State::default();
        let (mut lines, mut torn) = (0usize, 0usize);
        for entry in std::fs::read_dir(&cfg.wal_dir)?.flatten() {
            let path = entry.path();
            let Some(start) = path
                .file_stem()
                .and_then(|s| s.to_str())
                .filter(|_| path.extension().is_some_and(|e| e == "wal"))
                .and_then(|s| s.parse::<i64>().ok())
            else {
                continue;
            };
            let file = std::fs::File::open(&path)?;
            for line in std::io::BufReader::new(file).lines() {
                let record = line.ok().and_then(|l| {
                    let (sum, json) = l.split_once('\t')?;
                    (checksum(json) == sum)
                        .then(|| serde_json::from_str::<WalRecord>(json).ok())
                        .flatten()
                });
                match record {
                    Some(r) => {
                        lines += 1;
                        insert(&mut state, start, r);
                    }
                    None => torn += 1,
                }
            }
        }
        if lines + torn > 0 {
            info!(
                records = lines,
                torn,
                windows = state.open.len(),
                "OTLP write-ahead log replayed"
            );
        }
        Counters::add(&counters.otlp_wal_torn, torn as u64);
        Counters::add(&counters.otlp_wal_replayed, lines as u64);
        Ok(OtlpWindows {
            cfg,
            state: Mutex::new(state),
            counters,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Logs and buffers the points of one Export; returns how many were late (rejected).
    /// Errors: the WAL cannot be written (nothing of this request is buffered then).
    pub fn accept(&self, sources: Vec<SourcePoints>) -> Result<u64> {
        let mut late = 0u64;
        let mut records: BTreeMap<i64, Vec<WalRecord>> = BTreeMap::new();
        let mut state = self.lock();
        for s in sources {
            let mut by_window: BTreeMap<i64, Vec<(String, i64, f64, u64)>> = BTreeMap::new();
            for p in s.points {
                let start = window_start(p.ts_ms, self.cfg.window_ms);
                if state.closed.get(&s.agent_id).is_some_and(|c| start <= *c) {
                    late += 1;
                    continue;
                }
                by_window
                    .entry(start)
                    .or_default()
                    .push((p.metric, p.ts_ms, p.value, p.start_ns));
            }
            for (start, points) in by_window {
                records.entry(start).or_default().push(WalRecord {
                    agent_id: s.agent_id.clone(),
                    host: s.host.clone(),
                    points,
                });
            }
        }
        // Write-ahead: every touched WAL file appended and fsynced before anything is buffered.
        for (start, recs) in &records {
            let path = self.cfg.wal_dir.join(format!("{start}.wal"));
            let mut text = String::new();
            for r in recs {
                let json = serde_json::to_string(r)?;
                text.push_str(&format!("{}\t{json}\n", checksum(&json)));
            }
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .with_context(|| format!("opening {}", path.display()))?;
            f.write_all(text.as_bytes())
                .and_then(|()| f.sync_data())
                .with_context(|| format!("writing {}", path.display()))?;
        }
        for (start, recs) in records {
            for r in recs {
                insert(&mut state, start, r);
            }
        }
        Ok(late)
    }

    /// Closes due windows into frames and admits them; resubmits unacked ones; until `stop`
    /// (open windows stay in the WAL for the next start).
    pub async fn run(self: Arc<Self>, admission: Admission, stop: CancellationToken) {
        let (ack_tx, mut acks) = mpsc::unbounded_channel::<pb::Ack>();
        let mut tick = tokio::time::interval(FLUSH_TICK);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                Some(ack) = acks.recv() => self.acked(&ack),
                _ = tick.tick() => {
                    for frame in self.due(fleetset_core::time::now_ms()) {
                        if !admission.admit(frame, AckTo::Otlp(ack_tx.clone())).await {
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
            .take_while(|(start, _)| start + self.cfg.window_ms + self.cfg.grace_ms <= now_ms)
            .cloned()
            .collect();
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
            end: start + self.cfg.window_ms,
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
        snapshot.seq = (start.div_euclid(self.cfg.window_ms)).max(1) as u64;
        snapshot.host = open.host;
        Ok(seal(
            &snapshot,
            &SealOptions {
                encoding: Encoding::Protobuf,
                compression: Compression::None,
                hmac_key: self.cfg.hmac_key.clone(),
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
        let start = ack.seq as i64 * self.cfg.window_ms;
        let left = state.pending.get_mut(&start).map(|n| {
            *n = n.saturating_sub(1);
            *n
        });
        if left == Some(0) {
            state.pending.remove(&start);
            let path = self.cfg.wal_dir.join(format!("{start}.wal"));
            if let Err(e) = std::fs::remove_file(&path) {
                warn!(path = %path.display(), error = %e, "could not delete an OTLP WAL file");
            }
        }
    }
}

/// Adds a WAL record's points to the open window (counting a new window as pending).
fn insert(state: &mut State, start: i64, r: WalRecord) {
    let key = (start, r.agent_id);
    if !state.open.contains_key(&key) {
        *state.pending.entry(start).or_default() += 1;
    }
    let open = state.open.entry(key).or_insert_with(|| Open {
        host: r.host.clone(),
        points: BTreeMap::new(),
    });
    open.host = r.host;
    for (metric, ts, value, start) in r.points {
        let series = open.points.entry(metric).or_default();
        let repeat = series
            .range(..ts)
            .next_back()
            .is_some_and(|(_, prev)| *prev == (value, start));
        if !repeat {
            series.insert(ts, (value, start));
        }
    }
}

#[cfg(test)]
mod tests {
    //! The write-ahead log on real files: what an Export accepted survives a restart, a torn
    //! tail is skipped and counted, an acked window's file goes, a replayed committed window is
    //! the same frame again (so the store acks it DUPLICATE and writes nothing).
    use super::*;
    use crate::ingest::otlp::mapping::Point;
    use std::sync::atomic::Ordering::Relaxed;

    const W: i64 = 1_700_000_040_000; // a minute boundary, ms
    const AGENT: &str = "otel-wal-test";

    struct Dir(PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn dir(tag: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("fleetset-wal-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        Dir(d)
    }

    fn open(d: &Dir) -> (OtlpWindows, Arc<Counters>) {
        let counters = Arc::new(Counters::default());
        let cfg = OtlpWindowConfig {
            window_ms: 60_000,
            grace_ms: 0,
            wal_dir: d.0.clone(),
            lttb: Downsampler::default(),
            hmac_key: None,
        };
        (OtlpWindows::open(cfg, counters.clone()).unwrap(), counters)
    }

    /// One Export of `values` for `x.gauge`, one second apart from `W + offset_s` s.
    fn export(w: &OtlpWindows, offset_s: i64, values: &[f64]) {
        let points = values
            .iter()
            .enumerate()
            .map(|(i, v)| Point {
                metric: "x.gauge".into(),
                ts_ms: W + (offset_s + i as i64) * 1000,
                value: *v,
                start_ns: 0,
            })
            .collect();
        let late = w
            .accept(vec![SourcePoints {
                agent_id: AGENT.into(),
                host: HostInfo::default(),
                points,
            }])
            .unwrap();
        assert_eq!(late, 0);
    }

    fn wal_file(d: &Dir) -> PathBuf {
        d.0.join(format!("{W}.wal"))
    }

    /// The closed window's frame and its `x.gauge` values.
    fn close(w: &OtlpWindows) -> (pb::Frame, Vec<f64>) {
        let mut frames = w.due(W + 60_000);
        assert_eq!(frames.len(), 1, "one window due");
        let frame = frames.remove(0);
        let snap = fleetset_proto::verify(&frame, &fleetset_proto::VerifyOptions::default())
            .expect("the OTLP frame verifies like an agent's");
        let values = snap.data["x.gauge"].iter().map(|p| p.value).collect();
        (frame, values)
    }

    fn ack(frame: &pb::Frame, status: AckStatus) -> pb::Ack {
        let h = frame.header.as_ref().unwrap();
        pb::Ack {
            agent_id: h.agent_id.clone(),
            seq: h.seq,
            status: status as i32,
            ..Default::default()
        }
    }

    #[test]
    fn accepted_points_are_on_disk_before_the_answer_and_come_back_after_a_restart() {
        let d = dir("replay");
        let (w, _) = open(&d);
        export(&w, 0, &[1.0, 2.0, 3.0]);
        // Written (and fsynced) before accept returned: one checksummed line.
        let text = std::fs::read_to_string(wal_file(&d)).unwrap();
        assert_eq!(text.lines().count(), 1);
        let (sum, json) = text.lines().next().unwrap().split_once('\t').unwrap();
        assert_eq!(checksum(json), sum);
        drop(w); // a crash: nothing closed, nothing acked

        let (w, counters) = open(&d);
        assert_eq!(counters.otlp_wal_replayed.load(Relaxed), 1);
        assert_eq!(counters.otlp_wal_torn.load(Relaxed), 0);
        assert_eq!(close(&w).1, [1.0, 2.0, 3.0]);
    }

    #[test]
    fn a_torn_last_line_is_skipped_and_counted() {
        let d = dir("torn");
        let (w, _) = open(&d);
        export(&w, 0, &[1.0, 2.0]);
        export(&w, 10, &[7.0]);
        drop(w);
        // The second append was cut short by a crash.
        let len = std::fs::metadata(wal_file(&d)).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(wal_file(&d))
            .unwrap()
            .set_len(len - 5)
            .unwrap();

        let (w, counters) = open(&d);
        assert_eq!(counters.otlp_wal_torn.load(Relaxed), 1);
        assert_eq!(counters.otlp_wal_replayed.load(Relaxed), 1);
        assert_eq!(
            close(&w).1,
            [1.0, 2.0],
            "the intact record, nothing of the torn one"
        );
    }

    #[test]
    fn the_wal_file_is_deleted_once_its_window_is_acked() {
        let d = dir("ack");
        let (w, _) = open(&d);
        export(&w, 0, &[5.0]);
        let (frame, _) = close(&w);
        assert!(wal_file(&d).exists(), "kept until the frame is acked");
        let mut other = ack(&frame, AckStatus::Committed);
        other.seq += 1;
        w.acked(&other);
        assert!(wal_file(&d).exists(), "an ack for another window keeps it");
        w.acked(&ack(&frame, AckStatus::Committed));
        assert!(!wal_file(&d).exists(), "deleted after the ack");
        drop(w);
        let (w, counters) = open(&d);
        assert_eq!(counters.otlp_wal_replayed.load(Relaxed), 0);
        assert!(w.due(W + 60_000).is_empty());
    }

    #[test]
    fn replaying_an_already_committed_window_adds_nothing() {
        let d = dir("committed");
        let (w, _) = open(&d);
        export(&w, 0, &[1.0, 4.0]);
        let (first, _) = close(&w);
        // Committed by the store, but the aggregator died before the ack deleted the WAL file.
        drop(w);
        let (w, counters) = open(&d);
        assert_eq!(counters.otlp_wal_replayed.load(Relaxed), 1);
        let (again, _) = close(&w);
        // The same frame: same (agent_id, seq, window) and payload, which the store acks
        // DUPLICATE without writing a row.
        assert_eq!(again.header, first.header);
        assert_eq!(again.payload, first.payload);
        w.acked(&ack(&again, AckStatus::Duplicate));
        assert!(!wal_file(&d).exists(), "a DUPLICATE ack also deletes it");
        drop(w);
        let (w, counters) = open(&d);
        assert_eq!(counters.otlp_wal_replayed.load(Relaxed), 0);
        assert!(w.due(W + 60_000).is_empty(), "nothing left to replay");
    }
}
