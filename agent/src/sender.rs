//! The send loop: a bounded queue of sealed frames, at most `max_in_flight` of them sent and
//! unacked, one ack per frame, and link recreation with exponential backoff and jitter.
//!
//! A link is recreated (and every unacked frame resent, in `seq` order) when connecting fails,
//! a send fails, the stream closes, or frames are in flight and no ack arrived for
//! `ack_timeout` — the ZeroMQ guide's "Lazy Pirate" client-side reliability, needed because
//! zeromq 0.7's DEALER neither reconnects nor heartbeats. Frames are sent at least once; the
//! aggregator de-duplicates by `(agent_id, seq)`.
//!
//! The loop ends when the frame channel closes and every frame is acked, or `drain_timeout`
//! after the channel closed, whichever is first (unacked frames are then counted and logged).

use crate::config::TransportArg;
use crate::counters::Counters;
use crate::transport::{Link, LinkError};
use fleetset_proto::pb::{self, AckStatus};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// A sealed frame waiting to be sent or acked.
#[derive(Debug, Clone)]
pub struct QueuedFrame {
    /// The frame's seq (also in its header).
    pub seq: u64,
    /// The frame's window start, Unix ms (for logs).
    pub window_start: i64,
    /// The frame.
    pub frame: pb::Frame,
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
    /// Frames queued (not yet sent), at most; the oldest is dropped beyond it.
    pub max_queued: usize,
    /// No ack for this long with frames in flight: recreate the link.
    pub ack_timeout: Duration,
    /// After the frame channel closes, wait at most this long for the remaining acks.
    pub drain_timeout: Duration,
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

enum Event {
    Frame(Option<QueuedFrame>),
    Ack(Result<pb::Ack, LinkError>),
    Tick,
}

async fn next_ack(link: &mut Option<Link>) -> Result<pb::Ack, LinkError> {
    match link {
        Some(l) => l.recv().await,
        None => std::future::pending().await,
    }
}

/// Runs the send loop until `frames` closes and drains (see the module docs).
pub async fn run(
    cfg: SenderConfig,
    mut frames: mpsc::UnboundedReceiver<QueuedFrame>,
    counters: Arc<Counters>,
) {
    let mut queue: VecDeque<QueuedFrame> = VecDeque::new();
    let mut in_flight: BTreeMap<u64, QueuedFrame> = BTreeMap::new();
    let mut link: Option<Link> = None;
    let mut backoff = Backoff {
        next: Backoff::FIRST,
    };
    let mut connect_at = Instant::now();
    let mut last_progress = Instant::now();
    let mut drain_deadline: Option<Instant> = None;

    loop {
        let idle = queue.is_empty() && in_flight.is_empty();
        if let Some(deadline) = drain_deadline {
            if idle {
                break;
            }
            if Instant::now() >= deadline {
                let lost = (queue.len() + in_flight.len()) as u64;
                Counters::add(&counters.frames_unacked_at_exit, lost);
                let seqs: Vec<u64> = in_flight
                    .keys()
                    .chain(queue.iter().map(|f| &f.seq))
                    .copied()
                    .collect();
                warn!(
                    unacked = lost,
                    ?seqs,
                    "stopping with frames the aggregator has not acked"
                );
                break;
            }
        }

        if link.is_none() && !idle && Instant::now() >= connect_at {
            let timeout = cfg.ack_timeout.min(Duration::from_secs(10));
            match Link::connect(cfg.transport, &cfg.endpoint, timeout, &cfg.agent_id).await {
                Ok(l) => {
                    debug!(endpoint = %cfg.endpoint, "connected");
                    link = Some(l);
                    backoff.reset();
                    last_progress = Instant::now();
                }
                Err(e) => {
                    Counters::add(&counters.reconnects, 1);
                    let delay = backoff.delay();
                    warn!(endpoint = %cfg.endpoint, error = %e, retry_in_ms = delay.as_millis() as u64, "aggregator unreachable");
                    connect_at = Instant::now() + delay;
                }
            }
        }

        if let Some(l) = link.as_mut() {
            while in_flight.len() < cfg.max_in_flight {
                let Some(f) = queue.pop_front() else { break };
                if in_flight.is_empty() {
                    last_progress = Instant::now();
                }
                match l.send(&f.frame).await {
                    Ok(()) => {
                        Counters::add(&counters.frames_sent, 1);
                        in_flight.insert(f.seq, f);
                    }
                    Err(e) => {
                        warn!(error = %e, seq = f.seq, "send failed; recreating the link");
                        queue.push_front(f);
                        drop_link(&mut link, &mut in_flight, &mut queue, &counters);
                        break;
                    }
                }
            }
        }

        let wake = if link.is_none() {
            connect_at.max(Instant::now() + Duration::from_millis(10))
        } else if in_flight.is_empty() {
            Instant::now() + Duration::from_secs(3600)
        } else {
            last_progress + cfg.ack_timeout
        };
        let wake = drain_deadline.map_or(wake, |d| wake.min(d));

        let event = tokio::select! {
            f = frames.recv(), if drain_deadline.is_none() => Event::Frame(f),
            a = next_ack(&mut link) => Event::Ack(a),
            _ = tokio::time::sleep_until(wake) => Event::Tick,
        };
        match event {
            Event::Frame(Some(f)) => {
                queue.push_back(f);
                while queue.len() > cfg.max_queued {
                    if let Some(old) = queue.pop_front() {
                        Counters::add(&counters.frames_dropped_queue_full, 1);
                        warn!(
                            seq = old.seq,
                            window_start = old.window_start,
                            "send queue full: dropped the oldest frame"
                        );
                    }
                }
            }
            Event::Frame(None) => drain_deadline = Some(Instant::now() + cfg.drain_timeout),
            Event::Ack(Ok(ack)) => {
                if ack.agent_id != cfg.agent_id {
                    warn!(ack_agent = %ack.agent_id, "ack for another agent ignored");
                    continue;
                }
                let Some(f) = in_flight.remove(&ack.seq) else {
                    debug!(
                        seq = ack.seq,
                        "ack for a frame not in flight (a resend's second ack)"
                    );
                    continue;
                };
                last_progress = Instant::now();
                let status = AckStatus::try_from(ack.status).unwrap_or(AckStatus::Unspecified);
                match status {
                    AckStatus::Committed => Counters::add(&counters.frames_committed, 1),
                    AckStatus::Duplicate => Counters::add(&counters.frames_duplicate, 1),
                    _ => {
                        Counters::add(&counters.frames_rejected, 1);
                        warn!(seq = f.seq, window_start = f.window_start, reason = ?ack.reason(), detail = %ack.detail, "frame rejected by the aggregator");
                        continue;
                    }
                }
                info!(seq = f.seq, window_start = f.window_start, status = ?status, "frame acked");
            }
            Event::Ack(Err(e)) => {
                warn!(error = %e, "link to the aggregator failed; recreating it");
                drop_link(&mut link, &mut in_flight, &mut queue, &counters);
                connect_at = Instant::now() + backoff.delay();
            }
            Event::Tick => {
                if link.is_some()
                    && !in_flight.is_empty()
                    && last_progress.elapsed() >= cfg.ack_timeout
                {
                    warn!(
                        in_flight = in_flight.len(),
                        timeout_ms = cfg.ack_timeout.as_millis() as u64,
                        "no ack in time; recreating the link (Lazy Pirate)"
                    );
                    drop_link(&mut link, &mut in_flight, &mut queue, &counters);
                }
            }
        }
    }
}

/// Drops the link; unacked frames go back to the queue front in seq order, to be resent ahead
/// of newer frames on the next link.
fn drop_link(
    link: &mut Option<Link>,
    in_flight: &mut BTreeMap<u64, QueuedFrame>,
    queue: &mut VecDeque<QueuedFrame>,
    counters: &Counters,
) {
    *link = None;
    Counters::add(&counters.reconnects, 1);
    let unacked: Vec<QueuedFrame> = std::mem::take(in_flight).into_values().collect();
    Counters::add(&counters.frames_resent, unacked.len() as u64);
    for f in unacked.into_iter().rev() {
        queue.push_front(f);
    }
}
