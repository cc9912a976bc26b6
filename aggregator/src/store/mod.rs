//! The store: de-duplicates verified snapshots, buffers them, commits them to Parquet
//! ([`files`], [`tables`], on the layout of [`schema`]) every `commit_interval`, or as soon as
//! `commit_rows` series rows or `commit_windows` windows are buffered (and then the rest of
//! such a backlog once the input pauses for [`BACKLOG_PAUSE`]), and only then answers each
//! submission with its
//! [`CommitStatus`]: `Committed` for a new window once the Parquet files holding its rows are
//! fsynced and renamed into place, `Duplicate` for a window already stored (by `(agent_id,
//! window_start)`), including a duplicate that arrives while the original is still buffered (its
//! answer waits for the same commit), and `SeqReused` for a new window whose seq that agent
//! already used for another window (nothing stored; README "Delivery guarantee"). What to tell the peer (acks) is the
//! caller's business; [`reader`] reads the store back.
//!
//! If a commit fails (e.g. a full disk), its frames are answered `Failed` and dropped from the
//! buffer; the agents resend them after their ack timeout. The failure is logged and counted.

pub mod cardinality;
pub mod config;
pub mod files;
pub mod index;
pub mod pivot;
pub mod reader;
pub mod schema;
pub mod tables;

use crate::counters::Counters;

use anyhow::Result;
use cardinality::Names;
use fleetset_proto::Snapshot;
use index::DedupIndex;
use schema::Table;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

/// A verified frame on its way into the store.
#[derive(Debug)]
pub struct Submission {
    /// The decoded, validated snapshot.
    pub snapshot: Snapshot,
    /// The verified frame header (encoding, payload SHA-256, …).
    pub header: fleetset_proto::pb::FrameHeader,
    /// Where the store sends the outcome (a dropped receiver is no error).
    pub done: oneshot::Sender<CommitStatus>,
}

/// The store's answer to a [`Submission`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitStatus {
    /// The window's rows are in committed (fsynced, renamed, directory fsynced) Parquet files.
    Committed,
    /// The window was already committed (same `(agent_id, window_start)`).
    Duplicate,
    /// The agent's seq is already stored or buffered for a different window start; nothing is
    /// stored (README "Delivery guarantee").
    SeqReused,
    /// The window would add an agent, metric name or label key beyond a fleet-wide cap
    /// (`store.max_agents`, `max_metric_names`, `max_label_keys`; the reason names it); nothing is
    /// stored.
    CardinalityLimit(String),
    /// The commit holding the window failed (the reason); nothing of it is visible in the store.
    Failed(String),
}

impl Submission {
    /// A submission of `snapshot` with `header`, and the receiver of its outcome.
    pub fn new(
        snapshot: Snapshot,
        header: fleetset_proto::pb::FrameHeader,
    ) -> (Submission, oneshot::Receiver<CommitStatus>) {
        let (done, rx) = oneshot::channel();
        (
            Submission {
                snapshot,
                header,
                done,
            },
            rx,
        )
    }
}

pub use config::StoreConfig;

/// Buffered, not yet committed state.
#[derive(Default)]
struct Buffer {
    subs: Vec<Submission>,
    keys: DedupIndex,
    /// Duplicates of buffered windows `(done, agent_id, seq, start)`: answered `Duplicate` once
    /// the original is committed.
    waiting: Vec<(oneshot::Sender<CommitStatus>, String, u64, i64)>,
    /// Barriers to answer after the next commit.
    barriers: Vec<tokio::sync::oneshot::Sender<()>>,
    rows: usize,
    /// Buffered agents the committed index does not know.
    new_agents: usize,
}

impl Buffer {
    /// Nothing is waiting for a commit.
    fn is_empty(&self) -> bool {
        self.subs.is_empty() && self.waiting.is_empty()
    }
}

/// Writes each date's windows as one batch; returns for each submission its batch's outcome
/// (`Err` with the reason when it failed).
fn commit_blocking(
    data_dir: &std::path::Path,
    subs: &[Submission],
    counters: &Counters,
) -> Vec<Result<(), String>> {
    let now = fleetset_core::time::now_ms();
    let mut by_date: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, s) in subs.iter().enumerate() {
        by_date
            .entry(schema::date_of(s.snapshot.start))
            .or_default()
            .push(i);
    }
    let mut ok: Vec<Result<(), String>> = vec![Ok(()); subs.len()];
    for (date, idx) in by_date {
        let group: Vec<&Submission> = idx.iter().map(|&i| &subs[i]).collect();
        let batch_id = schema::new_batch_id(now);
        let mut written: Vec<PathBuf> = Vec::new();
        let result = (|| -> Result<()> {
            let series = tables::series_batch(&group)?;
            let processes = tables::processes_batch(&group)?;
            let stats = tables::stats_batch(&group)?;
            let windows = tables::windows_batch(&group, now)?;
            // In schema::COMMIT_ORDER: the windows file, the commit record, last.
            let plan = [
                (Table::Series, Some(&series)),
                (Table::Processes, processes.as_ref()),
                (Table::Stats, Some(&stats)),
                (Table::Windows, Some(&windows)),
            ];
            for (table, batch) in plan {
                if let Some(batch) = batch {
                    written.push(files::write_parquet(
                        &schema::partition_dir(data_dir, table, &date),
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
        if let Err(e) = result {
            // Undo the renamed files so no half batch stays visible.
            for p in &written {
                let _ = std::fs::remove_file(p);
            }
            Counters::add(&counters.commit_failures, 1);
            let reason = format!("commit of {date} failed: {e:#}");
            error!(%date, frames = idx.len(), error = format!("{e:#}"), "commit failed; frames not acked, agents will resend");
            idx.iter().for_each(|&i| ok[i] = Err(reason.clone()));
        }
    }
    ok
}

/// What the store's channel carries.
#[derive(Debug)]
pub enum StoreMsg {
    /// A verified window to store.
    Window(Box<Submission>),
    /// Answered once every window sent before it is committed (or its commit failed, and the
    /// agent will resend it): the seam of `since` subscriptions.
    Barrier(tokio::sync::oneshot::Sender<()>),
}

/// Within `commit_interval` after a commit of a full batch (`commit_rows` or
/// `commit_windows`), what is buffered is committed once no frame has arrived for this long: the
/// tail of a backfill is not held to the next tick. A live fleet, which never fills a batch, is
/// not affected.
pub const BACKLOG_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

/// Runs the store until `shutdown`, then commits what is buffered and returns.
pub async fn run(
    cfg: StoreConfig,
    mut rx: mpsc::Receiver<StoreMsg>,
    mut index: DedupIndex,
    mut names: Names,
    counters: Arc<Counters>,
    shutdown: CancellationToken,
) {
    let caps = cfg.caps();
    let mut buf = Buffer::default();
    let mut tick = tokio::time::interval(cfg.commit_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // When the last full batch was committed: within a commit interval of it (a backlog is
    // arriving) the rest is committed once the input pauses, not at the next tick.
    let mut last_full: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            m = rx.recv() => match m {
                Some(m) => {
                    admit(&mut buf, &index, (&mut names, caps), &counters, m);
                    if buf.rows >= cfg.commit_rows || buf.subs.len() >= cfg.commit_windows {
                        commit(&cfg, &mut buf, &mut index, &counters).await;
                        last_full = Some(tokio::time::Instant::now());
                    }
                }
                None => break,
            },
            _ = tokio::time::sleep(BACKLOG_PAUSE), if !buf.is_empty()
                && last_full.is_some_and(|t| t.elapsed() < cfg.commit_interval) =>
            {
                commit(&cfg, &mut buf, &mut index, &counters).await;
            }
            _ = tick.tick() => commit(&cfg, &mut buf, &mut index, &counters).await,
        }
    }
    while let Ok(m) = rx.try_recv() {
        admit(&mut buf, &index, (&mut names, caps), &counters, m);
    }
    commit(&cfg, &mut buf, &mut index, &counters).await;
    info!(counters = %counters.summary(), "store stopped");
}

fn admit(
    buf: &mut Buffer,
    index: &DedupIndex,
    (names, caps): (&mut Names, cardinality::Caps),
    counters: &Counters,
    m: StoreMsg,
) {
    let s = match m {
        StoreMsg::Window(s) => *s,
        StoreMsg::Barrier(tx) => {
            buf.barriers.push(tx);
            return;
        }
    };
    let snap = &s.snapshot;
    let (agent, seq, start) = (snap.agent_id.as_str(), snap.seq, snap.start);
    if index.contains_start(agent, start) {
        Counters::add(&counters.frames_duplicate, 1);
        let _ = s.done.send(CommitStatus::Duplicate);
    } else if buf.keys.contains_start(agent, start) {
        buf.waiting.push((s.done, agent.to_string(), seq, start));
    } else if index.contains_seq(agent, seq) || buf.keys.contains_seq(agent, seq) {
        // Counted as a rejection (SEQ_REUSED) by whoever acks it.
        let _ = s.done.send(CommitStatus::SeqReused);
    } else {
        let new_agent = !index.contains_agent(agent) && !buf.keys.contains_agent(agent);
        let known = index.agents().saturating_add(buf.new_agents);
        if let Err(reason) = names.check(caps, snap, known, new_agent) {
            // Counted as a rejection (CARDINALITY_LIMIT) by whoever acks it.
            let _ = s.done.send(CommitStatus::CardinalityLimit(reason));
            return;
        }
        names.add(snap);
        buf.new_agents = buf.new_agents.saturating_add(usize::from(new_agent));
        buf.keys
            .insert(&s.snapshot.agent_id, s.snapshot.seq, s.snapshot.start);
        buf.rows += s.snapshot.data.values().map(Vec::len).sum::<usize>();
        buf.subs.push(s);
    }
}

/// Answers `since` barriers (a subscriber that left is no error).
fn answer(barriers: Vec<tokio::sync::oneshot::Sender<()>>) {
    for b in barriers {
        let _ = b.send(());
    }
}

async fn commit(
    cfg: &StoreConfig,
    buf: &mut Buffer,
    index: &mut DedupIndex,
    counters: &Arc<Counters>,
) {
    let taken = std::mem::take(buf);
    if taken.subs.is_empty() && taken.waiting.is_empty() {
        answer(taken.barriers);
        return;
    }
    let (subs, waiting, barriers) = (taken.subs, taken.waiting, taken.barriers);
    let data_dir = cfg.data_dir.clone();
    let c = counters.clone();
    let started = std::time::Instant::now();
    let joined = tokio::task::spawn_blocking(move || {
        let ok = commit_blocking(&data_dir, &subs, &c);
        (subs, ok)
    })
    .await;
    crate::telemetry::COMMIT_DURATION.record(started.elapsed().as_secs_f64() * 1000.0, &[]);
    let Ok((subs, ok)) = joined else {
        // The submissions' senders are dropped with the task: their receivers see no outcome.
        error!("commit task panicked; frames not acked");
        for (done, ..) in waiting {
            let _ = done.send(CommitStatus::Failed("commit task panicked".into()));
        }
        answer(barriers);
        return;
    };
    for (s, outcome) in subs.into_iter().zip(ok) {
        let status = match outcome {
            Ok(()) => {
                index.insert(&s.snapshot.agent_id, s.snapshot.seq, s.snapshot.start);
                Counters::add(&counters.frames_committed, 1);
                CommitStatus::Committed
            }
            Err(reason) => CommitStatus::Failed(reason),
        };
        let _ = s.done.send(status);
    }
    for (done, agent_id, _seq, start) in waiting {
        // Only a duplicate of a window that is now committed is a duplicate; if the original's
        // commit failed, so does the duplicate (and it is resent).
        let status = if index.contains_start(&agent_id, start) {
            Counters::add(&counters.frames_duplicate, 1);
            CommitStatus::Duplicate
        } else {
            CommitStatus::Failed("the commit of the original failed".into())
        };
        let _ = done.send(status);
    }
    answer(barriers);
}

#[cfg(test)]
pub(crate) mod tests;
