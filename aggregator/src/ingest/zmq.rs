//! ZeroMQ ingest: a ROUTER bound at `--zmq-bind`. Agents' DEALERs send two-part messages
//! `[FrameHeader (protobuf), payload]`; the ROUTER sees `[identity, header, payload]` and answers
//! `[identity, Ack (protobuf)]` (one ack per frame, after the store's answer; none for a failed
//! commit, so the agent resends).
//!
//! The socket is libzmq's (the `zmq` crate, vendored libzmq 4.3), not zeromq 0.7's: zeromq 0.7
//! reserves whatever length a frame header declares, so a 74-byte header declaring a 1 TiB body
//! aborted the process before the handshake (issue 11; tests/tests/zmq_oversize.rs). libzmq checks
//! `ZMQ_MAXMSGSIZE` (`ingest.max_frame_bytes` + 64 KiB) before allocating and closes such a
//! connection; it also times out handshakes (`ingest.zmq.handshake_timeout`), heartbeats peers,
//! and bounds every peer's queues (`rcvhwm`, `sndhwm`).
//!
//! The socket lives on its own thread ([`serve`]; the `zmq` API blocks), which talks to async
//! admission through bounded queues only: received frames go to the admission task through a
//! channel of [`FRAME_QUEUE`] (when full, the thread stops reading — push-back); acks come back
//! through a queue of `ingest.zmq.ack_queue` (when full, the ack is dropped and counted in
//! `zmq_acks_dropped`; the agent resends and gets DUPLICATE) and ring a [`Doorbell`] the thread
//! polls with the socket. Acks are sent without blocking and with `ZMQ_ROUTER_MANDATORY`, so an
//! ack to a peer at its `sndhwm` (it does not read acks) is dropped and counted instead of
//! stalling every other peer. A peer with `ingest.zmq.max_in_flight_per_peer` frames admitted
//! and not yet acked has its further frames dropped unread (`zmq_peer_backpressure`). Above
//! `ingest.memory_limit_bytes` frames are dropped before verification, unacked
//! (`frames_refused_memory`), like the gRPC and OTLP paths.
//!
//! With `[security.curve]` the ROUTER is a CURVE server: only keys the allow file lists for an
//! agent complete the handshake, and every message carries that agent id as its `User-Id`
//! property; a frame for another agent id is REJECTED `WRONG_IDENTITY` (see [`PeerIdentity`]).

use super::{AckTo, Admission, PeerIdentity};
use crate::counters::Counters;
use crate::security::curve::{ServerKey, INGEST_DOMAIN};
use crate::zmq_endpoint::{bound_endpoint, libzmq_endpoint};
use fleetset_core::doorbell::{doorbell, Doorbell, Ring};
use fleetset_proto::frame::from_parts;
use fleetset_proto::{pb, FrameError};
use prost::Message;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::config::ZmqIngestConfig;

/// Received frames waiting for admission; beyond this the thread stops reading the socket.
pub const FRAME_QUEUE: usize = 256;
/// Room for the header and the message framing above `ingest.max_frame_bytes` in
/// `ZMQ_MAXMSGSIZE` (a part larger than the sum closes the connection).
pub const HEADER_SLACK: usize = 64 * 1024;
/// Messages read per wake-up before acks are sent again.
const BATCH: usize = 256;
/// How long the thread keeps sending acks owed at shutdown.
const DRAIN: Duration = Duration::from_secs(5);

/// An ack owed to a peer: its routing identity and the encoded ack.
pub(crate) type Outgoing = (Vec<u8>, Vec<u8>);

/// One frame of a peer counted against `max_in_flight_per_peer` until dropped (its ack sent,
/// dropped, or never owed).
#[derive(Debug)]
struct Ticket(Arc<AtomicUsize>);

impl Ticket {
    fn new(count: &Arc<AtomicUsize>) -> Ticket {
        count.fetch_add(1, Ordering::Relaxed);
        Ticket(count.clone())
    }
}

impl Clone for Ticket {
    fn clone(&self) -> Ticket {
        Ticket::new(&self.0)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Where a ZeroMQ frame's ack goes: the peer's identity and the ROUTER thread's bounded queue.
#[derive(Debug, Clone)]
pub struct Reply {
    identity: Vec<u8>,
    queue: SyncSender<Outgoing>,
    bell: Ring,
    counters: Arc<Counters>,
    _ticket: Ticket,
}

impl Reply {
    /// A reply to `identity` through `queue`, ringing `bell`, counted against `in_flight` until
    /// dropped.
    pub(crate) fn new(
        identity: Vec<u8>,
        queue: SyncSender<Outgoing>,
        bell: Ring,
        counters: Arc<Counters>,
        in_flight: &Arc<AtomicUsize>,
    ) -> Reply {
        Reply {
            identity,
            queue,
            bell,
            counters,
            _ticket: Ticket::new(in_flight),
        }
    }

    /// Queues `ack` for the ROUTER thread; false (and counted in `zmq_acks_dropped`) if the
    /// queue is full, false if the thread is gone.
    pub fn send(&self, ack: &pb::Ack) -> bool {
        match self
            .queue
            .try_send((self.identity.clone(), ack.encode_to_vec()))
        {
            Ok(()) => {
                self.bell.ring();
                true
            }
            Err(std::sync::mpsc::TrySendError::Full(_)) => {
                Counters::add(&self.counters.zmq_acks_dropped, 1);
                false
            }
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => false,
        }
    }
}

/// A received message for admission: the frame (or why it is not one), where its ack goes and
/// who sent it (the CURVE key's agent id, or unbound without CURVE).
type Inbound = (Result<pb::Frame, FrameError>, AckTo, PeerIdentity);

/// Milliseconds for a libzmq option (saturating at `i32::MAX`).
fn ms(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

/// A ROUTER socket with the `[ingest.zmq]` limits, a CURVE server with `curve` if given,
/// bound at `cfg.bind`.
fn router(
    ctx: &zmq::Context,
    cfg: &ZmqIngestConfig,
    max_frame_bytes: usize,
    curve: Option<&ServerKey>,
) -> anyhow::Result<zmq::Socket> {
    let socket = ctx.socket(zmq::ROUTER)?;
    if let Some(key) = curve {
        key.apply(&socket, INGEST_DOMAIN)?;
    }
    let max_msg = max_frame_bytes.saturating_add(HEADER_SLACK);
    socket.set_maxmsgsize(i64::try_from(max_msg).unwrap_or(i64::MAX))?;
    socket.set_handshake_ivl(ms(cfg.handshake_timeout))?;
    socket.set_heartbeat_ivl(ms(cfg.heartbeat_interval))?;
    socket.set_heartbeat_timeout(ms(cfg.heartbeat_timeout))?;
    // The TTL travels in the PING in deciseconds, at most 6553.5 s.
    socket.set_heartbeat_ttl(ms(cfg.heartbeat_timeout).min(6_553_000))?;
    socket.set_rcvhwm(cfg.rcvhwm)?;
    socket.set_sndhwm(cfg.sndhwm)?;
    socket.set_router_mandatory(true)?;
    socket.set_linger(ms(cfg.linger))?;
    socket.set_tcp_keepalive(1)?;
    socket
        .bind(&libzmq_endpoint(&cfg.bind))
        .map_err(|e| anyhow::anyhow!("zmq bind {}: {e}", cfg.bind))?;
    Ok(socket)
}

/// Binds the ROUTER per `cfg` in `ctx` and returns the resolved endpoint (port 0 → the real
/// port) and the task that serves it until `shutdown`. With `curve` the ROUTER is a CURVE
/// server: `ctx`'s ZAP handler ([`crate::security::zap`]) admits agent keys and names their
/// agent id, and each frame is admitted as [`PeerIdentity::Agent`] of that id. Errors: the
/// socket cannot be made or bound.
pub async fn start(
    ctx: &zmq::Context,
    cfg: &ZmqIngestConfig,
    curve: Option<&ServerKey>,
    admission: Admission,
    counters: Arc<Counters>,
    shutdown: CancellationToken,
) -> anyhow::Result<(String, tokio::task::JoinHandle<()>)> {
    let socket = router(ctx, cfg, admission.max_frame_bytes(), curve)?;
    let endpoint = bound_endpoint(&socket, &cfg.bind)?;
    let (ring, bell) = doorbell()?;
    let (ack_tx, ack_rx) = sync_channel::<Outgoing>(cfg.ack_queue.max(1));
    let (frame_tx, mut frame_rx) = mpsc::channel::<Inbound>(FRAME_QUEUE);
    let stop = Arc::new(AtomicBool::new(false));
    let thread = Thread {
        socket,
        bell,
        acks: ack_rx,
        frames: frame_tx,
        reply: Some((ack_tx, ring.clone())),
        peers: HashMap::new(),
        max_in_flight: cfg.max_in_flight_per_peer,
        counters: counters.clone(),
        stop: stop.clone(),
    };
    let handle = std::thread::Builder::new()
        .name("zmq-router".into())
        .spawn(move || serve(thread))?;

    let task = tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => break,
                n = frame_rx.recv() => n,
            };
            let Some((frame, reply, peer)) = next else {
                break;
            };
            match frame {
                // Over the memory limit: refused before verification and not acked (its
                // ticket goes with the reply), so the agent resends after its ack timeout.
                Ok(_) if admission.over_memory_limit() => {}
                Ok(frame) => {
                    if !admission.admit(frame, reply, &peer).await {
                        break;
                    }
                }
                Err(err) => {
                    Counters::add(&counters.frames_received, 1);
                    admission.reject(None, &err, &reply);
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
        ring.ring();
        drop(frame_rx);
        // The thread sends the store's final acks (at most DRAIN), then closes the socket.
        let joined = tokio::task::spawn_blocking(move || handle.join());
        if tokio::time::timeout(DRAIN + Duration::from_secs(2), joined)
            .await
            .is_err()
        {
            warn!("zmq ROUTER thread did not finish in time");
        }
    });
    Ok((endpoint, task))
}

/// The ROUTER thread's state.
struct Thread {
    socket: zmq::Socket,
    bell: Doorbell,
    acks: Receiver<Outgoing>,
    frames: mpsc::Sender<Inbound>,
    /// The ack queue's sender and bell, for new replies; dropped at shutdown so the queue
    /// disconnects once every reply is gone.
    reply: Option<(SyncSender<Outgoing>, Ring)>,
    /// Frames admitted and not yet acked, by peer identity (entries without frames are swept).
    peers: HashMap<Vec<u8>, Arc<AtomicUsize>>,
    max_in_flight: usize,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
}

/// Runs the ROUTER until the admission task stops it, then sends the acks still owed (at most
/// [`DRAIN`]).
fn serve(mut t: Thread) {
    let mut held: Option<Inbound> = None;
    let mut swept = Instant::now();
    while !t.stop.load(Ordering::Relaxed) {
        t.send_acks();
        if let Some(m) = held.take() {
            match t.frames.try_send(m) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(m)) => held = Some(m),
                Err(mpsc::error::TrySendError::Closed(_)) => break,
            }
        }
        let read = held.is_none();
        let (bell_ready, socket_ready) = {
            let mut items = [
                zmq::PollItem::from_fd(t.bell.fd(), zmq::POLLIN),
                t.socket.as_poll_item(if read {
                    zmq::POLLIN
                } else {
                    zmq::PollEvents::empty()
                }),
            ];
            // Held frame: retry soon; else wake for a message, an ack or the stop bell.
            let timeout = if read { 1_000 } else { 5 };
            if let Err(e) = zmq::poll(&mut items, timeout) {
                debug!(error = %e, "zmq poll");
            }
            (items[0].is_readable(), items[1].is_readable())
        };
        if bell_ready {
            t.bell.clear();
        }
        if socket_ready {
            held = t.receive();
        }
        if swept.elapsed() > Duration::from_secs(1) {
            t.peers.retain(|_, n| Arc::strong_count(n) > 1);
            swept = Instant::now();
        }
    }
    drop(held);
    // Dropping the frame queue's sender and the reply factory leaves the ack queue connected
    // only to replies still owed (in admission or the store), so it disconnects once they are.
    let Thread {
        socket,
        acks,
        counters,
        ..
    } = t;
    let deadline = Instant::now() + DRAIN;
    while Instant::now() < deadline {
        match acks.recv_timeout(Duration::from_millis(50)) {
            Ok(out) => send_ack(&socket, &counters, out),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
}

/// Sends one ack without blocking; a peer gone or at its high-water mark loses it (counted).
fn send_ack(socket: &zmq::Socket, counters: &Counters, (identity, ack): Outgoing) {
    match socket.send_multipart([identity, ack], zmq::DONTWAIT) {
        Ok(()) => {}
        Err(zmq::Error::EAGAIN) => {
            Counters::add(&counters.zmq_acks_dropped, 1);
            Counters::add(&counters.acks_undeliverable, 1);
        }
        Err(e) => {
            debug!(error = %e, "ack to a departed zmq peer dropped");
            Counters::add(&counters.acks_undeliverable, 1);
        }
    }
}

impl Thread {
    /// Sends every queued ack.
    fn send_acks(&mut self) {
        loop {
            match self.acks.try_recv() {
                Ok(out) => send_ack(&self.socket, &self.counters, out),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return,
            }
        }
    }

    /// Reads up to [`BATCH`] messages and queues them for admission; returns the one that did
    /// not fit (the thread stops reading until it does).
    fn receive(&mut self) -> Option<Inbound> {
        for _ in 0..BATCH {
            let parts = match recv_parts(&self.socket) {
                Ok(parts) => parts,
                Err(zmq::Error::EAGAIN) => return None,
                Err(e) => {
                    debug!(error = %e, "zmq receive");
                    return None;
                }
            };
            let Some(m) = self.inbound(parts) else {
                continue;
            };
            match self.frames.try_send(m) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(m)) => return Some(m),
                Err(mpsc::error::TrySendError::Closed(_)) => return None,
            }
        }
        None
    }

    /// The frame in `[identity, header, payload]` and its reply; None if its peer is at
    /// `max_in_flight_per_peer` (counted) or the thread is stopping.
    fn inbound(&mut self, (parts, peer): (Vec<Vec<u8>>, PeerIdentity)) -> Option<Inbound> {
        let (queue, bell) = self.reply.as_ref()?;
        let mut parts = parts.into_iter();
        let identity = parts.next()?;
        let count = self.peers.entry(identity.clone()).or_default();
        if count.load(Ordering::Relaxed) >= self.max_in_flight {
            Counters::add(&self.counters.zmq_peer_backpressure, 1);
            return None;
        }
        let reply = Reply::new(
            identity,
            queue.clone(),
            bell.clone(),
            self.counters.clone(),
            count,
        );
        Some((frame_of(parts), AckTo::Zmq(reply), peer))
    }
}

/// Reads one whole message without blocking: its parts and the `User-Id` libzmq attached to
/// the peer's parts (the ZAP handler's answer for its CURVE key: its agent id; none without
/// CURVE). The identity part the ROUTER prepends carries no metadata, so the last part is asked.
fn recv_parts(socket: &zmq::Socket) -> zmq::Result<(Vec<Vec<u8>>, PeerIdentity)> {
    let mut last = socket.recv_msg(zmq::DONTWAIT)?;
    let mut parts = Vec::new();
    while socket.get_rcvmore()? {
        let next = socket.recv_msg(0)?;
        parts.push(last.to_vec());
        last = next;
    }
    let peer = match last.gets("User-Id") {
        Some(id) if !id.is_empty() => PeerIdentity::Agent(id.to_string()),
        _ => PeerIdentity::Unbound,
    };
    parts.push(last.to_vec());
    Ok((parts, peer))
}

/// The frame of a ROUTER message's parts after the identity, which must be exactly
/// `[header, payload]`. Errors: another part count (MALFORMED_HEADER), or what
/// [`from_parts`] finds.
pub fn frame_of(mut parts: impl Iterator<Item = Vec<u8>>) -> Result<pb::Frame, FrameError> {
    match (parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), None) => from_parts(&h, p),
        _ => Err(FrameError::MalformedHeader(
            "expected a two-part message [header, payload]".into(),
        )),
    }
}
