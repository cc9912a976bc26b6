//! Entry points for the fuzz targets in `fuzz/` (not an API: hidden from the docs, may change
//! with the targets). They drive the real [`Admission`] — verification, the contract, the
//! reject path's bounded echo — with a store stand-in that takes every submission and answers
//! none (nothing touches disk).

use crate::counters::Counters;
use crate::ingest::zmq::{Outgoing, Reply};
use crate::ingest::{AckTo, Admission, AdmissionLimits};
use crate::live::Hub;
use crate::store::StoreMsg;
use fleetset_core::doorbell::{doorbell, Doorbell, Ring};
use fleetset_proto::pb;
use fleetset_proto::{Contract, FrameError, Snapshot, VerifyOptions};
use prost::Message;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use tokio::runtime::Runtime;
use tokio::sync::mpsc;

/// What one admission did: the snapshots handed to the store and the acks sent to the peer.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Snapshots that passed verification and the contract, in order.
    pub stored: Vec<Snapshot>,
    /// Acks sent back right away (REJECTED ones; committed frames are never answered here).
    pub acks: Vec<pb::Ack>,
    /// Acks queued for ZeroMQ peers ([`AdmissionHarness::zmq_peer`]): identity and ack.
    pub zmq_acks: Vec<(Vec<u8>, pb::Ack)>,
}

/// An [`Admission`] on a current-thread runtime whose store swallows every submission.
pub struct AdmissionHarness {
    rt: Runtime,
    admission: Admission,
    store: mpsc::Receiver<StoreMsg>,
    acks_tx: mpsc::Sender<pb::Ack>,
    acks: mpsc::Receiver<pb::Ack>,
    zmq_tx: std::sync::mpsc::SyncSender<Outgoing>,
    zmq_rx: std::sync::mpsc::Receiver<Outgoing>,
    ring: Ring,
    _bell: Doorbell,
    counters: Arc<Counters>,
}

impl AdmissionHarness {
    /// A harness admitting with `verify` and `contract`. Errors: the runtime cannot start.
    pub fn new(verify: VerifyOptions, contract: Contract) -> std::io::Result<AdmissionHarness> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (tx, store) = mpsc::channel(16);
        let counters = Arc::new(Counters::default());
        let admission = {
            let _guard = rt.enter();
            Admission::new(
                verify,
                contract,
                tx,
                Hub::new(1),
                counters.clone(),
                AdmissionLimits {
                    max_pending_acks: 16,
                    verify_threads: 1,
                    memory_limit_bytes: 0,
                },
            )
        };
        // Drained after every admission; one admission sends at most one ack.
        let (acks_tx, acks) = mpsc::channel(64);
        let (zmq_tx, zmq_rx) = std::sync::mpsc::sync_channel(64);
        let (ring, bell) = doorbell()?;
        Ok(AdmissionHarness {
            rt,
            admission,
            store,
            acks_tx,
            acks,
            zmq_tx,
            zmq_rx,
            ring,
            _bell: bell,
            counters,
        })
    }

    /// A ZeroMQ peer with routing `identity`, as the ROUTER thread makes one per message: its
    /// acks land in [`Outcome::zmq_acks`].
    pub fn zmq_peer(&self, identity: Vec<u8>) -> AckTo {
        let reply = Reply::new(
            identity,
            self.zmq_tx.clone(),
            self.ring.clone(),
            self.counters.clone(),
            &Arc::new(AtomicUsize::new(0)),
        );
        AckTo::Zmq(reply)
    }

    /// The peer the OTLP transport uses: acks land in this harness's [`Outcome::acks`].
    pub fn otlp_peer(&self) -> AckTo {
        AckTo::Otlp(self.acks_tx.clone())
    }

    /// [`Admission::admit`]s `frame` answering `reply`; returns what reached the store and the
    /// acks sent to [`AdmissionHarness::otlp_peer`].
    pub fn admit(&mut self, frame: pb::Frame, reply: AckTo) -> Outcome {
        let admission = self.admission.clone();
        self.rt
            .block_on(admission.admit(frame, reply, &crate::ingest::PeerIdentity::Unbound));
        self.drain()
    }

    /// [`Admission::reject`]s with `err` as a transport does for a message that is not a frame.
    pub fn reject(
        &mut self,
        header: Option<&pb::FrameHeader>,
        err: &FrameError,
        reply: &AckTo,
    ) -> Outcome {
        self.admission.reject(header, err, reply);
        self.drain()
    }

    fn drain(&mut self) -> Outcome {
        let mut out = Outcome::default();
        while let Ok(msg) = self.store.try_recv() {
            if let StoreMsg::Window(s) = msg {
                out.stored.push(s.snapshot);
            }
        }
        while let Ok(a) = self.acks.try_recv() {
            out.acks.push(a);
        }
        while let Ok((identity, bytes)) = self.zmq_rx.try_recv() {
            // The harness's own encoding of a pb::Ack: decoding cannot fail.
            if let Ok(a) = pb::Ack::decode(bytes.as_slice()) {
                out.zmq_acks.push((identity, a));
            }
        }
        // Let the ack task see the dropped outcomes, so its bounded queue never fills.
        self.rt.block_on(tokio::task::yield_now());
        out
    }
}
