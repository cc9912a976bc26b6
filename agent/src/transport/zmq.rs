//! The ZeroMQ link: a libzmq DEALER (the `zmq` crate, vendored libzmq 4.3) on its own thread.
//!
//! zeromq 0.7, used before, reserved whatever length a frame header declared, so a fake
//! aggregator sending a header that declares a 1 TiB body aborted the agent (issue 11). libzmq
//! checks `ZMQ_MAXMSGSIZE` (`transport.zmq.max_ack_bytes`: acks are small) before allocating
//! and drops such a connection; it also times out handshakes (the connect timeout), sends
//! heartbeats (`heartbeat_interval`, `heartbeat_timeout`) and reconnects by itself
//! (`reconnect_min`..`reconnect_max`). The sender still recreates the link when acks stop.
//! Every setting is a `[transport.zmq]` key ([`ZmqConfig`]).
//!
//! With `[transport.curve]` the DEALER is a CURVE client ([`CurveKeys`]): it pins the
//! aggregator's public key (a server without the matching secret key fails the handshake) and
//! proves its own key, which the aggregator's allow file maps to this agent's id.
//!
//! The thread talks to the async sender through bounded channels only: frames to send
//! (`out_queue`, the sender waits when full) ring a [`Doorbell`] the thread polls with the
//! socket; acks come back through a channel of `ack_queue` (the thread waits when full, and
//! libzmq's `ZMQ_RCVHWM` then stops reading the socket). Dropping the link stops the thread.

use super::zmq_config::{CurveKeys, ZmqConfig};
use super::LinkError;
use fleetset_core::doorbell::{doorbell, Doorbell, Ring};
use fleetset_proto::pb;
use prost::Message;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::mpsc;

/// Messages handled per wake-up in each direction.
const BATCH: usize = 64;

/// The process's one libzmq context (its I/O thread serves every link).
fn context() -> &'static zmq::Context {
    static CTX: OnceLock<zmq::Context> = OnceLock::new();
    CTX.get_or_init(zmq::Context::new)
}

/// Milliseconds for a libzmq option (saturating at `i32::MAX`).
fn ms(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

/// A DEALER connected to a ROUTER, served by its own thread.
pub struct ZmqLink {
    out: mpsc::Sender<[Vec<u8>; 2]>,
    acks: mpsc::Receiver<Result<pb::Ack, LinkError>>,
    bell: Ring,
    stop: Arc<AtomicBool>,
}

fn zmq_err(what: &str, e: zmq::Error) -> LinkError {
    LinkError::Zmq(format!("{what}: {e}"))
}

impl ZmqLink {
    /// Connects to `endpoint` with routing identity `identity` (≤ 255 bytes), the limits of
    /// `cfg` and CURVE with `curve`; `handshake` bounds each connection's ZMTP handshake. libzmq
    /// connects in the background: frames sent before the connection is up are queued (up to
    /// `cfg.hwm`). Errors: bad endpoint, no thread, no CURVE in libzmq.
    pub fn connect(
        endpoint: &str,
        identity: &[u8],
        handshake: Duration,
        cfg: &ZmqConfig,
        curve: Option<&CurveKeys>,
    ) -> Result<ZmqLink, LinkError> {
        let socket = context()
            .socket(zmq::DEALER)
            .map_err(|e| zmq_err("socket", e))?;
        let set = |r: zmq::Result<()>| r.map_err(|e| zmq_err("socket option", e));
        set(socket.set_identity(identity))?;
        set(socket.set_maxmsgsize(cfg.max_ack_bytes))?;
        set(socket.set_sndhwm(cfg.hwm))?;
        set(socket.set_rcvhwm(cfg.hwm))?;
        set(socket.set_linger(0))?;
        set(socket.set_handshake_ivl(ms(handshake)))?;
        set(socket.set_heartbeat_ivl(ms(cfg.heartbeat_interval)))?;
        set(socket.set_heartbeat_timeout(ms(cfg.heartbeat_timeout)))?;
        set(socket.set_heartbeat_ttl(ms(cfg.heartbeat_timeout)))?;
        set(socket.set_reconnect_ivl(ms(cfg.reconnect_min)))?;
        set(socket.set_reconnect_ivl_max(ms(cfg.reconnect_max)))?;
        set(socket.set_tcp_keepalive(1))?;
        if let Some(keys) = curve {
            if zmq::has("curve") != Some(true) {
                return Err(LinkError::Zmq(
                    "transport.curve is set but this libzmq has no CURVE".into(),
                ));
            }
            set(socket.set_curve_serverkey(&keys.server))?;
            set(socket.set_curve_publickey(&keys.public))?;
            set(socket.set_curve_secretkey(&keys.secret))?;
        }
        socket
            .connect(endpoint)
            .map_err(|e| zmq_err(&format!("connect {endpoint}"), e))?;
        let (ring, bell) = doorbell().map_err(|e| LinkError::Zmq(format!("doorbell: {e}")))?;
        let (out_tx, out_rx) = mpsc::channel(cfg.out_queue.max(1));
        let (ack_tx, ack_rx) = mpsc::channel(cfg.ack_queue.max(1));
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = stop.clone();
        std::thread::Builder::new()
            .name("zmq-dealer".into())
            .stack_size(256 * 1024)
            .spawn(move || serve(socket, bell, out_rx, ack_tx, &thread_stop))
            .map_err(|e| LinkError::Zmq(format!("link thread: {e}")))?;
        Ok(ZmqLink {
            out: out_tx,
            acks: ack_rx,
            bell: ring,
            stop,
        })
    }

    /// Queues `[header, payload]` for the thread (waits while `out_queue` is full).
    pub async fn send(&mut self, parts: [Vec<u8>; 2]) -> Result<(), LinkError> {
        self.out.send(parts).await.map_err(|_| LinkError::Closed)?;
        self.bell.ring();
        Ok(())
    }

    /// The next ack, or the error that ended the link.
    pub async fn recv(&mut self) -> Result<pb::Ack, LinkError> {
        self.acks.recv().await.unwrap_or(Err(LinkError::Closed))
    }
}

impl Drop for ZmqLink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.bell.ring();
    }
}

/// The link thread: sends queued frames, receives acks, until the link is dropped or fails.
fn serve(
    socket: zmq::Socket,
    bell: Doorbell,
    mut out: mpsc::Receiver<[Vec<u8>; 2]>,
    acks: mpsc::Sender<Result<pb::Ack, LinkError>>,
    stop: &AtomicBool,
) {
    let fail = |e: LinkError| {
        let _ = acks.blocking_send(Err(e));
    };
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..BATCH {
            match out.try_recv() {
                Ok(parts) => {
                    if let Err(e) = socket.send_multipart(parts, zmq::DONTWAIT) {
                        return fail(zmq_err("send", e));
                    }
                }
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => return,
            }
        }
        let (rang, readable) = {
            let mut items = [
                zmq::PollItem::from_fd(bell.fd(), zmq::POLLIN),
                socket.as_poll_item(zmq::POLLIN),
            ];
            // Frames to send ring the bell; the timeout only re-checks `stop`.
            let timeout = if out.is_empty() { 1_000 } else { 0 };
            if let Err(e) = zmq::poll(&mut items, timeout) {
                return fail(zmq_err("poll", e));
            }
            (items[0].is_readable(), items[1].is_readable())
        };
        if rang {
            bell.clear();
        }
        if !readable {
            continue;
        }
        for _ in 0..BATCH {
            let msg = match socket.recv_multipart(zmq::DONTWAIT) {
                Ok(m) => m,
                Err(zmq::Error::EAGAIN) => break,
                Err(e) => return fail(zmq_err("receive", e)),
            };
            let ack = match msg.first() {
                Some(part) => {
                    pb::Ack::decode(part.as_slice()).map_err(|e| LinkError::BadAck(e.to_string()))
                }
                None => Err(LinkError::BadAck("empty message".into())),
            };
            if acks.blocking_send(ack).is_err() {
                return; // the link was dropped
            }
        }
    }
}
