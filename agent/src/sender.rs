//! The send loop: frames waiting in the durable spool ([`crate::spool`]) are sent in seq order,
//! at most `max_in_flight` of them unacked at once, one ack per frame; an acked frame is deleted
//! from the spool. Only metadata is kept in memory; a frame's bytes are read from the spool when
//! it is (re)sent.
//!
//! A link is recreated (and every unacked frame resent, in `seq` order) when connecting fails,
//! a send fails, the stream closes, or some frame has waited `ack_timeout` since it was sent
//! without its ack (per frame: acks of newer frames do not extend an older frame's wait, so a
//! frame whose ack never comes is resent even while others are acked) — the ZeroMQ guide's
//! "Lazy Pirate" client-side reliability, kept on top of libzmq's own reconnects and heartbeats
//! because an aggregator may accept a connection and never ack (or drop acks under push-back). Reconnects back off exponentially
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
    /// TLS of the gRPC and OTLP links (`[transport.tls]`).
    pub tls: crate::config::ClientTlsConfig,
    /// The ZeroMQ link's limits (`[transport.zmq]`).
    pub zmq: crate::transport::zmq_config::ZmqConfig,
    /// CURVE of the ZeroMQ link (`[transport.curve]`).
    pub curve: crate::transport::zmq_config::CurveConfig,
    /// Frames sent and unacked, at most.
    pub max_in_flight: usize,
    /// A frame unacked this long after it was sent: recreate the link and resend.
    pub ack_timeout: Duration,
    /// After the frame channel closes, wait at most this long for the remaining acks
    /// (`None`: until every spooled frame is acked, as `replay` does).
    pub drain_timeout: Option<Duration>,
    /// The key acks must be signed with (`transport.hmac_key_hex`; `None` for the OTLP
    /// transport, whose acks are made here from the Export responses): an ack for an in-flight
    /// frame that does not verify with it and the frame's `payload_sha256`
    /// ([`fleetset_proto::ack_verifies`]) is ignored and counted in `acks_unverified`; the
    /// frame stays spooled and is resent after `ack_timeout`.
    pub ack_key: Option<Vec<u8>>,
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
        tls: cfg.tls.clone(),
        zmq: cfg.zmq.clone(),
        curve: cfg.curve.clone(),
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
                        let sha = frame
                            .header
                            .as_ref()
                            .map(|h| h.payload_sha256.clone())
                            .unwrap_or_default();
                        p.in_flight.insert(f.seq, (f, Instant::now(), sha));
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
        } else {
            p.oldest_send()
                .map_or(Instant::now() + Duration::from_secs(3600), |t| {
                    t + cfg.ack_timeout
                })
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
                let Some((_, _, sha)) = p.in_flight.get(&ack.seq) else {
                    debug!(
                        seq = ack.seq,
                        "ack for a frame not in flight (a resend's second ack)"
                    );
                    continue;
                };
                if let Some(key) = &cfg.ack_key {
                    if !fleetset_proto::ack_verifies(key, &ack, sha) {
                        Counters::add(&counters.acks_unverified, 1);
                        warn!(
                            seq = ack.seq,
                            signed = !ack.hmac_sha256.is_empty(),
                            "ack does not verify with this agent's key and the frame's sha256; ignored, the frame stays spooled and is resent"
                        );
                        continue;
                    }
                }
                let Some((f, _, _)) = p.in_flight.remove(&ack.seq) else {
                    continue;
                };
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
                let overdue = p
                    .in_flight
                    .iter()
                    .find(|(_, (_, sent, _))| sent.elapsed() >= cfg.ack_timeout)
                    .map(|(seq, _)| *seq);
                if let (true, Some(seq)) = (link.is_some(), overdue) {
                    warn!(
                        seq,
                        in_flight = p.in_flight.len(),
                        timeout_ms = cfg.ack_timeout.as_millis() as u64,
                        "a frame got no ack in time; recreating the link (Lazy Pirate)"
                    );
                    let reason = format!("no ack for seq {seq} within {:?}", cfg.ack_timeout);
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
    /// Sent, not yet acked, by seq, with when it was sent (its ack timeout runs from there)
    /// and the header's `payload_sha256` (which a signed ack covers).
    in_flight: BTreeMap<u64, (Spooled, Instant, Vec<u8>)>,
    /// Seqs that may have gone out before (spooled at start, or requeued): their next send is
    /// a resend.
    resends: HashSet<u64>,
}

impl Pending {
    /// When the longest-waiting in-flight frame was sent, if any is in flight.
    fn oldest_send(&self) -> Option<Instant> {
        self.in_flight.values().map(|(_, sent, _)| *sent).min()
    }
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
    let unacked: Vec<Spooled> = std::mem::take(&mut p.in_flight)
        .into_values()
        .map(|(f, _, _)| f)
        .collect();
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

#[cfg(test)]
mod tests {
    //! The send loop over an in-memory link, on tokio's paused clock: timeouts and backoffs
    //! pass instantly and deterministically.
    use super::*;
    use crate::spool::{FsyncPolicy, Spool};
    use fleetset_proto::{seal, SealOptions, Snapshot};
    use std::future::Future;
    use std::path::PathBuf;
    use std::sync::atomic::Ordering::Relaxed;

    /// What the fake aggregator does with a frame.
    #[derive(Debug, Clone, Copy)]
    enum Reply {
        Ack(AckStatus),
        /// Answers with an unsigned ack.
        Unsigned(AckStatus),
        /// Answers with an ack signed with another key.
        WrongMac(AckStatus),
        /// Never answers.
        Silent,
        /// The link fails (the next receive errs).
        Fail,
    }

    type Policy = Box<dyn FnMut(usize, u64) -> Reply + Send>;

    /// The agent's HMAC key: the fake aggregator signs [`Reply::Ack`]s with it.
    const KEY: &[u8] = b"agent-key";

    /// The fake network: connect attempts, frames sent per link, the aggregator's behaviour.
    struct Net {
        fail_connects: usize,
        attempts: Vec<Instant>,
        links: usize,
        /// (link number from 0, seq) in send order.
        sent: Vec<(usize, u64)>,
        policy: Policy,
    }

    type SharedNet = Arc<Mutex<Net>>;

    struct FakeConnector(SharedNet);

    struct FakeLink {
        id: usize,
        net: SharedNet,
        replies: VecDeque<Result<pb::Ack, LinkError>>,
    }

    impl Connect for FakeConnector {
        type Link = FakeLink;
        fn connect(&mut self) -> impl Future<Output = Result<FakeLink, LinkError>> + Send {
            let net = self.0.clone();
            async move {
                let mut n = net.lock().unwrap();
                n.attempts.push(Instant::now());
                if n.fail_connects > 0 {
                    n.fail_connects -= 1;
                    return Err(LinkError::Grpc("connection refused".into()));
                }
                n.links += 1;
                Ok(FakeLink {
                    id: n.links - 1,
                    net: net.clone(),
                    replies: VecDeque::new(),
                })
            }
        }
    }

    impl FrameLink for FakeLink {
        fn send(
            &mut self,
            frame: &pb::Frame,
        ) -> impl Future<Output = Result<(), LinkError>> + Send {
            let seq = frame.header.as_ref().map_or(0, |h| h.seq);
            let mut n = self.net.lock().unwrap();
            n.sent.push((self.id, seq));
            let sha = frame
                .header
                .as_ref()
                .map(|h| h.payload_sha256.clone())
                .unwrap_or_default();
            let ack = |status: AckStatus, key: Option<&[u8]>| {
                let mut a = pb::Ack {
                    agent_id: "a".into(),
                    seq,
                    status: status as i32,
                    reason: if status == AckStatus::Rejected {
                        pb::RejectReason::ChecksumMismatch as i32
                    } else {
                        0
                    },
                    ..Default::default()
                };
                fleetset_proto::sign_ack(&mut a, key, &sha);
                Ok(a)
            };
            match (n.policy)(self.id, seq) {
                Reply::Ack(status) => self.replies.push_back(ack(status, Some(KEY))),
                Reply::Unsigned(status) => self.replies.push_back(ack(status, None)),
                Reply::WrongMac(status) => self.replies.push_back(ack(status, Some(b"other"))),
                Reply::Silent => {}
                Reply::Fail => self.replies.push_back(Err(LinkError::Closed)),
            }
            std::future::ready(Ok(()))
        }
        fn recv(&mut self) -> impl Future<Output = Result<pb::Ack, LinkError>> + Send {
            let next = self.replies.pop_front();
            async move {
                match next {
                    Some(r) => r,
                    None => std::future::pending().await,
                }
            }
        }
    }

    struct Run {
        net: SharedNet,
        counters: Arc<Counters>,
        dir: PathBuf,
        started: Instant,
        finished: Instant,
    }

    impl Run {
        fn sent_on(&self, link: usize) -> Vec<u64> {
            let n = self.net.lock().unwrap();
            n.sent
                .iter()
                .filter(|(l, _)| *l == link)
                .map(|(_, s)| *s)
                .collect()
        }
        fn count(&self, c: &std::sync::atomic::AtomicU64) -> u64 {
            c.load(Relaxed)
        }
        fn events(&self) -> Vec<serde_json::Value> {
            std::fs::read_to_string(self.dir.join("events.jsonl"))
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        }
    }

    impl Drop for Run {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn frame(seq: u64) -> pb::Frame {
        let s = Snapshot {
            agent_id: "a".into(),
            seq,
            start: seq as i64 * 60_000,
            end: seq as i64 * 60_000 + 60_000,
            ..Default::default()
        };
        let opts = SealOptions {
            encoding: fleetset_proto::Encoding::Msgpack,
            ..Default::default()
        };
        seal(&s, &opts).unwrap()
    }

    /// Spools frames 1..=n, runs the send loop over the fake net until every frame is acked
    /// (the frame channel is closed from the start), at most an hour of virtual time.
    async fn run_fake(
        tag: &str,
        n: u64,
        max_in_flight: usize,
        fail_connects: usize,
        policy: Policy,
    ) -> Run {
        run_fake_fed(
            tag,
            n,
            (0, Duration::ZERO),
            max_in_flight,
            fail_connects,
            policy,
        )
        .await
    }

    /// [`run_fake`], and then `later.0` more frames arrive, one every `later.1` (the frame
    /// channel closes after the last).
    async fn run_fake_fed(
        tag: &str,
        n: u64,
        later: (u64, Duration),
        max_in_flight: usize,
        fail_connects: usize,
        policy: Policy,
    ) -> Run {
        let dir =
            std::env::temp_dir().join(format!("fleetset-sender-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let counters = Arc::new(Counters::default());
        std::fs::create_dir_all(&dir).unwrap();
        let events = EventLog::open(Some(&dir.join("events.jsonl"))).unwrap();
        let limits = crate::config::SpoolConfig {
            max_bytes: 1 << 20,
            fsync: FsyncPolicy::Never,
            ..Default::default()
        };
        let mut spool = Spool::open(
            &dir.join("spool"),
            &limits,
            counters.clone(),
            events.clone(),
        )
        .unwrap();
        for seq in 1..=n {
            spool.push(seq, seq as i64 * 60_000, &frame(seq));
        }
        let pending = spool.pending();
        let spool = Arc::new(Mutex::new(spool));
        let net = Arc::new(Mutex::new(Net {
            fail_connects,
            attempts: Vec::new(),
            links: 0,
            sent: Vec::new(),
            policy,
        }));
        let (tx, rx) = mpsc::unbounded_channel();
        let feeder = spool.clone();
        tokio::spawn(async move {
            for seq in n + 1..=n + later.0 {
                tokio::time::sleep(later.1).await;
                let f = frame(seq);
                lock(&feeder).push(seq, seq as i64 * 60_000, &f);
                let meta = Spooled {
                    seq,
                    window_start: seq as i64 * 60_000,
                    bytes: 0,
                };
                tx.send(meta).unwrap();
            }
        });
        let cfg = SenderConfig {
            transport: crate::config::TransportArg::Zmq,
            endpoint: "fake".into(),
            agent_id: "a".into(),
            tls: Default::default(),
            zmq: Default::default(),
            curve: Default::default(),
            max_in_flight,
            ack_timeout: Duration::from_secs(1),
            drain_timeout: None,
            ack_key: Some(KEY.to_vec()),
        };
        let started = Instant::now();
        tokio::time::timeout(
            Duration::from_secs(3600),
            run_over(
                FakeConnector(net.clone()),
                cfg,
                spool.clone(),
                pending,
                rx,
                counters.clone(),
                events,
            ),
        )
        .await
        .expect("the send loop did not finish");
        assert!(lock(&spool).newest().is_none(), "frames left in the spool");
        Run {
            net,
            counters,
            dir,
            started,
            finished: Instant::now(),
        }
    }

    fn ack_all(status: AckStatus) -> Policy {
        Box::new(move |_, _| Reply::Ack(status))
    }

    #[tokio::test(start_paused = true)]
    async fn acks_that_do_not_verify_delete_nothing_and_the_frames_are_resent() {
        // Link 0 acks every frame COMMITTED unsigned, link 1 with a wrong MAC (and REJECTED
        // with a wrong MAC for seq 2), link 2 signs correctly.
        let policy: Policy = Box::new(|link, seq| match (link, seq) {
            (0, _) => Reply::Unsigned(AckStatus::Committed),
            (1, 2) => Reply::WrongMac(AckStatus::Rejected),
            (1, _) => Reply::WrongMac(AckStatus::Committed),
            _ => Reply::Ack(AckStatus::Committed),
        });
        let r = run_fake("unverified", 4, 64, 0, policy).await;
        assert_eq!(r.sent_on(0), [1, 2, 3, 4]);
        assert_eq!(
            r.sent_on(1),
            [1, 2, 3, 4],
            "still spooled after link 0's acks"
        );
        assert_eq!(
            r.sent_on(2),
            [1, 2, 3, 4],
            "still spooled after link 1's acks"
        );
        assert_eq!(r.count(&r.counters.acks_unverified), 8);
        assert_eq!(r.count(&r.counters.frames_committed), 4);
        assert_eq!(r.count(&r.counters.frames_rejected), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn ack_timeout_recreates_the_link_and_resends_in_flight_frames_in_seq_order() {
        // The first link acks seqs 1 and 2, then goes silent.
        let policy: Policy = Box::new(|link, seq| match (link, seq) {
            (0, 1..=2) | (1.., _) => Reply::Ack(AckStatus::Committed),
            _ => Reply::Silent,
        });
        let r = run_fake("timeout", 5, 64, 0, policy).await;
        assert_eq!(r.sent_on(0), [1, 2, 3, 4, 5]);
        assert_eq!(
            r.sent_on(1),
            [3, 4, 5],
            "in-flight frames resent in seq order"
        );
        let c = &r.counters;
        assert_eq!(r.count(&c.reconnects), 1);
        assert_eq!(r.count(&c.frames_resent), 3);
        assert_eq!(r.count(&c.frames_committed), 5);
        // It waited exactly the ack timeout, then reconnected at once.
        assert_eq!(r.finished - r.started, Duration::from_secs(1));
        let ev = r.events();
        let timeout: Vec<_> = ev.iter().filter(|e| e["what"] == "ack_timeout").collect();
        assert_eq!(timeout.len(), 1, "{ev:?}");
        assert_eq!(timeout[0]["requeued"], 3);
        // After the timeout: 3, 4, 5 again, marked as resends.
        let resent: Vec<_> = ev
            .iter()
            .skip_while(|e| e["what"] != "ack_timeout")
            .filter(|e| e["event"] == "sent")
            .map(|e| (e["seq"].as_u64().unwrap(), e["resend"] == true))
            .collect();
        assert_eq!(resent, [(3, true), (4, true), (5, true)]);
        let acked: Vec<_> = ev.iter().filter(|e| e["event"] == "acked").collect();
        assert_eq!(acked.len(), 5);
        assert!(acked.iter().all(|e| e["status"] == "COMMITTED"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_frame_never_acked_is_resent_after_its_own_timeout_while_newer_ones_are_acked() {
        // Link 0 acks every frame but seq 1 (its commit failed, say); new frames keep coming
        // every 400 ms, each acked at once. Seq 1's timeout runs from its own send.
        let policy: Policy = Box::new(|link, seq| match (link, seq) {
            (0, 1) => Reply::Silent,
            _ => Reply::Ack(AckStatus::Committed),
        });
        let every = Duration::from_millis(400);
        let r = run_fake_fed("per-frame", 1, (10, every), 64, 0, policy).await;
        let attempts = r.net.lock().unwrap().attempts.clone();
        assert_eq!(attempts.len(), 2, "one link recreation");
        assert_eq!(
            attempts[1] - r.started,
            Duration::from_secs(1),
            "seq 1 resent one ack_timeout after it was sent, not after the acks stopped"
        );
        assert_eq!(r.sent_on(0), [1, 2, 3]);
        assert_eq!(r.sent_on(1), [1, 4, 5, 6, 7, 8, 9, 10, 11]);
        let ev = r.events();
        let timeout: Vec<_> = ev.iter().filter(|e| e["what"] == "ack_timeout").collect();
        assert_eq!(timeout.len(), 1, "{ev:?}");
        assert_eq!(timeout[0]["requeued"], 1);
        assert!(timeout[0]["reason"].as_str().unwrap().contains("seq 1"));
        assert_eq!(r.count(&r.counters.frames_committed), 11);
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_link_failure_unacked_frames_go_first_in_seq_order() {
        // Three in flight at most. Link 0 acks 1, is silent on 2 and 4, fails after 3.
        let policy: Policy = Box::new(|link, seq| match (link, seq) {
            (0, 1) | (1.., _) => Reply::Ack(AckStatus::Committed),
            (0, 3) => Reply::Fail,
            _ => Reply::Silent,
        });
        let r = run_fake("fail", 6, 3, 0, policy).await;
        assert_eq!(r.sent_on(0), [1, 2, 3, 4]);
        assert_eq!(r.sent_on(1), [2, 3, 4, 5, 6], "unacked first, then newer");
        assert_eq!(
            r.count(&r.counters.frames_resent),
            3,
            "2, 3 and 4 were in flight"
        );
        assert_eq!(r.count(&r.counters.frames_committed), 6);
        let ev = r.events();
        assert!(ev.iter().any(|e| e["what"] == "recv_failed"), "{ev:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn reconnect_backoff_grows_with_jitter_and_is_bounded() {
        let r = run_fake("backoff", 2, 64, 12, ack_all(AckStatus::Committed)).await;
        let attempts = r.net.lock().unwrap().attempts.clone();
        assert_eq!(attempts.len(), 13);
        assert_eq!(r.count(&r.counters.reconnects), 12);
        let mut base = Backoff::FIRST;
        let mut prev = Duration::ZERO;
        for w in attempts.windows(2) {
            let gap = w[1] - w[0];
            assert!(
                gap >= base.mul_f64(0.75) && gap <= base.mul_f64(1.25) + Duration::from_millis(10),
                "gap {gap:?} for base {base:?}"
            );
            if base < Backoff::MAX {
                assert!(gap > prev, "the delay grows: {gap:?} after {prev:?}");
            }
            assert!(gap <= Backoff::MAX.mul_f64(1.25) + Duration::from_millis(10));
            prev = gap;
            base = (base * 2).min(Backoff::MAX);
        }
        assert_eq!(r.count(&r.counters.frames_committed), 2);
    }

    #[test]
    fn backoff_doubles_to_its_cap_and_resets() {
        let mut b = Backoff {
            next: Backoff::FIRST,
        };
        let delays: Vec<Duration> = (0..20).map(|_| b.delay()).collect();
        assert!(delays[0] >= Duration::from_millis(75) && delays[0] <= Duration::from_millis(125));
        assert!(delays.iter().all(|d| *d <= Duration::from_millis(37_500)));
        assert!(
            delays[19] >= Duration::from_millis(22_500),
            "{:?}",
            delays[19]
        );
        b.reset();
        assert!(b.delay() <= Duration::from_millis(125));
    }

    #[tokio::test(start_paused = true)]
    async fn a_rejected_frame_is_dropped_counted_and_never_resent() {
        // Link 0 rejects 2, acks 1, is silent on 3 and 4 (so the link is recreated).
        let policy: Policy = Box::new(|link, seq| match (link, seq) {
            (0, 2) => Reply::Ack(AckStatus::Rejected),
            (0, 1) | (1.., _) => Reply::Ack(AckStatus::Committed),
            _ => Reply::Silent,
        });
        let r = run_fake("rejected", 4, 64, 0, policy).await;
        assert_eq!(r.sent_on(0), [1, 2, 3, 4]);
        assert_eq!(r.sent_on(1), [3, 4], "the rejected frame is not resent");
        let c = &r.counters;
        assert_eq!(r.count(&c.frames_rejected), 1);
        assert_eq!(r.count(&c.frames_committed), 3);
        let kept: Vec<_> = std::fs::read_dir(r.dir.join("spool/rejected"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().into_string().unwrap())
            .collect();
        assert_eq!(kept, [format!("{:020}.frame", 2)]);
        let ev = r.events();
        let dropped: Vec<_> = ev.iter().filter(|e| e["event"] == "dropped").collect();
        assert_eq!(dropped.len(), 1, "{ev:?}");
        assert_eq!(dropped[0]["seq"], 2);
        assert_eq!(dropped[0]["reason"], "rejected");
        assert!(ev
            .iter()
            .any(|e| e["status"] == "REJECTED" && e["reason"] == "CHECKSUM_MISMATCH"));
    }

    #[tokio::test(start_paused = true)]
    async fn duplicate_counts_as_delivered() {
        let r = run_fake("duplicate", 3, 64, 0, ack_all(AckStatus::Duplicate)).await;
        assert_eq!(r.sent_on(0), [1, 2, 3], "sent once each");
        let c = &r.counters;
        assert_eq!(r.count(&c.frames_duplicate), 3);
        assert_eq!(r.count(&c.frames_committed), 0);
        assert_eq!(r.count(&c.frames_rejected), 0);
        assert_eq!(r.count(&c.reconnects), 0);
        assert_eq!(r.finished, r.started, "nothing waited");
    }
}
