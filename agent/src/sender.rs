//! The send loop: frames waiting in the durable spool ([`crate::spool`]) are sent in seq order,
//! at most `max_in_flight` of them unacked at once, one ack per frame; an acked frame is deleted
//! from the spool. Only metadata is kept in memory; a frame's bytes are read from the spool when
//! it is (re)sent.
//!
//! A link is recreated (and every unacked frame resent, in `seq` order) when connecting fails,
//! a send fails, the stream closes, or frames are in flight and no ack arrived for
//! `ack_timeout` — the ZeroMQ guide's "Lazy Pirate" client-side reliability, needed because
//! zeromq 0.7's DEALER neither reconnects nor heartbeats. Reconnects back off exponentially
//! (100 ms to 30 s) with ±25 % jitter. Frames are sent at least once; the aggregator
//! de-duplicates by `(agent_id, seq)` and `(agent_id, window_start)`.
//!
//! The loop ends when the frame channel closes and every frame is acked, or `drain_timeout`
//! after the channel closed, whichever is first; unacked frames stay in the spool and are sent
//! by the next start.

use crate::config::TransportArg;
use crate::counters::Counters;
use crate::events::{DropReason, Event, EventLog, LinkWhat};
use crate::spool::{Spool, Spooled};
use crate::transport::{Connect, Dial, FrameLink, LinkError};
use fleetset_proto::pb::{self, AckStatus};
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// The spool, shared by the framer (which writes) and the send loop (which reads and deletes).
pub type SharedSpool = Arc<Mutex<Spool>>;

/// Locks the spool; a panic elsewhere while holding it leaves the index usable.
pub fn lock(spool: &SharedSpool) -> MutexGuard<'_, Spool> {
    spool
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Settings of the send loop.
#[derive(Debug, Clone)]
pub struct SenderConfig {
    /// Transport.
    pub transport: TransportArg,
    /// Aggregator endpoint.
    pub endpoint: String,
    /// This agent's id (acks for other ids are ignored).
    pub agent_id: String,
    /// Frames sent and unacked, at most.
    pub max_in_flight: usize,
    /// No ack for this long with frames in flight: recreate the link.
    pub ack_timeout: Duration,
    /// After the frame channel closes, wait at most this long for the remaining acks
    /// (`None`: until every spooled frame is acked, as `replay` does).
    pub drain_timeout: Option<Duration>,
}

/// Reconnect delays: 100 ms doubling to 30 s, each with ±25% jitter so a fleet that lost its
/// aggregator does not reconnect in lockstep.
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(30);

    fn delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        base.mul_f64(rand::random_range(0.75..1.25))
    }

    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

enum Wake {
    Frame(Option<Spooled>),
    Ack(Result<pb::Ack, LinkError>),
    Tick,
}

async fn next_ack<L: FrameLink>(link: &mut Option<L>) -> Result<pb::Ack, LinkError> {
    match link {
        Some(l) => l.recv().await,
        None => std::future::pending().await,
    }
}

/// Runs the send loop until `frames` closes and drains (see the module docs). Starts with
/// `already_spooled` (the spool's content when it was opened, listed before any new frame was
/// added, so no frame is queued twice), then takes new frames from `frames`. What it sends and
/// what is acked goes to `events`.
pub async fn run(
    cfg: SenderConfig,
    spool: SharedSpool,
    already_spooled: Vec<Spooled>,
    frames: mpsc::UnboundedReceiver<Spooled>,
    counters: Arc<Counters>,
    events: Arc<EventLog>,
) {
    let dial = Dial {
        transport: cfg.transport,
        endpoint: cfg.endpoint.clone(),
        timeout: cfg.ack_timeout.min(Duration::from_secs(10)),
        agent_id: cfg.agent_id.clone(),
    };
    run_over(dial, cfg, spool, already_spooled, frames, counters, events).await
}

/// The send loop over links made by `connector` ([`run`] with [`Dial`]; tests use a fake).
pub(crate) async fn run_over<C: Connect>(
    mut connector: C,
    cfg: SenderConfig,
    spool: SharedSpool,
    already_spooled: Vec<Spooled>,
    mut frames: mpsc::UnboundedReceiver<Spooled>,
    counters: Arc<Counters>,
    events: Arc<EventLog>,
) {
    let mut p = Pending {
        // Found in the spool at start: an earlier run may have sent them.
        resends: already_spooled.iter().map(|f| f.seq).collect(),
        queue: already_spooled.into(),
        in_flight: BTreeMap::new(),
    };
    let mut link: Option<C::Link> = None;
    let mut backoff = Backoff {
        next: Backoff::FIRST,
    };
    let mut connect_at = Instant::now();
    let mut last_progress = Instant::now();
    let mut draining = false;
    let mut drain_deadline: Option<Instant> = None;
    loop {
        let idle = p.queue.is_empty() && p.in_flight.is_empty();
        if draining && idle {
            break;
        }
        if drain_deadline.is_some_and(|d| Instant::now() >= d) {
            let left = (p.queue.len() + p.in_flight.len()) as u64;
            Counters::add(&counters.frames_unacked_at_exit, left);
            warn!(
                unacked = left,
                "stopping with unacked frames; they stay in the spool for the next start"
            );
            break;
        }

        if link.is_none() && !idle && Instant::now() >= connect_at {
            match connector.connect().await {
                Ok(l) => {
                    debug!(endpoint = %cfg.endpoint, "connected");
                    link = Some(l);
                    backoff.reset();
                    last_progress = Instant::now();
                    events.emit(Event::Link {
                        what: LinkWhat::Connected,
                        reason: String::new(),
                        requeued: 0,
                    });
                }
                Err(e) => {
                    Counters::add(&counters.reconnects, 1);
                    let delay = backoff.delay();
                    warn!(endpoint = %cfg.endpoint, error = %e, retry_in_ms = delay.as_millis() as u64, "aggregator unreachable");
                    connect_at = Instant::now() + delay;
                    events.emit(Event::Link {
                        what: LinkWhat::ConnectFailed,
                        reason: e.to_string(),
                        requeued: 0,
                    });
                }
            }
        }

        if let Some(l) = link.as_mut() {
            while p.in_flight.len() < cfg.max_in_flight {
                let Some(f) = p.queue.pop_front() else { break };
                let frame = match lock(&spool).load(f.seq) {
                    Ok(Some(frame)) => frame,
                    Ok(None) => continue, // dropped from a full spool meanwhile
                    Err(e) => {
                        warn!(
                            seq = f.seq,
                            error = format!("{e:#}"),
                            "spooled frame unreadable; skipped"
                        );
                        events.emit(Event::Dropped {
                            seq: f.seq,
                            window_start: f.window_start,
                            reason: DropReason::Unreadable,
                        });
                        continue;
                    }
                };
                if p.in_flight.is_empty() {
                    last_progress = Instant::now();
                }
                match l.send(&frame).await {
                    Ok(()) => {
                        Counters::add(&counters.frames_sent, 1);
                        Counters::add(&counters.bytes_sent, frame.payload.len() as u64);
                        events.emit(Event::Sent {
                            seq: f.seq,
                            window_start: f.window_start,
                            bytes: frame.payload.len() as u64,
                            resend: p.resends.contains(&f.seq),
                        });
                        p.in_flight.insert(f.seq, f);
                    }
                    Err(e) => {
                        warn!(error = %e, seq = f.seq, "send failed; recreating the link");
                        p.queue.push_front(f);
                        drop_link(
                            &mut link,
                            &mut p,
                            &counters,
                            &events,
                            LinkWhat::SendFailed,
                            e.to_string(),
                        );
                        break;
                    }
                }
            }
        }

        let wake = if link.is_none() {
            connect_at.max(Instant::now() + Duration::from_millis(10))
        } else if p.in_flight.is_empty() {
            Instant::now() + Duration::from_secs(3600)
        } else {
            last_progress + cfg.ack_timeout
        };
        let wake = drain_deadline.map_or(wake, |d| wake.min(d));

        let event = tokio::select! {
            f = frames.recv(), if !draining => Wake::Frame(f),
            a = next_ack(&mut link) => Wake::Ack(a),
            _ = tokio::time::sleep_until(wake) => Wake::Tick,
        };
        match event {
            Wake::Frame(Some(f)) => p.queue.push_back(f),
            Wake::Frame(None) => {
                draining = true;
                drain_deadline = cfg.drain_timeout.map(|d| Instant::now() + d);
            }
            Wake::Ack(Ok(ack)) => {
                if ack.agent_id != cfg.agent_id {
                    warn!(ack_agent = %ack.agent_id, "ack for another agent ignored");
                    continue;
                }
                let Some(f) = p.in_flight.remove(&ack.seq) else {
                    debug!(
                        seq = ack.seq,
                        "ack for a frame not in flight (a resend's second ack)"
                    );
                    continue;
                };
                last_progress = Instant::now();
                p.resends.remove(&f.seq);
                events.acked(f.seq, f.window_start, &ack);
                let status = AckStatus::try_from(ack.status).unwrap_or(AckStatus::Unspecified);
                let rejected = !matches!(status, AckStatus::Committed | AckStatus::Duplicate);
                if let Err(e) = lock(&spool).remove(f.seq, rejected) {
                    warn!(
                        seq = f.seq,
                        error = format!("{e:#}"),
                        "could not delete an acked frame from the spool"
                    );
                }
                if rejected {
                    Counters::add(&counters.frames_rejected, 1);
                    warn!(seq = f.seq, window_start = f.window_start, reason = ?ack.reason(), detail = %ack.detail, "frame rejected by the aggregator; kept in spool/rejected/");
                    events.emit(Event::Dropped {
                        seq: f.seq,
                        window_start: f.window_start,
                        reason: DropReason::Rejected,
                    });
                    continue;
                }
                let c = if status == AckStatus::Committed {
                    &counters.frames_committed
                } else {
                    &counters.frames_duplicate
                };
                Counters::add(c, 1);
                info!(seq = f.seq, window_start = f.window_start, status = ?status, "frame acked");
            }
            Wake::Ack(Err(e)) => {
                warn!(error = %e, "link to the aggregator failed; recreating it");
                drop_link(
                    &mut link,
                    &mut p,
                    &counters,
                    &events,
                    LinkWhat::RecvFailed,
                    e.to_string(),
                );
                connect_at = Instant::now() + backoff.delay();
            }
            Wake::Tick => {
                if link.is_some()
                    && !p.in_flight.is_empty()
                    && last_progress.elapsed() >= cfg.ack_timeout
                {
                    warn!(
                        in_flight = p.in_flight.len(),
                        timeout_ms = cfg.ack_timeout.as_millis() as u64,
                        "no ack in time; recreating the link (Lazy Pirate)"
                    );
                    let reason = format!("no ack for {:?}", cfg.ack_timeout);
                    drop_link(
                        &mut link,
                        &mut p,
                        &counters,
                        &events,
                        LinkWhat::AckTimeout,
                        reason,
                    );
                }
            }
        }
    }
}

/// Frames waiting to be sent and frames sent but not acked.
struct Pending {
    /// To send, in order (requeued frames first, in seq order).
    queue: VecDeque<Spooled>,
    /// Sent, not yet acked, by seq.
    in_flight: BTreeMap<u64, Spooled>,
    /// Seqs that may have gone out before (spooled at start, or requeued): their next send is
    /// a resend.
    resends: HashSet<u64>,
}

/// Drops the link; unacked frames go back to the queue front in seq order, to be resent ahead
/// of newer frames on the next link. Counts the reconnect and records a `link` event.
fn drop_link<L>(
    link: &mut Option<L>,
    p: &mut Pending,
    counters: &Counters,
    events: &EventLog,
    what: LinkWhat,
    reason: String,
) {
    *link = None;
    Counters::add(&counters.reconnects, 1);
    let unacked: Vec<Spooled> = std::mem::take(&mut p.in_flight).into_values().collect();
    Counters::add(&counters.frames_resent, unacked.len() as u64);
    events.emit(Event::Link {
        what,
        reason,
        requeued: unacked.len() as u64,
    });
    for f in unacked.into_iter().rev() {
        p.resends.insert(f.seq);
        p.queue.push_front(f);
    }
}
