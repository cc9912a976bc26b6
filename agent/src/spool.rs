//! The durable spool: every sealed frame is a file in `spool.dir` before it is sent, and is
//! deleted only when the aggregator acks it (COMMITTED or DUPLICATE; a REJECTED frame is moved
//! to `rejected/` for inspection, since resending it cannot succeed).
//!
//! File format: `<seq, 20 digits>.frame` holding the protobuf `fleetset.v1.Frame` — header with
//! the payload's SHA-256, then the payload — so a spooled frame is verified end to end on load.
//! Writes go to `.<seq>.tmp`, are fsynced (policy [`FsyncPolicy`]), renamed into place, and the
//! directory is fsynced, so a crash leaves either the whole frame or no frame.
//!
//! On open, every frame is read and verified; a torn, truncated or corrupted file (or one whose
//! name disagrees with its header) is moved to `quarantine/`, counted and logged, never sent.
//!
//! The spool is bounded in bytes: when a new frame would exceed `max_bytes`, the oldest frames
//! (lowest seq) are dropped, each counted and logged with the window it loses.

use crate::counters::Counters;
use crate::events::{DropReason, Event, EventLog};
use anyhow::{Context, Result};
use fleetset_proto::pb;
use fleetset_proto::{verify, VerifyOptions};
use prost::Message;
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use tracing::{info, warn};

/// When spool writes are fsynced.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
    Default,
)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// fsync each frame file and the spool directory before the frame is sent (default: one
    /// frame per window, so this costs two fsyncs per window). Survives power loss.
    #[default]
    Always,
    /// No fsync: the frame survives a crash of the agent process (the kernel has the data) but
    /// not a power loss or kernel crash. For hosts where fsync is too slow.
    Never,
}

/// A spooled frame's metadata (its bytes stay on disk until sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spooled {
    /// The frame's seq.
    pub seq: u64,
    /// Its window start, Unix ms.
    pub window_start: i64,
    /// File size, bytes.
    pub bytes: u64,
}

/// The spool directory and its index.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    fsync: FsyncPolicy,
    entries: BTreeMap<u64, Spooled>,
    total: u64,
    counters: Arc<Counters>,
    events: Arc<EventLog>,
}

fn file_name(seq: u64) -> String {
    format!("{seq:020}.frame")
}

/// Moves `path` into `dir/<sub>/`, keeping its name.
fn move_into(dir: &Path, sub: &str, path: &Path) -> Result<()> {
    let target = dir.join(sub);
    fs::create_dir_all(&target)?;
    let name = path.file_name().context("file name")?;
    fs::rename(path, target.join(name))?;
    Ok(())
}

/// Reads and verifies one spool file; the error says what is wrong with it.
fn load_verified(path: &Path, seq: u64) -> Result<(pb::Frame, i64)> {
    let bytes = fs::read(path)?;
    let frame =
        pb::Frame::decode(bytes.as_slice()).context("not a protobuf Frame (torn write?)")?;
    let opts = VerifyOptions {
        max_frame_bytes: usize::MAX,
        max_decompressed_bytes: usize::MAX / 2,
        hmac_key: None,
    };
    let snap = verify(&frame, &opts).map_err(|e| anyhow::anyhow!("{e}"))?;
    anyhow::ensure!(
        snap.seq == seq,
        "file name says seq {seq}, frame says {}",
        snap.seq
    );
    Ok((frame, snap.start))
}

impl Spool {
    /// Opens (creating) the spool in `dir`: verifies every frame, quarantines bad ones, removes
    /// leftover temporary files. Returns the spool; its frames are [`Spool::pending`]. Frames
    /// dropped later (spool full) are recorded in `events`.
    pub fn open(
        dir: &Path,
        max_bytes: u64,
        fsync: FsyncPolicy,
        counters: Arc<Counters>,
        events: Arc<EventLog>,
    ) -> Result<Spool> {
        fs::create_dir_all(dir).with_context(|| format!("creating spool dir {}", dir.display()))?;
        let mut spool = Spool {
            dir: dir.to_path_buf(),
            max_bytes,
            fsync,
            entries: BTreeMap::new(),
            total: 0,
            counters,
            events,
        };
        for entry in fs::read_dir(dir)?.flatten() {
            let path = entry.path();
            let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .map(str::to_string)
            else {
                continue;
            };
            if !path.is_file() {
                continue;
            }
            if name.starts_with('.') && name.ends_with(".tmp") {
                fs::remove_file(&path)?;
                continue;
            }
            let Some(seq) = name
                .strip_suffix(".frame")
                .and_then(|s| s.parse::<u64>().ok())
            else {
                continue;
            };
            match load_verified(&path, seq) {
                Ok((_, window_start)) => {
                    let bytes = entry.metadata().map_or(0, |m| m.len());
                    spool.entries.insert(
                        seq,
                        Spooled {
                            seq,
                            window_start,
                            bytes,
                        },
                    );
                    spool.total += bytes;
                }
                Err(e) => {
                    warn!(file = %path.display(), error = format!("{e:#}"), "corrupt spool file quarantined, not sent");
                    move_into(dir, "quarantine", &path)?;
                    Counters::add(&spool.counters.spool_quarantined, 1);
                }
            }
        }
        spool.publish_gauges();
        if !spool.entries.is_empty() {
            info!(
                frames = spool.entries.len(),
                bytes = spool.total,
                "spooled frames to resend"
            );
        }
        Ok(spool)
    }

    fn publish_gauges(&self) {
        self.counters
            .spool_frames
            .store(self.entries.len() as u64, Relaxed);
        self.counters.spool_bytes.store(self.total, Relaxed);
    }

    /// Spooled frames in seq order.
    pub fn pending(&self) -> Vec<Spooled> {
        self.entries.values().copied().collect()
    }

    /// Highest spooled seq and window start, if any.
    pub fn newest(&self) -> Option<(u64, i64)> {
        let seq = *self.entries.keys().next_back()?;
        let window = self.entries.values().map(|e| e.window_start).max()?;
        Some((seq, window))
    }

    /// Writes `frame` durably, then drops the oldest frames while the spool exceeds
    /// `max_bytes` (never the new one). Returns the dropped frames.
    pub fn push(&mut self, seq: u64, window_start: i64, frame: &pb::Frame) -> Result<Vec<Spooled>> {
        let bytes = frame.encode_to_vec();
        let tmp = self.dir.join(format!(".{seq}.tmp"));
        let path = self.dir.join(file_name(seq));
        let mut f = File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
        f.write_all(&bytes)
            .with_context(|| format!("writing {} (disk full?)", tmp.display()))?;
        if self.fsync == FsyncPolicy::Always {
            f.sync_all()?;
        }
        drop(f);
        fs::rename(&tmp, &path)?;
        if self.fsync == FsyncPolicy::Always {
            File::open(&self.dir)?.sync_all()?;
        }
        let e = Spooled {
            seq,
            window_start,
            bytes: bytes.len() as u64,
        };
        self.entries.insert(seq, e);
        self.total += e.bytes;
        let mut dropped = Vec::new();
        while self.total > self.max_bytes && self.entries.len() > 1 {
            let Some((&oldest, _)) = self.entries.iter().next() else {
                break;
            };
            if oldest == seq {
                break;
            }
            if let Some(d) = self.take(oldest) {
                let _ = fs::remove_file(self.dir.join(file_name(oldest)));
                Counters::add(&self.counters.frames_dropped_spool_full, 1);
                warn!(
                    seq = d.seq,
                    window_start = d.window_start,
                    max_bytes = self.max_bytes,
                    "spool full: dropped the oldest frame, its window is lost"
                );
                self.events.emit(Event::Dropped {
                    seq: d.seq,
                    window_start: d.window_start,
                    reason: DropReason::SpoolFull,
                });
                dropped.push(d);
            }
        }
        self.publish_gauges();
        Ok(dropped)
    }

    fn take(&mut self, seq: u64) -> Option<Spooled> {
        let e = self.entries.remove(&seq)?;
        self.total -= e.bytes;
        Some(e)
    }

    /// Reads spooled frame `seq`; `None` if it is no longer spooled (dropped or acked).
    pub fn load(&self, seq: u64) -> Result<Option<pb::Frame>> {
        if !self.entries.contains_key(&seq) {
            return Ok(None);
        }
        let bytes = fs::read(self.dir.join(file_name(seq)))?;
        Ok(Some(
            pb::Frame::decode(bytes.as_slice()).context("spooled frame unreadable")?,
        ))
    }

    /// Deletes an acked frame (or moves a rejected one to `rejected/`).
    pub fn remove(&mut self, seq: u64, rejected: bool) -> Result<()> {
        if self.take(seq).is_none() {
            return Ok(());
        }
        let path = self.dir.join(file_name(seq));
        if rejected {
            move_into(&self.dir, "rejected", &path)?;
        } else {
            fs::remove_file(&path)?;
        }
        self.publish_gauges();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetset_proto::{seal, SealOptions, Snapshot};

    fn frame(seq: u64) -> pb::Frame {
        let s = Snapshot {
            agent_id: "a".into(),
            seq,
            start: seq as i64 * 1000,
            end: seq as i64 * 1000 + 1000,
            ..Default::default()
        };
        seal(
            &s,
            &SealOptions {
                encoding: fleetset_proto::Encoding::Msgpack,
                ..Default::default()
            },
        )
        .unwrap()
    }

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("fleetset-spool-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn frames_survive_reopen_and_corrupt_ones_are_quarantined() {
        let dir = tmp("reopen");
        let c = Arc::new(Counters::default());
        let mut s = Spool::open(
            &dir,
            1 << 20,
            FsyncPolicy::Always,
            c.clone(),
            EventLog::disabled(),
        )
        .unwrap();
        for seq in 1..=4 {
            s.push(seq, seq as i64 * 1000, &frame(seq)).unwrap();
        }
        s.remove(2, false).unwrap();
        drop(s);
        // Truncate seq 3, flip a payload byte of seq 4.
        let p3 = dir.join(file_name(3));
        let len = fs::metadata(&p3).unwrap().len();
        File::options()
            .write(true)
            .open(&p3)
            .unwrap()
            .set_len(len / 2)
            .unwrap();
        let p4 = dir.join(file_name(4));
        let mut b = fs::read(&p4).unwrap();
        let n = b.len();
        b[n - 3] ^= 0x10;
        fs::write(&p4, b).unwrap();
        let s = Spool::open(
            &dir,
            1 << 20,
            FsyncPolicy::Always,
            c.clone(),
            EventLog::disabled(),
        )
        .unwrap();
        assert_eq!(
            s.pending().iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![1]
        );
        assert_eq!(c.spool_quarantined.load(Relaxed), 2);
        assert_eq!(fs::read_dir(dir.join("quarantine")).unwrap().count(), 2);
        assert_eq!(s.load(1).unwrap().unwrap(), frame(1));
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_full_spool_drops_exactly_the_oldest() {
        let dir = tmp("full");
        let c = Arc::new(Counters::default());
        let one = frame(1).encode_to_vec().len() as u64;
        let mut s = Spool::open(
            &dir,
            one * 3 + one / 2,
            FsyncPolicy::Never,
            c.clone(),
            EventLog::disabled(),
        )
        .unwrap();
        let mut dropped = Vec::new();
        for seq in 1..=6 {
            dropped.extend(
                s.push(seq, seq as i64 * 1000, &frame(seq))
                    .unwrap()
                    .into_iter()
                    .map(|d| d.seq),
            );
        }
        assert_eq!(dropped, vec![1, 2, 3]);
        assert_eq!(
            s.pending().iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![4, 5, 6]
        );
        assert_eq!(c.frames_dropped_spool_full.load(Relaxed), 3);
        assert!(s.load(2).unwrap().is_none());
        fs::remove_dir_all(dir).unwrap();
    }
}
