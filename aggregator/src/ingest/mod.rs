//! Receiving frames: the ZeroMQ ROUTER ([`zmq`]) and the gRPC `Ingest.Publish` stream
//! ([`grpc`]) both hand every frame to [`Admission::admit`], which verifies it
//! (`fleetset_proto::verify`) and either rejects it at once — ack REJECTED with the reason,
//! counted by reason, logged at warn once per agent and reason — or passes the decoded snapshot
//! to the store, which acks it after the commit that holds its rows, and publishes it to live
//! consumers right away ([`crate::live::Hub`], which drops recent repeats). The store answers
//! each frame with a [`CommitStatus`]; one ack task ([`Acks`]) turns `Committed` and
//! `Duplicate` into acks to the frame's peer, and sends nothing for `Failed` (the agent resends).

pub mod config;
pub mod grpc;
pub mod memory;
pub mod otlp;
pub mod zmq;

use crate::counters::Counters;
use crate::live::{Hub, LiveWindow};
use crate::store::{CommitStatus, StoreMsg, Submission};
use bytes::Bytes;
use fleetset_proto::contract::{detail, is_valid_agent_id, shown};
use fleetset_proto::pb::{self, AckStatus, RejectReason};
use fleetset_proto::{sign_ack, verify_with, Contract, FrameError, HmacKeys, VerifyOptions};
use futures::stream::{FuturesUnordered, StreamExt};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tracing::{debug, warn};

pub use memory::MemoryLimit;

/// Where an ack goes back to.
#[derive(Debug, Clone)]
pub enum AckTo {
    /// A ZeroMQ peer via the ROUTER thread's bounded ack queue ([`zmq::Reply`]).
    Zmq(zmq::Reply),
    /// A gRPC `Publish` response stream (bounded: see [`grpc::ACK_QUEUE`]).
    Grpc(mpsc::Sender<pb::Ack>),
    /// The OTLP receiver's window buffer (its WAL is trimmed on acks). Bounded (room for the
    /// windows it can have in flight); an ack that finds it full is dropped and counted like a
    /// gRPC one, and the window is resubmitted when its ack is overdue (acked DUPLICATE).
    Otlp(mpsc::Sender<pb::Ack>),
}

impl AckTo {
    /// Sends `ack`; returns false if the peer is gone, or (gRPC, ZeroMQ) an ack queue is full
    /// because it stopped reading acks: it will resend and get DUPLICATE.
    pub fn send(&self, ack: pb::Ack) -> bool {
        match self {
            AckTo::Zmq(reply) => reply.send(&ack),
            AckTo::Grpc(tx) => tx.try_send(ack).is_ok(),
            AckTo::Otlp(tx) => tx.try_send(ack).is_ok(),
        }
    }
}

/// Who the transport authenticated a frame's sender as. An agent may publish only its own
/// agent id (docs/security.md "Identity binding").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PeerIdentity {
    /// Not bound to an agent id (no client certificate with an agent id, no CURVE key): frames
    /// for any agent id are admitted; per-agent HMAC keys, when in use, still bind each frame
    /// to the agent whose key signed it.
    #[default]
    Unbound,
    /// Authenticated as this agent id (mTLS URI SAN `spiffe://fleetset/agent/<id>`, or the
    /// CURVE allow file's id for its public key): a frame for any other id is REJECTED
    /// `WRONG_IDENTITY` before it is verified, counted, never stored or published.
    Agent(String),
}

impl PeerIdentity {
    /// The error for a frame whose header names `claimed` while the sender is bound to
    /// another id; None when the frame may be admitted.
    fn refuse(&self, claimed: &str) -> Option<FrameError> {
        match self {
            PeerIdentity::Agent(id) if id != claimed => Some(FrameError::WrongIdentity {
                claimed: shown(claimed),
                authenticated: id.clone(),
            }),
            _ => None,
        }
    }
}

/// Now as Unix microseconds.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// `a` signed for the frame whose header has `payload_sha256`, with the key of the ack's agent
/// id when keys are in use ([`fleetset_proto::keys`]: docs/security.md "Signed acks").
pub fn signed(keys: &HmacKeys, mut a: pb::Ack, payload_sha256: &[u8]) -> pb::Ack {
    let key = keys.key_for(&a.agent_id);
    sign_ack(&mut a, key.as_deref(), payload_sha256);
    a
}

/// Builds an (unsigned) ack.
pub fn ack(agent_id: &str, seq: u64, status: AckStatus) -> pb::Ack {
    pb::Ack {
        agent_id: agent_id.to_string(),
        seq,
        status: status as i32,
        ..Default::default()
    }
}

/// A frame handed to the store whose ack waits for the store's answer.
struct PendingAck {
    reply: AckTo,
    agent_id: String,
    seq: u64,
    /// The frame header's `payload_sha256`, which the ack's MAC covers.
    payload_sha256: Vec<u8>,
    outcome: oneshot::Receiver<CommitStatus>,
}

/// The ack task's queue: acks of frames in the store, sent once the store answers. At most
/// `ingest.max_pending_acks` frames are awaited and as many queued; beyond that admission waits.
#[derive(Clone)]
struct Acks(mpsc::Sender<PendingAck>);

impl Acks {
    /// Starts the ack task, which signs every ack with `keys` ([`signed`]); it ends when every
    /// sender is gone and every pending frame answered.
    fn start(counters: Arc<Counters>, capacity: usize, keys: HmacKeys) -> Acks {
        let capacity = capacity.max(1);
        let (tx, mut rx) = mpsc::channel::<PendingAck>(capacity);
        tokio::spawn(async move {
            let mut pending = FuturesUnordered::new();
            let mut open = true;
            loop {
                tokio::select! {
                    p = rx.recv(), if open && pending.len() < capacity => match p {
                        Some(p) => pending.push(async move {
                            let status = p.outcome.await;
                            (p.reply, p.agent_id, p.seq, p.payload_sha256, status)
                        }),
                        None => open = false,
                    },
                    Some((reply, agent_id, seq, sha, status)) = pending.next() => {
                        let a = match status {
                            Ok(CommitStatus::Committed) => ack(&agent_id, seq, AckStatus::Committed),
                            Ok(CommitStatus::Duplicate) => ack(&agent_id, seq, AckStatus::Duplicate),
                            Ok(CommitStatus::SeqReused) => {
                                counters.reject(RejectReason::SeqReused);
                                debug!(agent_id, seq, "rejected: seq reused for another window");
                                pb::Ack {
                                    reason: RejectReason::SeqReused as i32,
                                    detail: format!("seq {seq} of {agent_id} is already stored for another window start"),
                                    ..ack(&agent_id, seq, AckStatus::Rejected)
                                }
                            }
                            Ok(CommitStatus::CardinalityLimit(detail)) => {
                                counters.reject(RejectReason::CardinalityLimit);
                                debug!(agent_id, seq, detail, "rejected: cardinality limit");
                                pb::Ack {
                                    reason: RejectReason::CardinalityLimit as i32,
                                    detail,
                                    ..ack(&agent_id, seq, AckStatus::Rejected)
                                }
                            }
                            Ok(CommitStatus::Failed(reason)) => {
                                debug!(agent_id, seq, reason, "not acked: commit failed");
                                continue;
                            }
                            Err(_) => continue, // the store stopped without an answer
                        };
                        if !reply.send(signed(&keys, a, &sha)) {
                            Counters::add(&counters.acks_undeliverable, 1);
                        }
                    },
                    else => break,
                }
            }
        });
        Acks(tx)
    }
}

/// The bounds of [`Admission`] (from `[ingest]`).
#[derive(Debug, Clone, Copy)]
pub struct AdmissionLimits {
    /// Frames awaiting the store's answer at most (`ingest.max_pending_acks`).
    pub max_pending_acks: usize,
    /// Verifications (hash, decompression, decode) running at once at most, each on a
    /// blocking thread (`ingest.verify_threads`; 0 is taken as 1).
    pub verify_threads: usize,
    /// Resident memory above which frames are refused (`ingest.memory_limit_bytes`; 0: off).
    pub memory_limit_bytes: u64,
}

/// The snapshot limits (`ingest.max_*`) in use, shared by every clone of an [`Admission`] and
/// replaced by a configuration reload; frames already verified keep their verdict.
pub type LiveContract = fleetset_core::config::reload::Live<Contract>;

/// Verification and hand-off to the store, shared by both transports.
#[derive(Clone)]
pub struct Admission {
    verify: Arc<VerifyOptions>,
    /// The snapshot limits (`ingest.max_*`); replaced by a configuration reload.
    contract: LiveContract,
    /// Permits for verifications running at once (`ingest.verify_threads`).
    verify_slots: Arc<Semaphore>,
    memory: Arc<MemoryLimit>,
    store: mpsc::Sender<StoreMsg>,
    acks: Acks,
    hub: Hub,
    counters: Arc<Counters>,
    warned: Arc<Mutex<HashSet<(String, i32)>>>,
    /// The control plane's inventory, told of every verified and rejected frame.
    control: Option<Arc<crate::control::ControlPlane>>,
}

/// Bound on remembered (agent, reason) pairs for warn-once logging (keys are valid agent ids,
/// at most 128 bytes: ≤ ~2 MB).
const MAX_WARNED: usize = 10_000;

impl Admission {
    /// Admission into `store` of frames passing `verify` and `contract`; starts the ack task
    /// with room for `limits.max_pending_acks` frames awaiting the store (needs a Tokio runtime).
    pub fn new(
        verify: VerifyOptions,
        contract: Contract,
        store: mpsc::Sender<StoreMsg>,
        hub: Hub,
        counters: Arc<Counters>,
        limits: AdmissionLimits,
    ) -> Admission {
        Admission {
            acks: Acks::start(
                counters.clone(),
                limits.max_pending_acks,
                verify.keys.clone(),
            ),
            verify: Arc::new(verify),
            contract: LiveContract::new(contract),
            verify_slots: Arc::new(Semaphore::new(limits.verify_threads.max(1))),
            memory: Arc::new(MemoryLimit::new(limits.memory_limit_bytes)),
            store,
            hub,
            counters,
            warned: Arc::default(),
            control: None,
        }
    }

    /// This admission, telling `control`'s inventory of every frame (last window, frames per
    /// second, rejects by reason).
    pub fn with_control(mut self, control: Arc<crate::control::ControlPlane>) -> Admission {
        self.control = Some(control);
        self
    }

    /// The snapshot limits this admission checks frames against, shared: setting them (a
    /// configuration reload) applies to the frames admitted from then on.
    pub fn live_contract(&self) -> LiveContract {
        self.contract.clone()
    }

    /// The counters this admission counts into.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Largest frame accepted, bytes.
    pub fn max_frame_bytes(&self) -> usize {
        self.verify.max_frame_bytes
    }

    /// The memory limiter (shared with the OTLP receiver, which refuses Exports with it).
    pub fn memory_limit(&self) -> Arc<MemoryLimit> {
        self.memory.clone()
    }

    /// True when resident memory is above `ingest.memory_limit_bytes` ([`memory`]); then the
    /// frame about to be admitted is counted in `frames_refused_memory` and must be refused by
    /// the transport without verification and without an ack, retryably (gRPC: the stream ends
    /// UNAVAILABLE after the acks owed). Call once per frame, before [`Admission::admit`].
    pub fn over_memory_limit(&self) -> bool {
        let over = self.memory.exceeded();
        if over {
            Counters::add(&self.counters.frames_refused_memory, 1);
        }
        over
    }

    /// Rejects a frame: counts, warns once per agent and reason, acks REJECTED (signed like
    /// every ack, over the header's `payload_sha256`). The header's
    /// agent id is echoed (ack, log) only bounded and escaped unless it is a valid id, and only
    /// valid ids key the warn-once set (all invalid ones share one entry); the error text is
    /// bounded too ([`detail`]).
    pub fn reject(&self, header: Option<&pb::FrameHeader>, err: &FrameError, reply: &AckTo) {
        let reason = err.reason();
        self.counters.reject(reason);
        let (raw_id, seq) = header.map_or(("", 0), |h| (h.agent_id.as_str(), h.seq));
        let valid = is_valid_agent_id(raw_id);
        let agent_id = if valid {
            raw_id.to_string()
        } else {
            shown(raw_id)
        };
        let first = {
            let mut w = self.warned.lock().unwrap_or_else(|p| p.into_inner());
            if w.len() >= MAX_WARNED {
                w.clear();
            }
            w.insert((if valid { raw_id } else { "" }.to_string(), reason as i32))
        };
        if let Some(c) = self.control.as_ref().filter(|_| valid) {
            c.observe_reject(raw_id, reason);
        }
        let text = detail(&err.to_string());
        if first {
            warn!(agent_id, seq, reason = reason.as_str_name(), error = %text, "frame rejected (further rejections of this agent for this reason are counted, not logged)");
        }
        let mut a = ack(&agent_id, seq, AckStatus::Rejected);
        a.reason = reason as i32;
        a.detail = text;
        let sha = header.map_or(&[][..], |h| h.payload_sha256.as_slice());
        if !reply.send(signed(&self.verify.keys, a, sha)) {
            Counters::add(&self.counters.acks_undeliverable, 1);
        }
    }

    /// Verifies `frame` from a sender authenticated as `peer` and passes it to the store, or
    /// rejects it (a frame for another agent than `peer`'s: `WRONG_IDENTITY`, before any
    /// verification). Waits when the store is busy (backpressure to the transport); returns
    /// false once the store has stopped.
    pub async fn admit(&self, frame: pb::Frame, reply: AckTo, peer: &PeerIdentity) -> bool {
        let received_at_us = now_us();
        Counters::add(&self.counters.frames_received, 1);
        Counters::add(&self.counters.bytes_received, frame.payload.len() as u64);
        let claimed = frame.header.as_ref().map_or("", |h| h.agent_id.as_str());
        if let Some(err) = peer.refuse(claimed) {
            self.reject(frame.header.as_ref(), &err, &reply);
            return true;
        }
        let Some((frame, verified)) = self.verify_off_thread(frame).await else {
            return false;
        };
        match verified {
            Ok(snapshot) => {
                let header = frame.header.unwrap_or_default();
                if header.version < fleetset_proto::FRAME_VERSION {
                    Counters::add(&self.counters.frames_previous_version, 1);
                }
                if let Some(c) = &self.control {
                    c.observe_frame(&snapshot);
                }
                // Built before the hand-off (which moves the snapshot), published after it, so a
                // `since` barrier sent after a subscription starts orders correctly (see live::grpc).
                let live = self.hub.has_subscribers().then(|| LiveWindow {
                    snapshot: snapshot.clone(),
                    header: header.clone(),
                    payload: Bytes::from(frame.payload),
                    received_at_us,
                });
                let (agent_id, seq) = (snapshot.agent_id.clone(), snapshot.seq);
                let payload_sha256 = header.payload_sha256.clone();
                let (submission, outcome) = Submission::new(snapshot, header);
                let stored = self
                    .store
                    .send(StoreMsg::Window(Box::new(submission)))
                    .await
                    .is_ok();
                if stored {
                    // The ack task outlives every Admission clone's use; a send error means it
                    // is gone with the runtime, and nothing could be acked anyway.
                    let pending = PendingAck {
                        reply,
                        agent_id,
                        seq,
                        payload_sha256,
                        outcome,
                    };
                    let _ = self.acks.0.send(pending).await;
                }
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

    /// Runs `verify_with` (hash, zstd up to `max_decompressed_bytes`, decode) on a blocking
    /// thread once one of the `ingest.verify_threads` permits is free, so the async workers
    /// (and /healthz, acks, other streams) never wait on it. The caller awaits it, so each
    /// transport stream's frames are still admitted in order. None: the runtime is shutting down.
    async fn verify_off_thread(
        &self,
        frame: pb::Frame,
    ) -> Option<(pb::Frame, Result<fleetset_proto::Snapshot, FrameError>)> {
        let permit = self.verify_slots.clone().acquire_owned().await.ok()?;
        let verify = self.verify.clone();
        let contract = self.contract.get();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let verified = verify_with(&frame, &verify, &contract);
            (frame, verified)
        })
        .await
        .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{snapshot, TempDir};
    use crate::store::{files, reader, run, StoreConfig};
    use fleetset_proto::{seal, Compression, Encoding, SealOptions};
    use std::time::Duration;
    use tokio_util::sync::CancellationToken;

    /// Admission into a store on `data_dir`; the receiver of the acks of its OTLP-style peer.
    fn admission(data_dir: &std::path::Path) -> (Admission, CancellationToken) {
        admission_with(data_dir, VerifyOptions::default())
    }

    /// [`admission`] verifying with `verify`.
    fn admission_with(
        data_dir: &std::path::Path,
        verify: VerifyOptions,
    ) -> (Admission, CancellationToken) {
        let (tx, rx) = mpsc::channel(64);
        let stop = CancellationToken::new();
        let counters = Arc::new(Counters::default());
        tokio::spawn(run(
            StoreConfig {
                data_dir: data_dir.to_path_buf(),
                commit_interval: Duration::from_millis(50),
                commit_rows: 1_000_000,
                ..StoreConfig::default()
            },
            rx,
            files::recover(data_dir).expect("recover").index,
            Default::default(),
            counters.clone(),
            stop.clone(),
        ));
        let a = Admission::new(
            verify,
            Contract::default(),
            tx,
            Hub::new(16),
            counters,
            AdmissionLimits {
                max_pending_acks: 1024,
                verify_threads: 2,
                memory_limit_bytes: 0,
            },
        );
        (a, stop)
    }

    fn frame(k: i64) -> pb::Frame {
        signed_frame(k, None)
    }

    /// agent-1's frame `k` signed with `key`.
    fn signed_frame(k: i64, key: Option<Vec<u8>>) -> pb::Frame {
        let opts = SealOptions {
            encoding: Encoding::Protobuf,
            compression: Compression::None,
            hmac_key: key,
        };
        seal(&snapshot("agent-1", k), &opts).expect("seal")
    }

    #[tokio::test]
    async fn with_per_agent_keys_only_the_agents_own_key_is_admitted_and_every_ack_is_signed() {
        let dir = TempDir::new("ingest-keys");
        let master = b"master-key-of-the-fleet".to_vec();
        let keys = HmacKeys::PerAgent {
            master: master.clone(),
        };
        let verify = VerifyOptions {
            keys: keys.clone(),
            ..Default::default()
        };
        let (admission, stop) = admission_with(&dir.0, verify);
        let (tx, mut acks) = mpsc::channel(64);
        let own = fleetset_proto::agent_key(&master, "agent-1").to_vec();
        let other = fleetset_proto::agent_key(&master, "agent-2").to_vec();
        let cases = [
            (signed_frame(0, Some(own.clone())), AckStatus::Committed),
            (signed_frame(0, Some(own.clone())), AckStatus::Duplicate),
            (signed_frame(1, None), AckStatus::Rejected),
            (signed_frame(1, Some(other)), AckStatus::Rejected),
            (
                signed_frame(1, Some(b"made-up".to_vec())),
                AckStatus::Rejected,
            ),
        ];
        for (f, status) in cases {
            let sha = f.header.as_ref().unwrap().payload_sha256.clone();
            let mut f2 = f.clone();
            f2.payload.push(0); // another frame's sha256
            let other_sha = fleetset_proto::frame::sha256(&f2.payload);
            assert!(
                admission
                    .admit(f, AckTo::Otlp(tx.clone()), &PeerIdentity::Unbound)
                    .await
            );
            let a = tokio::time::timeout(Duration::from_secs(10), acks.recv())
                .await
                .expect("an ack within 10 s")
                .expect("ack");
            assert_eq!(a.status, status as i32, "{a:?}");
            if status == AckStatus::Rejected {
                assert_eq!(a.reason, RejectReason::BadSignature as i32);
            }
            assert!(fleetset_proto::ack_verifies(&own, &a, &sha), "{a:?}");
            assert!(!fleetset_proto::ack_verifies(&own, &a, &other_sha));
        }
        let stored = reader::windows(&dir.0, &reader::Query::default()).unwrap();
        assert_eq!(
            stored.len(),
            1,
            "only the frame signed with agent-1's own key"
        );
        stop.cancel();
    }

    #[tokio::test]
    async fn committed_and_duplicate_frames_are_acked_after_their_rows_are_stored() {
        let dir = TempDir::new("ingest-ack");
        let (admission, stop) = admission(&dir.0);
        let (tx, mut acks) = mpsc::channel(64);
        assert!(
            admission
                .admit(frame(0), AckTo::Otlp(tx.clone()), &PeerIdentity::Unbound)
                .await
        );
        let a = tokio::time::timeout(Duration::from_secs(10), acks.recv())
            .await
            .expect("an ack within 10 s")
            .expect("ack");
        assert_eq!((a.seq, a.status), (1, AckStatus::Committed as i32));
        let stored = reader::windows(&dir.0, &reader::Query::default()).unwrap();
        assert_eq!(stored.len(), 1, "acked COMMITTED only once stored");
        assert!(
            admission
                .admit(frame(0), AckTo::Otlp(tx), &PeerIdentity::Unbound)
                .await
        );
        let a = tokio::time::timeout(Duration::from_secs(10), acks.recv())
            .await
            .expect("an ack within 10 s")
            .expect("ack");
        assert_eq!((a.seq, a.status), (1, AckStatus::Duplicate as i32));
        stop.cancel();
    }

    #[tokio::test]
    async fn frames_awaiting_the_store_are_bounded_and_push_back() {
        // A store that takes submissions and never answers.
        let (tx, mut rx) = mpsc::channel(64);
        let held = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Some(m) = rx.recv().await {
                held.push(m);
            }
            held.len()
        });
        let a = Admission::new(
            VerifyOptions::default(),
            Contract::default(),
            tx,
            Hub::new(16),
            Arc::new(Counters::default()),
            AdmissionLimits {
                max_pending_acks: 1,
                verify_threads: 2,
                memory_limit_bytes: 0,
            },
        );
        let (ack_tx, _acks) = mpsc::channel(64);
        // One awaited by the ack task, one queued for it: the third waits.
        for k in 0..2 {
            let admit = a.admit(
                frame(k),
                AckTo::Otlp(ack_tx.clone()),
                &PeerIdentity::Unbound,
            );
            let done = tokio::time::timeout(Duration::from_secs(5), admit).await;
            assert_eq!(done.ok(), Some(true), "frame {k} admitted");
        }
        let third = a.admit(
            frame(2),
            AckTo::Otlp(ack_tx.clone()),
            &PeerIdentity::Unbound,
        );
        assert!(
            tokio::time::timeout(Duration::from_millis(500), third)
                .await
                .is_err(),
            "the third frame must wait while two await the store"
        );
        drop(a);
        held.abort();
    }

    #[tokio::test]
    async fn a_frame_for_another_agent_than_the_authenticated_one_is_rejected_and_not_stored() {
        let dir = TempDir::new("ingest-identity");
        let (admission, stop) = admission(&dir.0);
        let (tx, mut acks) = mpsc::channel(64);
        let peer = PeerIdentity::Agent("agent-2".into());
        assert!(
            admission
                .admit(frame(0), AckTo::Otlp(tx.clone()), &peer)
                .await
        );
        let a = tokio::time::timeout(Duration::from_secs(10), acks.recv())
            .await
            .expect("an ack within 10 s")
            .expect("ack");
        assert_eq!(
            (a.status, a.reason),
            (
                AckStatus::Rejected as i32,
                RejectReason::WrongIdentity as i32
            )
        );
        assert_eq!(
            admission.counters().rejected(RejectReason::WrongIdentity),
            1
        );
        // Its own id passes.
        let own = PeerIdentity::Agent("agent-1".into());
        assert!(admission.admit(frame(1), AckTo::Otlp(tx), &own).await);
        let a = tokio::time::timeout(Duration::from_secs(10), acks.recv())
            .await
            .expect("an ack within 10 s")
            .expect("ack");
        assert_eq!(a.status, AckStatus::Committed as i32);
        let stored = reader::windows(&dir.0, &reader::Query::default()).unwrap();
        assert_eq!(stored.len(), 1, "only agent-1's own frame is stored");
        stop.cancel();
    }

    #[tokio::test]
    async fn a_frame_whose_commit_failed_is_not_acked() {
        let dir = TempDir::new("ingest-failed");
        let data_dir = dir.0.join("a-file");
        std::fs::write(&data_dir, b"").unwrap();
        let (admission, stop) = admission(&data_dir);
        let (tx, mut acks) = mpsc::channel(64);
        assert!(
            admission
                .admit(frame(0), AckTo::Otlp(tx), &PeerIdentity::Unbound)
                .await
        );
        // The ack task drops the frame's only reply handle once the store answers Failed,
        // without sending on it: the channel closes with no ack in it.
        let got = tokio::time::timeout(Duration::from_secs(10), acks.recv())
            .await
            .expect("the store answers within 10 s");
        assert!(got.is_none(), "no ack for a failed commit: {got:?}");
        stop.cancel();
    }
}
