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
//!
//! A full disk never stops the agent: the oldest frames on disk are deleted (reason
//! `disk_full`) until the new frame fits; a frame that still cannot be written, or meets another
//! I/O error, is held in memory (bounded by `memory_bytes`, oldest dropped beyond it), sent from
//! there, and written with the next frame once there is room.
//!
//! `rejected/` and `quarantine/` keep at most `keep_rejected` / `keep_quarantined` files; the
//! oldest beyond that are deleted and counted.

use crate::config::SpoolConfig;
use crate::counters::Counters;
use crate::events::{DropReason, Event, EventLog};
use anyhow::{Context, Result};
use fleetset_proto::pb;
use fleetset_proto::{verify, VerifyOptions};
use prost::Message;
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::ops::RangeBounds;
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

/// A frame that could not be written to the spool, held in memory until it can be.
#[derive(Debug)]
struct Held {
    meta: Spooled,
    /// The encoded `fleetset.v1.Frame`, as it would be on disk.
    bytes: Vec<u8>,
}

/// The spool directory and its index (frames on disk, and frames held in memory while the disk
/// cannot take them).
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    limits: SpoolConfig,
    entries: BTreeMap<u64, Spooled>,
    total: u64,
    held: BTreeMap<u64, Held>,
    held_bytes: u64,
    /// Writes skip their fsyncs until [`Spool::sync`] ([`Spool::defer_sync`]).
    deferred: bool,
    counters: Arc<Counters>,
    events: Arc<EventLog>,
}

fn file_name(seq: u64) -> String {
    format!("{seq:020}.frame")
}

/// A write failed for lack of space (`ENOSPC`, `EDQUOT`): deleting older frames can help.
pub fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

/// Moves `path` into `dir/<sub>/`, keeping its name.
fn move_into(dir: &Path, sub: &str, path: &Path) -> Result<()> {
    let target = dir.join(sub);
    fs::create_dir_all(&target)?;
    let name = path.file_name().context("file name")?;
    fs::rename(path, target.join(name))?;
    Ok(())
}

/// Deletes the oldest files of `dir` (by modification time, then name) beyond `keep`; returns
/// how many it deleted. A missing `dir` holds nothing.
fn prune(dir: &Path, keep: usize) -> u64 {
    let Ok(list) = fs::read_dir(dir) else {
        return 0;
    };
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = list
        .flatten()
        .filter_map(|e| {
            let m = e.metadata().ok().filter(|m| m.is_file())?;
            Some((m.modified().unwrap_or(std::time::UNIX_EPOCH), e.path()))
        })
        .collect();
    let excess = files.len().saturating_sub(keep);
    files.sort();
    let mut deleted = 0;
    for (_, path) in files.into_iter().take(excess) {
        match fs::remove_file(&path) {
            Ok(()) => deleted += 1,
            Err(e) => warn!(file = %path.display(), error = %e, "could not prune"),
        }
    }
    deleted
}

/// Writes `bytes` to `dir/<seq>.frame` through a temporary file (fsynced per `fsync`), so a
/// crash leaves the whole frame or none; a failed write leaves nothing behind.
fn write_frame(dir: &Path, seq: u64, bytes: &[u8], fsync: FsyncPolicy) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{seq}.tmp"));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        if fsync == FsyncPolicy::Always {
            f.sync_all()?;
        }
        drop(f);
        fs::rename(&tmp, dir.join(file_name(seq)))?;
        if fsync == FsyncPolicy::Always {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Reads and verifies one spool file; the error says what is wrong with it.
pub(crate) fn load_verified(path: &Path, seq: u64) -> Result<(pb::Frame, i64)> {
    let bytes = fs::read(path)?;
    let frame =
        pb::Frame::decode(bytes.as_slice()).context("not a protobuf Frame (torn write?)")?;
    let opts = VerifyOptions {
        max_frame_bytes: usize::MAX,
        max_decompressed_bytes: usize::MAX / 2,
        keys: fleetset_proto::HmacKeys::None,
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
    /// Opens (creating) the spool in `dir` with the bounds of `limits` (its `dir` is not read):
    /// verifies every frame, quarantines bad ones, removes leftover temporary files, prunes
    /// `rejected/` and `quarantine/` to their `keep_*` bounds. Returns the spool; its frames are
    /// [`Spool::pending`]. Frames dropped later (spool or disk full) are recorded in `events`.
    /// Errors: `dir` cannot be created or listed, a bad file cannot be moved.
    pub fn open(
        dir: &Path,
        limits: &SpoolConfig,
        counters: Arc<Counters>,
        events: Arc<EventLog>,
    ) -> Result<Spool> {
        fs::create_dir_all(dir).with_context(|| format!("creating spool dir {}", dir.display()))?;
        let mut spool = Spool {
            dir: dir.to_path_buf(),
            limits: limits.clone(),
            entries: BTreeMap::new(),
            total: 0,
            held: BTreeMap::new(),
            held_bytes: 0,
            deferred: false,
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
                    spool.total = spool.total.saturating_add(bytes);
                }
                Err(e) => {
                    warn!(file = %path.display(), error = format!("{e:#}"), "corrupt spool file quarantined, not sent");
                    move_into(dir, "quarantine", &path)?;
                    Counters::add(&spool.counters.spool_quarantined, 1);
                }
            }
        }
        spool.prune_inspected("quarantine");
        spool.prune_inspected("rejected");
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

    /// Bounds `rejected/` or `quarantine/` to its `keep_*` key, counting what it deletes.
    fn prune_inspected(&self, sub: &str) {
        let (keep, counter) = match sub {
            "rejected" => (self.limits.keep_rejected, &self.counters.rejected_pruned),
            _ => (
                self.limits.keep_quarantined,
                &self.counters.quarantine_pruned,
            ),
        };
        let deleted = prune(&self.dir.join(sub), keep);
        if deleted > 0 {
            Counters::add(counter, deleted);
            info!(
                dir = sub,
                deleted, keep, "deleted the oldest files beyond the bound"
            );
        }
    }

    fn publish_gauges(&self) {
        let c = &self.counters;
        c.spool_frames.store(self.entries.len() as u64, Relaxed);
        c.spool_bytes.store(self.total, Relaxed);
        c.spool_held_frames.store(self.held.len() as u64, Relaxed);
    }

    /// Spooled frames (on disk or held in memory) in seq order.
    pub fn pending(&self) -> Vec<Spooled> {
        self.pending_in(..)
    }

    /// Spooled frames (on disk or held in memory) whose seq is in `seqs`, in seq order.
    pub fn pending_in(&self, seqs: impl RangeBounds<u64> + Clone) -> Vec<Spooled> {
        let mut all: Vec<Spooled> = self.entries.range(seqs.clone()).map(|(_, e)| *e).collect();
        all.extend(self.held.range(seqs).map(|(_, h)| h.meta));
        all.sort_by_key(|e| e.seq);
        all
    }

    /// Highest spooled seq and window start, if any.
    pub fn newest(&self) -> Option<(u64, i64)> {
        let all = self.pending();
        let seq = all.iter().map(|e| e.seq).max()?;
        let window = all.iter().map(|e| e.window_start).max()?;
        Some((seq, window))
    }

    /// Spools `frame`: writes it durably (and any frame held in memory before it, oldest
    /// first), then drops the oldest frames while the spool exceeds `max_bytes` (never the new
    /// one). On a full disk the oldest frames on disk are deleted one by one until the write
    /// fits; a frame that still cannot be written (or hits another I/O error) is held in memory
    /// and sent from there, up to `memory_bytes` (the oldest held frames are dropped beyond it).
    /// Never fails. Returns the dropped frames; drops and holds are counted and recorded.
    pub fn push(&mut self, seq: u64, window_start: i64, frame: &pb::Frame) -> Vec<Spooled> {
        let bytes = frame.encode_to_vec();
        let meta = Spooled {
            seq,
            window_start,
            bytes: bytes.len() as u64,
        };
        self.held_bytes = self.held_bytes.saturating_add(meta.bytes);
        self.held.insert(seq, Held { meta, bytes });
        let mut dropped = Vec::new();
        let waiting: Vec<u64> = self.held.keys().copied().collect();
        let mut error = None;
        for s in waiting {
            if let Err(e) = self.write_held(s, &mut dropped) {
                Counters::add(&self.counters.spool_write_failures, 1);
                error = Some(e);
                break;
            }
        }
        if let (Some(e), true) = (error, self.held.contains_key(&seq)) {
            warn!(seq, held = self.held.len(), error = %e, "could not spool a frame; holding it in memory");
            self.events.emit(Event::Held {
                seq,
                window_start,
                bytes: meta.bytes,
                error: e.to_string(),
            });
        }
        while self.total > self.limits.max_bytes && self.entries.len() > 1 {
            match self.entries.keys().next() {
                Some(&oldest) if oldest != seq => {
                    dropped.extend(self.drop_oldest(DropReason::SpoolFull));
                }
                _ => break,
            }
        }
        while self.held_bytes > self.limits.memory_bytes {
            let Some((&oldest, _)) = self.held.iter().next() else {
                break;
            };
            if let Some(h) = self.held.remove(&oldest) {
                self.held_bytes = self.held_bytes.saturating_sub(h.meta.bytes);
                dropped.push(self.record_drop(h.meta, DropReason::DiskFull));
            }
        }
        self.publish_gauges();
        dropped
    }

    /// Writes held frame `seq` to disk, deleting the oldest frames on disk while the disk is
    /// full. Errors: the last write error (the frame stays held).
    fn write_held(&mut self, seq: u64, dropped: &mut Vec<Spooled>) -> std::io::Result<()> {
        loop {
            let Some(h) = self.held.get(&seq) else {
                return Ok(());
            };
            let fsync = match self.deferred {
                true => FsyncPolicy::Never,
                false => self.limits.fsync,
            };
            match write_frame(&self.dir, seq, &h.bytes, fsync) {
                Ok(()) => {
                    if let Some(h) = self.held.remove(&seq) {
                        self.held_bytes = self.held_bytes.saturating_sub(h.meta.bytes);
                        self.entries.insert(seq, h.meta);
                        self.total = self.total.saturating_add(h.meta.bytes);
                        self.events.emit(Event::Spooled {
                            seq,
                            window_start: h.meta.window_start,
                            bytes: h.meta.bytes,
                        });
                    }
                    return Ok(());
                }
                Err(e) if is_disk_full(&e) => match self.drop_oldest(DropReason::DiskFull) {
                    Some(d) => dropped.push(d),
                    None => return Err(e),
                },
                Err(e) => return Err(e),
            }
        }
    }

    /// Bytes spooled: frames on disk and held in memory.
    pub fn bytes(&self) -> u64 {
        self.total.saturating_add(self.held_bytes)
    }

    /// Until [`Spool::sync`], frames are written and renamed into place without fsyncs (a batch
    /// of frames is then made durable by one `syncfs` instead of two fsyncs each).
    pub fn defer_sync(&mut self) {
        self.deferred = true;
    }

    /// Ends [`Spool::defer_sync`]: with `fsync = always`, `syncfs(2)` on the spool's filesystem
    /// makes every frame written since durable (data, names, directory) in one call. A frame
    /// torn by a power loss before it fails its checksum at the next start and is quarantined;
    /// the caller persists its state only after this returns, so such a window is framed again.
    /// Errors: the directory cannot be opened, or `syncfs` fails.
    pub fn sync(&mut self) -> std::io::Result<()> {
        if !std::mem::replace(&mut self.deferred, false) || self.limits.fsync == FsyncPolicy::Never
        {
            return Ok(());
        }
        use std::os::fd::AsRawFd;
        let dir = File::open(&self.dir)?;
        // SAFETY: syncfs(2) only reads the descriptor, which `dir` keeps open for the call.
        if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Deletes the oldest frame on disk to free space for something else on the same disk
    /// (the agent's `next_seq`); returns it, `None` if the spool holds nothing on disk.
    pub fn make_room(&mut self) -> Option<Spooled> {
        let d = self.drop_oldest(DropReason::DiskFull);
        self.publish_gauges();
        d
    }

    /// Deletes the oldest frame on disk, counted and recorded with `reason`.
    fn drop_oldest(&mut self, reason: DropReason) -> Option<Spooled> {
        let (&oldest, _) = self.entries.iter().next()?;
        let d = self.take(oldest)?;
        let _ = fs::remove_file(self.dir.join(file_name(oldest)));
        Some(self.record_drop(d, reason))
    }

    /// Counts, logs and records the loss of frame `d`.
    fn record_drop(&self, d: Spooled, reason: DropReason) -> Spooled {
        let counter = match reason {
            DropReason::SpoolFull => &self.counters.frames_dropped_spool_full,
            _ => &self.counters.frames_dropped_disk_full,
        };
        Counters::add(counter, 1);
        warn!(
            seq = d.seq,
            window_start = d.window_start,
            ?reason,
            max_bytes = self.limits.max_bytes,
            memory_bytes = self.limits.memory_bytes,
            "spool or disk full: dropped the oldest frame, its window is lost"
        );
        self.events.emit(Event::Dropped {
            seq: d.seq,
            window_start: d.window_start,
            reason,
        });
        d
    }

    fn take(&mut self, seq: u64) -> Option<Spooled> {
        let e = self.entries.remove(&seq)?;
        self.total = self.total.saturating_sub(e.bytes);
        Some(e)
    }

    /// Reads spooled frame `seq` (from disk, or from memory if held); `None` if it is no longer
    /// spooled (dropped or acked). Errors: the file cannot be read or decoded.
    pub fn load(&self, seq: u64) -> Result<Option<pb::Frame>> {
        let bytes = match self.held.get(&seq) {
            Some(h) => h.bytes.clone(),
            None if self.entries.contains_key(&seq) => fs::read(self.dir.join(file_name(seq)))?,
            None => return Ok(None),
        };
        Ok(Some(
            pb::Frame::decode(bytes.as_slice()).context("spooled frame unreadable")?,
        ))
    }

    /// Deletes an acked frame (or moves a rejected one to `rejected/`, which is then pruned to
    /// `keep_rejected` files). Errors: the file could not be deleted or moved.
    pub fn remove(&mut self, seq: u64, rejected: bool) -> Result<()> {
        if let Some(h) = self.held.remove(&seq) {
            self.held_bytes = self.held_bytes.saturating_sub(h.meta.bytes);
            self.publish_gauges();
            if rejected {
                let dir = self.dir.join("rejected");
                fs::create_dir_all(&dir)?;
                fs::write(dir.join(file_name(seq)), &h.bytes)?;
                self.prune_inspected("rejected");
            }
            return Ok(());
        }
        if self.take(seq).is_none() {
            return Ok(());
        }
        self.publish_gauges();
        let path = self.dir.join(file_name(seq));
        if rejected {
            move_into(&self.dir, "rejected", &path)?;
            self.prune_inspected("rejected");
        } else {
            fs::remove_file(&path)?;
        }
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

    fn limits(max_bytes: u64, fsync: FsyncPolicy) -> SpoolConfig {
        SpoolConfig {
            max_bytes,
            fsync,
            ..Default::default()
        }
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut n: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().into_string().unwrap())
            .collect();
        n.sort();
        n
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
        let lim = limits(1 << 20, FsyncPolicy::Always);
        let mut s = Spool::open(&dir, &lim, c.clone(), EventLog::disabled()).unwrap();
        for seq in 1..=4 {
            s.push(seq, seq as i64 * 1000, &frame(seq));
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
        let s = Spool::open(&dir, &lim, c.clone(), EventLog::disabled()).unwrap();
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
        let lim = limits(one * 3 + one / 2, FsyncPolicy::Never);
        let mut s = Spool::open(&dir, &lim, c.clone(), EventLog::disabled()).unwrap();
        let mut dropped = Vec::new();
        for seq in 1..=6 {
            dropped.extend(
                s.push(seq, seq as i64 * 1000, &frame(seq))
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

    #[test]
    fn rejected_and_quarantined_files_are_bounded_oldest_deleted_first() {
        let dir = tmp("bounded");
        let c = Arc::new(Counters::default());
        let lim = SpoolConfig {
            keep_rejected: 2,
            keep_quarantined: 1,
            ..limits(1 << 20, FsyncPolicy::Never)
        };
        let mut s = Spool::open(&dir, &lim, c.clone(), EventLog::disabled()).unwrap();
        for seq in 1..=5 {
            s.push(seq, seq as i64 * 1000, &frame(seq));
            s.remove(seq, true).unwrap();
        }
        assert_eq!(
            names(&dir.join("rejected")),
            [file_name(4), file_name(5)],
            "the newest two kept"
        );
        assert_eq!(c.rejected_pruned.load(Relaxed), 3);
        drop(s);
        for seq in 6..=8 {
            fs::write(dir.join(file_name(seq)), b"not a frame").unwrap();
        }
        let s = Spool::open(&dir, &lim, c.clone(), EventLog::disabled()).unwrap();
        assert!(s.pending().is_empty());
        assert_eq!(c.spool_quarantined.load(Relaxed), 3);
        assert_eq!(names(&dir.join("quarantine")).len(), 1);
        assert_eq!(c.quarantine_pruned.load(Relaxed), 2);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn unwritable_frames_are_held_in_memory_bounded_then_written_when_possible() {
        let dir = tmp("held");
        let c = Arc::new(Counters::default());
        let one = frame(1).encode_to_vec().len() as u64;
        let lim = SpoolConfig {
            memory_bytes: one * 2 + one / 2,
            ..limits(1 << 20, FsyncPolicy::Always)
        };
        let mut s = Spool::open(&dir, &lim, c.clone(), EventLog::disabled()).unwrap();
        s.push(1, 1000, &frame(1));
        // The directory disappears (a stand-in for any write error): frames stay in memory.
        fs::remove_dir_all(&dir).unwrap();
        let mut dropped = Vec::new();
        for seq in 2..=4 {
            dropped.extend(s.push(seq, seq as i64 * 1000, &frame(seq)));
        }
        assert_eq!(dropped.iter().map(|d| d.seq).collect::<Vec<_>>(), [2]);
        assert_eq!(c.frames_dropped_disk_full.load(Relaxed), 1);
        assert_eq!(c.spool_write_failures.load(Relaxed), 3);
        assert_eq!(c.spool_held_frames.load(Relaxed), 2);
        let seqs = |s: &Spool| s.pending().iter().map(|e| e.seq).collect::<Vec<_>>();
        assert_eq!(seqs(&s), [1, 3, 4], "seq 1 still indexed, 3 and 4 held");
        assert_eq!(s.load(3).unwrap().unwrap(), frame(3), "sent from memory");
        assert!(s.load(2).unwrap().is_none());
        // An acked held frame is simply forgotten.
        s.remove(3, false).unwrap();
        // Room again: the next push writes the held frame and the new one.
        fs::create_dir_all(&dir).unwrap();
        s.push(5, 5000, &frame(5));
        assert_eq!(c.spool_held_frames.load(Relaxed), 0);
        assert_eq!(names(&dir), [file_name(4), file_name(5)]);
        drop(s);
        let s = Spool::open(&dir, &lim, c.clone(), EventLog::disabled()).unwrap();
        assert_eq!(seqs(&s), [4, 5]);
        fs::remove_dir_all(dir).unwrap();
    }
}
