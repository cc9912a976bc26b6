//! ZeroMQ ingest: a ROUTER bound at `--zmq-bind`. Agents' DEALERs send two-part messages
//! `[FrameHeader (protobuf), payload]`; the ROUTER sees `[identity, header, payload]` and answers
//! `[identity, Ack (protobuf)]`.
//!
//! zeromq 0.7 has no message size limit of its own (its only socket options are identity,
//! connect timeout and read buffer sizes; docs/dependencies.md): a frame larger than
//! `max_frame_bytes` is received whole, then rejected as oversize.

use super::{AckTo, Admission};
use crate::counters::Counters;
use bytes::Bytes;
use fleetset_proto::frame::from_parts;
use fleetset_proto::FrameError;
use prost::Message;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};
use zeromq::{RouterSocket, Socket, SocketRecv, SocketSend, ZmqMessage};

/// Binds the ROUTER at `bind` and returns the resolved endpoint (port 0 → the real port) and
/// the task that serves it until `shutdown`.
pub async fn start(
    bind: &str,
    admission: Admission,
    counters: Arc<Counters>,
    shutdown: CancellationToken,
) -> anyhow::Result<(String, tokio::task::JoinHandle<()>)> {
    let mut socket = RouterSocket::new();
    let endpoint = socket
        .bind(bind)
        .await
        .map_err(|e| anyhow::anyhow!("zmq bind {bind}: {e}"))?;
    let (mut send_half, mut recv_half) = socket.split();
    let (ack_tx, mut ack_rx) = mpsc::unbounded_channel::<(Bytes, fleetset_proto::pb::Ack)>();

    let send_counters = counters.clone();
    let sender = tokio::spawn(async move {
        while let Some((identity, ack)) = ack_rx.recv().await {
            let mut msg = ZmqMessage::from(identity);
            msg.push_back(Bytes::from(ack.encode_to_vec()));
            if let Err(e) = send_half.send(msg).await {
                debug!(error = %e, "ack to a departed zmq peer dropped");
                Counters::add(&send_counters.acks_undeliverable, 1);
            }
        }
    });

    let task = tokio::spawn(async move {
        loop {
            let msg = tokio::select! {
                _ = shutdown.cancelled() => break,
                m = recv_half.recv() => m,
            };
            let msg = match msg {
                Ok(m) => m,
                Err(e) => {
                    debug!(error = %e, "zmq receive");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let mut parts = msg.into_vec().into_iter();
            let Some(identity) = parts.next() else {
                continue;
            };
            let reply = AckTo::Zmq {
                identity,
                tx: ack_tx.clone(),
            };
            let (header, payload) = (parts.next(), parts.next());
            let extra = parts.next().is_some();
            let frame = match (header, payload, extra) {
                (Some(h), Some(p), false) => from_parts(&h, p.to_vec()),
                _ => Err(FrameError::MalformedHeader(
                    "expected a two-part message [header, payload]".into(),
                )),
            };
            match frame {
                Ok(frame) => {
                    if !admission.admit(frame, reply).await {
                        break;
                    }
                }
                Err(err) => {
                    Counters::add(&counters.frames_received, 1);
                    admission.reject(None, &err, &reply);
                }
            }
        }
        drop(ack_tx);
        // Let the store's final acks drain through the send task.
        if tokio::time::timeout(Duration::from_secs(5), sender)
            .await
            .is_err()
        {
            warn!("zmq ack sender did not finish in time");
        }
    });
    Ok((endpoint.to_string(), task))
}
