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
//! The socket is libzmq's (the `zmq` crate, vendored libzmq 4.3), not zeromq 0.7's: the pure-Rust
//! PUB keeps a fixed 100,000-message queue per subscriber and has no high-water mark
//! (docs/dependencies.md; measured: +19.8 MB of aggregator RSS for 6,000 ~3 KB frames to one
//! SUB that never reads, growing without bound). libzmq's `ZMQ_SNDHWM` caps each subscriber's queue at
//! `live.zmq.hwm` messages (default 1,000) and drops newer windows for that subscriber beyond
//! it, so a stalled subscriber costs at most `hwm` × message size (plus the kernel's socket
//! buffers); the other subscribers and ingest are not affected. The socket lives on its own
//! thread (the `zmq` API blocks); windows reach it through a bounded channel.
//!
//! With `[security.curve]` the PUB is a CURVE server and only keys the allow file lists as
//! `subscriber:<name>` can subscribe; each of them receives every window (a Live token's label
//! selector applies to gRPC Live only).

use super::Hub;
use crate::security::curve::{ServerKey, LIVE_DOMAIN};
use crate::zmq_endpoint::{bound_endpoint, libzmq_endpoint};
use prost::Message;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// Windows waiting for the PUB thread; beyond this the newest are dropped (and logged).
const THREAD_QUEUE: usize = 1024;

/// Binds the PUB socket in `ctx` at `bind` with a send high-water mark of `hwm` messages per
/// subscriber, a CURVE server with `curve` if given (`ctx`'s ZAP handler then admits only
/// subscriber keys); returns the resolved endpoint and the task feeding it. Errors: the bind
/// fails.
pub async fn start(
    ctx: &zmq::Context,
    bind: &str,
    hwm: i32,
    curve: Option<&ServerKey>,
    hub: &Hub,
    shutdown: CancellationToken,
) -> anyhow::Result<(String, tokio::task::JoinHandle<()>)> {
    let socket = ctx.socket(zmq::PUB)?;
    if let Some(key) = curve {
        key.apply(&socket, LIVE_DOMAIN)?;
    }
    socket.set_sndhwm(hwm)?;
    socket.set_linger(0)?;
    socket
        .bind(&libzmq_endpoint(bind))
        .map_err(|e| anyhow::anyhow!("zmq pub bind {bind}: {e}"))?;
    let endpoint = bound_endpoint(&socket, bind)?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<[Vec<u8>; 3]>(THREAD_QUEUE);
    std::thread::Builder::new()
        .name("zmq-pub".into())
        .spawn(move || {
            for parts in rx {
                // PUB never blocks: a subscriber at its high-water mark just misses this one.
                if let Err(e) = socket.send_multipart(parts, zmq::DONTWAIT) {
                    debug!(error = %e, "zmq pub send");
                }
            }
        })?;
    let mut live = hub.subscribe();
    let task = tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => break,
                n = live.recv() => n,
            };
            match next {
                Ok(w) => {
                    let parts = [
                        format!("snapshot.{}", w.snapshot.agent_id).into_bytes(),
                        w.header.encode_to_vec(),
                        w.payload.to_vec(),
                    ];
                    if tx.try_send(parts).is_err() {
                        warn!("zmq publisher thread behind; a live window was not published");
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    warn!(skipped = n, "zmq publisher fell behind the live queue")
                }
                Err(RecvError::Closed) => break,
            }
        }
    });
    Ok((endpoint, task))
}
