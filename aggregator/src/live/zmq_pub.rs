//! ZeroMQ PUB of live windows on `--zmq-pub` (default tcp://0.0.0.0:5556).
//!
//! Message layout (three parts), so a SUB in any language can filter and decode:
//! 1. topic: `snapshot.<agent_id>` (UTF-8) — subscribe to `snapshot.` for all agents or
//!    `snapshot.<agent_id>` for one;
//! 2. header: the protobuf `fleetset.v1.FrameHeader` the agent sent (encoding, compression,
//!    agent_id, seq, window bounds, payload SHA-256);
//! 3. payload: exactly as the agent sent it (MessagePack or Protobuf, optionally zstd — the
//!    header says which); its SHA-256 is the header's `payload_sha256`.
//!
//! zeromq 0.7's PUB drops messages for a subscriber whose fixed 100,000-message queue is full
//! and has no high-water-mark setting (vetting §1.1); the messages share the payload bytes.

use super::Hub;
use bytes::Bytes;
use prost::Message;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};
use zeromq::{PubSocket, Socket, SocketSend, ZmqMessage};

/// Binds the PUB socket at `bind`; returns the resolved endpoint and the publishing task.
pub async fn start(
    bind: &str,
    hub: &Hub,
    shutdown: CancellationToken,
) -> anyhow::Result<(String, tokio::task::JoinHandle<()>)> {
    let mut socket = PubSocket::new();
    let endpoint = socket
        .bind(bind)
        .await
        .map_err(|e| anyhow::anyhow!("zmq pub bind {bind}: {e}"))?;
    let mut rx = hub.subscribe();
    let task = tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => break,
                n = rx.recv() => n,
            };
            match next {
                Ok(w) => {
                    let mut msg = ZmqMessage::from(format!("snapshot.{}", w.snapshot.agent_id));
                    msg.push_back(Bytes::from(w.header.encode_to_vec()));
                    msg.push_back(w.payload.clone());
                    if let Err(e) = socket.send(msg).await {
                        debug!(error = %e, "zmq pub send");
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    warn!(skipped = n, "zmq publisher fell behind the live queue")
                }
                Err(RecvError::Closed) => break,
            }
        }
    });
    Ok((endpoint.to_string(), task))
}
