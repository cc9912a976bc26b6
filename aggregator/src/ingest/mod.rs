//! Receiving frames: the ZeroMQ ROUTER ([`zmq`]) and the gRPC `Ingest.Publish` stream
//! ([`grpc`]) both hand every frame to [`Admission::admit`], which verifies it
//! (`fleetset_proto::verify`) and either rejects it at once — ack REJECTED with the reason,
//! counted by reason, logged at warn once per agent and reason — or passes the decoded snapshot
//! to the store, which acks it after the commit that holds its rows, and publishes it to live
//! consumers right away ([`crate::live::Hub`], which drops recent repeats).

pub mod config;
pub mod grpc;
pub mod otlp;
pub mod zmq;

use crate::counters::Counters;
use crate::live::{Hub, LiveWindow};
use crate::store::{StoreMsg, Submission};
use bytes::Bytes;
use fleetset_proto::pb::{self, AckStatus};
use fleetset_proto::{verify, FrameError, VerifyOptions};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tracing::warn;

/// Where an ack goes back to.
#[derive(Debug, Clone)]
pub enum AckTo {
    /// A ZeroMQ peer (ROUTER identity) via the ROUTER's send task.
    Zmq {
        /// The peer's routing identity.
        identity: Bytes,
        /// The ROUTER send task's queue.
        tx: mpsc::UnboundedSender<(Bytes, pb::Ack)>,
    },
    /// A gRPC `Publish` response stream (bounded: see [`grpc::ACK_QUEUE`]).
    Grpc(mpsc::Sender<pb::Ack>),
    /// The OTLP receiver's window buffer (its WAL is trimmed on acks).
    Otlp(mpsc::UnboundedSender<pb::Ack>),
}

impl AckTo {
    /// Sends `ack`; returns false if the peer is gone, or (gRPC) its ack queue is full because
    /// it stopped reading acks: it will resend and get DUPLICATE.
    pub fn send(&self, ack: pb::Ack) -> bool {
        match self {
            AckTo::Zmq { identity, tx } => tx.send((identity.clone(), ack)).is_ok(),
            AckTo::Grpc(tx) => tx.try_send(ack).is_ok(),
            AckTo::Otlp(tx) => tx.send(ack).is_ok(),
        }
    }
}

/// Now as Unix microseconds.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// Builds an ack.
pub fn ack(agent_id: &str, seq: u64, status: AckStatus) -> pb::Ack {
    pb::Ack {
        agent_id: agent_id.to_string(),
        seq,
        status: status as i32,
        ..Default::default()
    }
}

/// Verification and hand-off to the store, shared by both transports.
#[derive(Clone)]
pub struct Admission {
    verify: Arc<VerifyOptions>,
    store: mpsc::Sender<StoreMsg>,
    hub: Hub,
    counters: Arc<Counters>,
    warned: Arc<Mutex<HashSet<(String, i32)>>>,
}

/// Bound on remembered (agent, reason) pairs for warn-once logging.
const MAX_WARNED: usize = 10_000;

impl Admission {
    /// Admission into `store` with `verify` limits.
    pub fn new(
        verify: VerifyOptions,
        store: mpsc::Sender<StoreMsg>,
        hub: Hub,
        counters: Arc<Counters>,
    ) -> Admission {
        Admission {
            verify: Arc::new(verify),
            store,
            hub,
            counters,
            warned: Arc::default(),
        }
    }

    /// Largest frame accepted, bytes.
    pub fn max_frame_bytes(&self) -> usize {
        self.verify.max_frame_bytes
    }

    /// Rejects a frame: counts, warns once per agent and reason, acks REJECTED.
    pub fn reject(&self, header: Option<&pb::FrameHeader>, err: &FrameError, reply: &AckTo) {
        let reason = err.reason();
        self.counters.reject(reason);
        let (agent_id, seq) = header.map_or(("", 0), |h| (h.agent_id.as_str(), h.seq));
        let first = {
            let mut w = self.warned.lock().unwrap_or_else(|p| p.into_inner());
            if w.len() >= MAX_WARNED {
                w.clear();
            }
            w.insert((agent_id.to_string(), reason as i32))
        };
        if first {
            warn!(agent_id, seq, reason = reason.as_str_name(), error = %err, "frame rejected (further rejections of this agent for this reason are counted, not logged)");
        }
        let mut a = ack(agent_id, seq, AckStatus::Rejected);
        a.reason = reason as i32;
        a.detail = err.to_string();
        if !reply.send(a) {
            Counters::add(&self.counters.acks_undeliverable, 1);
        }
    }

    /// Verifies `frame` and passes it to the store, or rejects it. Waits when the store is
    /// busy (backpressure to the transport); returns false once the store has stopped.
    pub async fn admit(&self, frame: pb::Frame, reply: AckTo) -> bool {
        let received_at_us = now_us();
        Counters::add(&self.counters.frames_received, 1);
        Counters::add(&self.counters.bytes_received, frame.payload.len() as u64);
        match verify(&frame, &self.verify) {
            Ok(snapshot) => {
                let header = frame.header.unwrap_or_default();
                // Built before the hand-off (which moves the snapshot), published after it, so a
                // `since` barrier sent after a subscription starts orders correctly (see live::grpc).
                let live = self.hub.has_subscribers().then(|| LiveWindow {
                    snapshot: snapshot.clone(),
                    header: header.clone(),
                    payload: Bytes::from(frame.payload),
                    received_at_us,
                });
                let stored = self
                    .store
                    .send(StoreMsg::Window(Box::new(Submission {
                        snapshot,
                        header,
                        reply,
                    })))
                    .await
                    .is_ok();
                if let Some(w) = live.filter(|_| stored) {
                    self.hub.publish(w);
                }
                stored
            }
            Err(err) => {
                self.reject(frame.header.as_ref(), &err, &reply);
                true
            }
        }
    }
}
