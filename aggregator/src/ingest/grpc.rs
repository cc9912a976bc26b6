//! gRPC ingest: the `fleetset.v1.Ingest` service. `Publish` is a bidirectional stream: the agent
//! sends frames, the aggregator answers each with one ack when it is committed, a duplicate or
//! rejected (acks may arrive out of order).
//!
//! A client that stops reading acks is pushed back, not buffered for: its acks wait in a queue
//! of [`ACK_QUEUE`], and no further frame of its stream is read while that queue is full (HTTP/2
//! flow control then stalls its sends). An ack that finds the queue full is dropped and counted
//! (`acks_undeliverable`); the agent resends that frame and gets DUPLICATE.
//!
//! Above `ingest.memory_limit_bytes` ([`super::memory`]) the next frame is refused unverified
//! and unacked and the stream ends, after the acks owed, with UNAVAILABLE (the agent reconnects
//! with backoff and resends).
//!
//! A stream whose client certificate names an agent (mTLS, [`crate::security::identity`]) may
//! publish frames of that agent only: others are REJECTED `WRONG_IDENTITY`.
//!
//! A stream that breaks (a message that does not decode as a `Frame`, a reset) is counted in
//! `grpc_stream_errors` and ends, after the acks still owed, with that error's status
//! (INVALID_ARGUMENT for an undecodable message), never with OK.

use super::{AckTo, Admission, PeerIdentity};
use crate::counters::Counters;
use fleetset_proto::pb::{self, ingest_server::Ingest};
use std::pin::Pin;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};
use tracing::debug;

/// Acks queued per `Publish` stream at most (16 × the agent's default `transport.max_in_flight`).
pub const ACK_QUEUE: usize = 1024;

/// The `Ingest` service.
pub struct IngestService {
    /// Shared verification and store hand-off.
    pub admission: Admission,
    /// Ends open streams on shutdown.
    pub shutdown: CancellationToken,
}

#[tonic::async_trait]
impl Ingest for IngestService {
    type PublishStream = Pin<Box<dyn Stream<Item = Result<pb::Ack, Status>> + Send>>;

    async fn publish(
        &self,
        request: Request<Streaming<pb::Frame>>,
    ) -> Result<Response<Self::PublishStream>, Status> {
        // mTLS binds the stream to its certificate's agent id (docs/security.md).
        let peer = crate::security::identity::peer_agent_id(&request)
            .map_or(PeerIdentity::Unbound, PeerIdentity::Agent);
        let mut frames = request.into_inner();
        let (tx, rx) = mpsc::channel(ACK_QUEUE);
        let (end_tx, end_rx) = oneshot::channel::<Status>();
        let admission = self.admission.clone();
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            loop {
                // Read the next frame only once its ack has room (backpressure, module docs).
                let open = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    // The permit is only a check: dropped at once, the slot stays free.
                    r = tx.reserve() => r.is_ok(),
                };
                if !open {
                    break; // the response stream is gone
                }
                let next = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    f = frames.message() => f,
                };
                match next {
                    Ok(Some(_)) if admission.over_memory_limit() => {
                        // Refused unverified and unacked: the agent resends it later.
                        let _ = end_tx.send(Status::unavailable(
                            "aggregator over ingest.memory_limit_bytes; frame not accepted, retry later",
                        ));
                        break;
                    }
                    Ok(Some(frame)) => {
                        if !admission.admit(frame, AckTo::Grpc(tx.clone()), &peer).await {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(status) => {
                        debug!(%status, "publish stream broke");
                        Counters::add(&admission.counters().grpc_stream_errors, 1);
                        // tonic reports a message that does not decode as INTERNAL; it is
                        // the client's fault, so the client is told INVALID_ARGUMENT.
                        let status = match status.code() {
                            tonic::Code::Internal => Status::invalid_argument(format!(
                                "not a fleetset.v1.Frame: {}",
                                status.message()
                            )),
                            _ => status,
                        };
                        let _ = end_tx.send(status);
                        break;
                    }
                }
            }
        });
        // The acks still owed, then the error that broke the stream (if any).
        let end = futures::stream::once(end_rx).filter_map(|r| r.ok().map(Err));
        let stream = ReceiverStream::new(rx).map(Ok).chain(end);
        Ok(Response::new(Box::pin(stream)))
    }
}
