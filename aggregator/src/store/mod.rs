//! The store: de-duplicates verified snapshots, buffers them, commits them to Parquet
//! ([`files`], [`tables`]) every `commit_interval` or `commit_rows` series rows, and only then
//! sends their acks — COMMITTED for new windows, DUPLICATE for windows already stored (by
//! `(agent_id, seq)` or `(agent_id, window_start)`), including duplicates that arrive while the
//! original is still buffered (their ack waits for the same commit).
//!
//! A newly accepted window is also published to live consumers ([`crate::live`]) at once.
//!
//! If a commit fails (e.g. a full disk), its frames are not acked and are dropped from the
//! buffer; the agents resend them after their ack timeout. The failure is logged and counted.

pub mod files;
pub mod tables;

use crate::counters::Counters;
use crate::ingest::{ack, AckTo};
use crate::live::{Hub, LiveWindow};
use anyhow::Result;
use fleetset_proto::pb::AckStatus;
use fleetset_proto::Snapshot;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

/// A verified frame on its way into the store.
#[derive(Debug)]
pub struct Submission {
    /// The decoded, validated snapshot.
    pub snapshot: Snapshot,
    /// The verified frame header (encoding, payload SHA-256, …).
    pub header: fleetset_proto::pb::FrameHeader,
    /// The payload as the agent sent it (handed to live consumers, then dropped).
    pub payload: bytes::Bytes,
    /// When the frame was received, Unix µs.
    pub received_at_us: i64,
    /// Where the ack goes.
    pub reply: AckTo,
}

/// Store settings.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Data directory.
    pub data_dir: PathBuf,
    /// Commit at least this often when rows are buffered.
    pub commit_interval: Duration,
    /// Commit when this many series rows are buffered.
    pub commit_rows: usize,
}

type Index = HashMap<String, (HashSet<u64>, HashSet<i64>)>;

/// Whether `(agent_id, seq)` or `(agent_id, window start)` is in `index`.
fn is_known(index: &Index, agent_id: &str, seq: u64, start: i64) -> bool {
    index
        .get(agent_id)
        .is_some_and(|(seqs, starts)| seqs.contains(&seq) || starts.contains(&start))
}

fn remember(index: &mut Index, s: &Snapshot) {
    let e = index.entry(s.agent_id.clone()).or_default();
    e.0.insert(s.seq);
    e.1.insert(s.start);
}

/// Buffered, not yet committed state.
#[derive(Default)]
struct Buffer {
    subs: Vec<Submission>,
    keys: Index,
    /// Duplicates of buffered windows `(reply, agent_id, seq, start)`: acked DUPLICATE once
    /// the original is committed.
    waiting: Vec<(AckTo, String, u64, i64)>,
    rows: usize,
}

/// Writes each date's windows as one batch; returns for each submission whether its batch
/// committed.
fn commit_blocking(
    data_dir: &std::path::Path,
    subs: &[Submission],
    counters: &Counters,
) -> Vec<bool> {
    let now = fleetset_agent::run::now_ms();
    let mut by_date: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, s) in subs.iter().enumerate() {
        by_date
            .entry(files::date_of(s.snapshot.start))
            .or_default()
            .push(i);
    }
    let mut ok = vec![false; subs.len()];
    for (date, idx) in by_date {
        let group: Vec<&Submission> = idx.iter().map(|&i| &subs[i]).collect();
        let batch_id = files::new_batch_id(now);
        let mut written: Vec<PathBuf> = Vec::new();
        let result = (|| -> Result<()> {
            let series = tables::series_batch(&group)?;
            let processes = tables::processes_batch(&group)?;
            let windows = tables::windows_batch(&group, now)?;
            let plan = [
                ("series", Some(&series)),
                ("processes", processes.as_ref()),
                ("windows", Some(&windows)),
            ];
            for (table, batch) in plan {
                if let Some(batch) = batch {
                    written.push(files::write_parquet(
                        &files::partition_dir(data_dir, table, &date),
                        &batch_id,
                        batch,
                    )?);
                }
            }
            Counters::add(&counters.series_rows, series.num_rows() as u64);
            Counters::add(
                &counters.process_rows,
                processes.map_or(0, |p| p.num_rows()) as u64,
            );
            Counters::add(&counters.window_rows, windows.num_rows() as u64);
            Counters::add(&counters.files_committed, written.len() as u64);
            Ok(())
        })();
        match result {
            Ok(()) => idx.iter().for_each(|&i| ok[i] = true),
            Err(e) => {
                // Undo the renamed files so no half batch stays visible.
                for p in &written {
                    let _ = std::fs::remove_file(p);
                }
                Counters::add(&counters.commit_failures, 1);
                error!(%date, frames = idx.len(), error = format!("{e:#}"), "commit failed; frames not acked, agents will resend");
            }
        }
    }
    ok
}

/// Runs the store until `shutdown`, then commits what is buffered and returns.
///
/// `commits` is bumped after every commit attempt (every `commit_interval`, even with nothing to
/// write): a window admitted before a value `g` was read is in Parquet once `commits` reaches
/// `g + 2` (or its commit failed and the agent resends it).
pub async fn run(
    cfg: StoreConfig,
    mut rx: mpsc::Receiver<Submission>,
    mut index: Index,
    hub: Hub,
    commits: tokio::sync::watch::Sender<u64>,
    counters: Arc<Counters>,
    shutdown: CancellationToken,
) {
    let mut buf = Buffer::default();
    let mut tick = tokio::time::interval(cfg.commit_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            s = rx.recv() => match s {
                Some(s) => {
                    admit(&mut buf, &index, &hub, &counters, s);
                    if buf.rows >= cfg.commit_rows {
                        commit(&cfg, &mut buf, &mut index, &counters).await;
                    }
                }
                None => break,
            },
            _ = tick.tick() => {
                commit(&cfg, &mut buf, &mut index, &counters).await;
                commits.send_modify(|g| *g += 1);
            }
        }
    }
    while let Ok(s) = rx.try_recv() {
        admit(&mut buf, &index, &hub, &counters, s);
    }
    commit(&cfg, &mut buf, &mut index, &counters).await;
    info!(counters = %counters.summary(), "store stopped");
}

fn admit(buf: &mut Buffer, index: &Index, hub: &Hub, counters: &Counters, mut s: Submission) {
    let snap = &s.snapshot;
    if is_known(index, &snap.agent_id, snap.seq, snap.start) {
        Counters::add(&counters.frames_duplicate, 1);
        if !s
            .reply
            .send(ack(&snap.agent_id, snap.seq, AckStatus::Duplicate))
        {
            Counters::add(&counters.acks_undeliverable, 1);
        }
    } else if is_known(&buf.keys, &snap.agent_id, snap.seq, snap.start) {
        buf.waiting
            .push((s.reply, snap.agent_id.clone(), snap.seq, snap.start));
    } else {
        remember(&mut buf.keys, &s.snapshot);
        buf.rows += s.snapshot.data.values().map(Vec::len).sum::<usize>();
        // Live consumers get the window now, not after the commit; the payload is not needed
        // for the commit, so it moves to them.
        let payload = std::mem::take(&mut s.payload);
        if hub.has_subscribers() {
            hub.publish(LiveWindow {
                snapshot: s.snapshot.clone(),
                header: s.header.clone(),
                payload,
                received_at_us: s.received_at_us,
            });
        }
        buf.subs.push(s);
    }
}

async fn commit(cfg: &StoreConfig, buf: &mut Buffer, index: &mut Index, counters: &Arc<Counters>) {
    let taken = std::mem::take(buf);
    if taken.subs.is_empty() && taken.waiting.is_empty() {
        return;
    }
    let (subs, waiting) = (taken.subs, taken.waiting);
    let data_dir = cfg.data_dir.clone();
    let c = counters.clone();
    let joined = tokio::task::spawn_blocking(move || {
        let ok = commit_blocking(&data_dir, &subs, &c);
        (subs, ok)
    })
    .await;
    let Ok((subs, ok)) = joined else {
        error!("commit task panicked; frames not acked");
        return;
    };
    for (s, committed) in subs.into_iter().zip(ok) {
        if committed {
            remember(index, &s.snapshot);
            Counters::add(&counters.frames_committed, 1);
            if !s.reply.send(ack(
                &s.snapshot.agent_id,
                s.snapshot.seq,
                AckStatus::Committed,
            )) {
                Counters::add(&counters.acks_undeliverable, 1);
            }
        }
    }
    for (reply, agent_id, seq, start) in waiting {
        // Only a duplicate of a window that is now committed may be acked; if the original's
        // commit failed, the duplicate gets no ack either and is resent.
        if is_known(index, &agent_id, seq, start) {
            Counters::add(&counters.frames_duplicate, 1);
            if !reply.send(ack(&agent_id, seq, AckStatus::Duplicate)) {
                Counters::add(&counters.acks_undeliverable, 1);
            }
        }
    }
}
